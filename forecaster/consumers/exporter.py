"""Prometheus export of forecast peaks over the next windows, for KEDA's prometheus trigger.

``forecaster_forecast_max{series, quantile, window}`` is the max of a forecast
quantile over ``[now, now + window]``: the load a workload should be provisioned for
when a new replica takes ``window`` to become ready. A ScaledObject can scale on::

    max(forecaster_forecast_max{series="checkout_rps",quantile="0.95",window="10m"}
        or sum(rate(http_requests_total{service="checkout"}[2m])))

(the ``or`` adds the observed load, so the plan never drops below current need) and
Grafana can plot it against the actual load. Nothing is computed on scrape beyond
picking stored points. Forecasts older than the staleness bound, and windows the
forecast does not cover, are left out, so a query on them returns nothing and KEDA's
fallback applies instead of a stale value.
"""

from __future__ import annotations

from functools import partial
from itertools import accumulate
from typing import TYPE_CHECKING

from forecaster.api.exposition import GaugeText, Kept, SeriesSelection, merge_kept
from forecaster.consumers.planner import interval_quantile_steps, interval_quantiles

if TYPE_CHECKING:
    from forecaster.api.view import CachedForecast, ForecastView
    from forecaster.config import Settings

WINDOWS = (("5m", 300), ("10m", 600), ("15m", 900), ("30m", 1800), ("1h", 3600))
#: Quantiles exported besides the interval's upper end (which depends on the level).
QUANTILES = (0.5, 0.9)


class ForecastMaxGauges:
    """``forecaster_forecast_max{series, quantile, window}`` from the forecast view.

    Forecasts older than ``settings.schedule.stale_after_seconds`` are not exported.
    Written by ``/metrics`` straight to the text format
    (:func:`forecaster.api.exposition.render`).
    """

    def __init__(self, view: ForecastView, settings: Settings) -> None:
        self.view = view
        self.stale_after_seconds = float(settings.schedule.stale_after_seconds)
        #: series -> (forecast it was written from, windows' steps, its lines)
        self._kept: Kept = {}

    def families(self, now: float, only: SeriesSelection | None = None) -> list[GaugeText]:
        """The gauge at Unix time ``now``, of the series ``only`` selects (all if None).

        The windows all start at ``now``, so each quantile is computed once per step
        of the longest covered window and each window's peak is a running maximum.
        """
        family = GaugeText(
            "forecaster_forecast_max",
            "Max of the forecast quantile over [now, now + window] (series unit); "
            "absent when the forecast is stale or does not cover the window",
            labels=["series", "quantile", "window"],
        )
        keep: Kept = {}
        forecasts = self.view.state.forecasts
        for name, cached in forecasts.items():
            if only is not None and not only(name):
                continue
            fc = cached.forecast
            if cached.is_stale(now, self.stale_after_seconds):
                continue
            covered: list[tuple[str, int, int]] = []
            for label, seconds in WINDOWS:
                lo, hi = self.view.window_ahead(cached, now - fc.step_seconds, now + seconds)
                if hi <= lo or cached.ds_epoch[hi - 1] < now + seconds - fc.step_seconds:
                    continue
                covered.append((label, lo, hi))
            if not covered:
                continue
            windows = tuple(covered)
            write = partial(_write_peaks, family, name, cached, windows)
            family.add_series(name, (cached, windows), write, self._kept, keep)
        self._kept = merge_kept(self._kept, keep, only, forecasts)
        return [family]


def _write_peaks(
    family: GaugeText, name: str, cached: CachedForecast, windows: tuple[tuple[str, int, int], ...]
) -> None:
    """The peak lines of series ``name``: per quantile, a running maximum over the
    steps of the longest window, read at the end of each (they all start at ``now``)."""
    fc = cached.forecast
    low_q, high_q = interval_quantiles(fc.level)
    quantiles = sorted({q for q in QUANTILES if low_q <= q <= high_q} | {high_q})
    start = windows[0][1]  # every window starts at the same step
    end = max(hi for _, _, hi in windows)
    steps = cached.columns.bands(start, end)
    for q in quantiles:
        peaks = list(accumulate(interval_quantile_steps(q, steps, level=fc.level), max))
        q_label = f"{q:.3g}"
        for label, _lo, hi in windows:
            family.add((name, q_label, label), max(peaks[hi - 1 - start], 0.0))
