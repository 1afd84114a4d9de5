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

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from forecaster.consumers.planner import interval_quantile, interval_quantiles

if TYPE_CHECKING:
    from forecaster.api.view import ForecastView
    from forecaster.config import Settings

WINDOWS = (("5m", 300), ("10m", 600), ("15m", 900), ("30m", 1800), ("1h", 3600))
#: Quantiles exported besides the interval's upper end (which depends on the level).
QUANTILES = (0.5, 0.9)


class ForecastMaxCollector(Collector):
    """Exports ``forecaster_forecast_max{series, quantile, window}`` from the forecast view.

    Forecasts older than ``settings.schedule.stale_after_seconds`` are not exported.
    """

    def __init__(self, view: ForecastView, settings: Settings) -> None:
        self.view = view
        self.stale_after_seconds = float(settings.schedule.stale_after_seconds)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self.view.state
        now = time.time()
        family = GaugeMetricFamily(
            "forecaster_forecast_max",
            "Max of the forecast quantile over [now, now + window] (series unit); "
            "absent when the forecast is stale or does not cover the window",
            labels=["series", "quantile", "window"],
        )
        for name, cached in state.forecasts.items():
            fc = cached.forecast
            if now - fc.generated_at.timestamp() > self.stale_after_seconds:
                continue
            low_q, high_q = interval_quantiles(fc.level)
            quantiles = sorted({q for q in QUANTILES if low_q <= q <= high_q} | {high_q})
            for label, seconds in WINDOWS:
                lo, hi = self.view.window_ahead(cached, now - fc.step_seconds, now + seconds)
                if hi <= lo or cached.ds_epoch[hi - 1] < now + seconds - fc.step_seconds:
                    continue
                steps = cached.columns.bands(lo, hi)
                for q in quantiles:
                    peak = max(
                        interval_quantile(
                            q, yhat=yhat, yhat_lower=lower, yhat_upper=upper, level=fc.level
                        )
                        for yhat, lower, upper in steps
                    )
                    family.add_metric([name, f"{q:.3g}", label], max(peak, 0.0))
        yield family
