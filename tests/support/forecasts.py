"""Publish a forecast with given bands into a store (tests' seeding helper)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from forecaster.store.repository import ForecastPoint, Store


def publish_bands(
    store: Store,
    name: str,
    made: datetime,
    step: timedelta,
    bands: Sequence[tuple[float, float, float]],
    *,
    model: tuple[str, str] = ("seasonal_naive", "1"),
) -> int:
    """Publish, as made at ``made``, one step of ``step`` per ``(yhat, lower, upper)``
    of ``bands``; returns the publication id."""
    return store.publish_forecast(
        series=name,
        generated_at=made,
        origin=made,
        step_seconds=int(step.total_seconds()),
        level=90.0,
        model_name=model[0],
        model_version=model[1],
        run_id="r",
        points=[
            ForecastPoint(step=k, ds=made + k * step, yhat=y, yhat_lower=lo, yhat_upper=hi)
            for k, (y, lo, hi) in enumerate(bands, start=1)
        ],
    )
