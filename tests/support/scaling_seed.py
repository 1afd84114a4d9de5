"""A store with one published forecast, for the scaling API, hot-read and gRPC scaler tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from forecaster.store.db import make_engine, upgrade
from forecaster.store.repository import ForecastPoint, Store

STEP = timedelta(minutes=5)


def seed(
    settings: Any,
    *,
    name: str = "team/rps",
    generated_at: datetime | None = None,
    observed: float = 100.0,
    behind: timedelta = timedelta(0),
) -> datetime:
    """``name``: yhat = 200 + 10 step for 24 steps, interval [yhat - 50, yhat + 60] at
    level 90, observations ``observed / 2`` then ``observed`` at the origin; and
    ``empty``, a series with nothing published.

    ``behind`` moves the origin that far back (the data the forecast starts from is
    late: ingestion is behind), publication time unchanged.

    Returns:
        The forecast's origin (the 5-minute boundary at or before now, minus ``behind``).
    """
    engine = make_engine(settings.database)
    try:
        upgrade(engine)
        store = Store(engine)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        origin = now - timedelta(minutes=now.minute % 5) - behind
        sid = store.ensure_series(
            name=name, family="rps", unit="req/s", step_seconds=300, horizon_steps=24
        )
        store.upsert_observations(sid, [(origin - STEP, observed / 2), (origin, observed)])
        store.ensure_series(name="empty", family="empty", step_seconds=300, horizon_steps=12)
        store.publish_forecast(
            series=name,
            generated_at=generated_at or datetime.now(UTC),
            origin=origin,
            step_seconds=300,
            level=90.0,
            model_name="seasonal_naive",
            model_version="1",
            run_id="run1",
            points=[
                ForecastPoint(
                    step=i,
                    ds=origin + i * STEP,
                    yhat=200.0 + 10 * i,
                    yhat_lower=150.0 + 10 * i,
                    yhat_upper=260.0 + 10 * i,
                )
                for i in range(1, 25)
            ],
        )
    finally:
        engine.dispose()
    return origin
