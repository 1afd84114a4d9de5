"""Prometheus exposition of the published forecasts, read from the in-memory view.

Nothing is computed on scrape beyond picking stored points: the values are the
forecasts the publish job wrote.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from forecaster.api.exposition import GaugeText, Kept, SeriesSelection, merge_kept

if TYPE_CHECKING:
    from forecaster.api.view import CachedForecast, ForecastView

HORIZONS = (("5m", 300), ("15m", 900), ("1h", 3600))


class ForecastGauges:
    """``forecaster_forecast{series, quantile, horizon}`` and freshness gauges.

    Written by ``/metrics`` straight to the text format
    (:func:`forecaster.api.exposition.render`).
    """

    def __init__(self, view: ForecastView) -> None:
        self.view = view
        #: series -> (forecast it was written from, steps picked, its lines)
        self._kept: Kept = {}

    def _picked(self, cached: CachedForecast, now: float) -> tuple[int, ...]:
        """Per horizon, one past the index of the step it exports (0: none)."""
        step = cached.forecast.step_seconds
        picked = []
        for _label, seconds in HORIZONS:
            lo, hi = self.view.window(cached, now + seconds - step, now + seconds)
            picked.append(hi if hi > lo else 0)
        return tuple(picked)

    def families(self, now: float, only: SeriesSelection | None = None) -> list[GaugeText]:
        """The gauges at Unix time ``now``, of the series ``only`` selects (all if None).

        A selective scrape also says which requested names selected nothing
        (``forecaster_metrics_unknown_series``), so a typo in a scrape config shows.
        """
        state = self.view.state
        forecast = GaugeText(
            "forecaster_forecast",
            "Published forecast value at now+horizon (quantile 0.5 is the point forecast)",
            labels=["series", "quantile", "horizon"],
        )
        age = GaugeText(
            "forecaster_forecast_age_seconds",
            "Seconds since the current forecast of a series was generated",
            labels=["series"],
        )
        last_obs = GaugeText(
            "forecaster_last_observation_timestamp_seconds",
            "Unix time of the newest stored observation of a series",
            labels=["series"],
        )
        keep: Kept = {}
        for name, cached in state.forecasts.items():
            if only is not None and not only(name):
                continue
            age.add((name,), now - cached.forecast.generated_at.timestamp())
            picked = self._picked(cached, now)
            write = partial(_write_forecast, forecast, name, cached, picked)
            forecast.add_series(name, (cached, picked), write, self._kept, keep)
        self._kept = merge_kept(self._kept, keep, only, state.forecasts)
        for name, info in state.series.items():
            if only is not None and not only(name):
                continue
            if info.last_observation_at is not None:
                last_obs.add((name,), info.last_observation_at.timestamp())
        view_ok = GaugeText(
            "forecaster_view_refresh_ok",
            "1 when the last refresh of the API's forecast view from the store succeeded "
            "and one finished recently",
            labels=[],
        )
        view_ok.add((), 0.0 if self.view.problem() else 1.0)
        families = [forecast, age, last_obs, view_ok]
        if only is not None:
            unknown = GaugeText(
                "forecaster_metrics_unknown_series",
                "1 for each name in this scrape's ?series= that matches no series "
                "(neither a series nor a split_by family)",
                labels=["series"],
            )
            for name in only.unmatched(state.series):
                unknown.add((name,), 1.0)
            families.append(unknown)
        return families


def _write_forecast(
    family: GaugeText, name: str, cached: CachedForecast, picked: tuple[int, ...]
) -> None:
    """The quantile lines of series ``name`` at the steps ``picked`` per horizon."""
    fc = cached.forecast
    low_q = f"{(100 - fc.level) / 200:.3g}"
    high_q = f"{1 - (100 - fc.level) / 200:.3g}"
    cols = cached.columns
    for (label, _seconds), hi in zip(HORIZONS, picked, strict=True):
        if not hi:
            continue
        family.add((name, "0.5", label), cols.yhat[hi - 1])
        family.add((name, low_q, label), cols.yhat_lower[hi - 1])
        family.add((name, high_q, label), cols.yhat_upper[hi - 1])
