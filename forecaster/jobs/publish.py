"""Publish job: forecast from the latest history with the champion and store it atomically.

The served band is stretched by how the last day's forecasts fared
(:mod:`forecaster.recalibration`); the factor is stored with the publication and
recomputed once per hour of observations.

For a watched series (``watch`` in its spec) each point also carries the reference
band, ``predict(follow_level=False)``, which the regression detector judges against.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from forecaster.errors import ForecastNotFound, InputDataError
from forecaster.jobs.ingest import history_frame
from forecaster.recalibration import (
    LONG_SCALE_BOUNDS,
    SCALE_BOUNDS,
    WINDOW,
    band_scale,
    required_scales,
    rescale_frame,
)
from forecaster.store.repository import ForecastPoint

if TYPE_CHECKING:
    from forecaster.jobs.context import JobContext
    from forecaster.specs import SeriesSpec

log = logging.getLogger(__name__)

LEVEL = 90.0


@dataclass(frozen=True)
class PublishResult:
    """One published forecast."""

    series: str
    publication_id: int
    model_name: str
    model_version: str
    origin: datetime
    points: int


def _check_reaches_ahead(origin: datetime, spec: SeriesSpec, name: str, now: datetime) -> None:
    """Refuse to publish a forecast that would end before now.

    A series that stopped reporting (a ``split_by`` member whose pod went away) was
    republished every minute from its last observation, hours old, as a fresh
    forecast of the past.

    Raises:
        InputDataError: Naming the series and its newest observation.
    """
    from forecaster.durations import format_duration

    if origin + spec.horizon_steps * spec.step < now:
        raise InputDataError(
            f"series {name!r}: its newest observation is from {origin.isoformat()} "
            f"({format_duration(now - origin)} ago), longer ago than its "
            f"{format_duration(spec.horizon_steps * spec.step)} horizon: a forecast would "
            "end in the past, so none is published (has it stopped reporting?)"
        )


def _check_grid(frame: Any, spec: SeriesSpec, name: str) -> None:
    """Refuse a forecast whose steps are not the spec's step.

    A champion trained before the spec's ``step`` changed forecasts on its own grid:
    published as is, 1-minute points were labelled a 2-minute forecast covering half
    the horizon.

    Raises:
        EstimatorError: Naming both steps and what to do.
    """
    import pandas as pd

    from forecaster.durations import format_duration
    from forecaster.errors import EstimatorError

    if len(frame) < 2:
        return
    spacing = pd.Series(pd.to_datetime(frame["ds"])).diff().dropna()
    if (spacing != pd.Timedelta(spec.step)).any():
        own = format_duration(spacing.iloc[0].to_pytimedelta())
        raise EstimatorError(
            f"the champion of {name!r} forecasts in steps of {own}, but the spec's step is "
            f"{format_duration(spec.step)} (changed since it was trained): retrain it "
            f"(forecaster train {spec.name}); nothing was published"
        )


def publish_series(
    ctx: JobContext, *, spec: SeriesSpec, name: str, now: datetime | None = None
) -> PublishResult:
    """Forecast ``name`` from its latest observations with its champion and publish it.

    The champion is not refitted: it conditions on the newest observations (as
    production does between daily trainings).

    Raises:
        ForecastNotFound: The series has no champion yet (train it first).
        InputDataError: No recent history to forecast from.
    """
    champion = ctx.store.champion(name)
    if champion is None or champion.artifact is None:
        raise ForecastNotFound(f"series {name!r} has no champion model yet; run train first")
    cached = ctx.estimator_cache.get(name)
    if cached is not None and cached[0] == champion.training_id:
        estimator = cached[1]
    else:
        from forecaster.estimators.base import load_estimator

        ctx.estimator_cache.pop(name, None)  # drop the old champion before loading
        estimator = load_estimator(json.loads(champion.artifact))
        ctx.estimator_cache[name] = (champion.training_id, estimator)
    history = history_frame(ctx, name=name, step=spec.step, window=spec.history, now=now)
    if int(history.notna().sum()) == 0:
        raise InputDataError(f"series {name!r} has no observations in the last {spec.history}")
    origin = history.dropna().index[-1].to_pydatetime()
    _check_reaches_ahead(origin, spec, name, now or datetime.now(UTC))
    scale, long_scale = _band_scale(ctx, name, history, origin)
    raw = estimator.predict(spec.horizon_steps, history=history, level=LEVEL)
    _check_grid(raw, spec, name)
    frame: Any = rescale_frame(raw, scale, long_scale=long_scale, step=spec.step)
    references = _reference_bands(estimator, spec, history, served=raw)
    points = [
        ForecastPoint(
            step=int(row.step),
            ds=row.ds.to_pydatetime(),
            yhat=float(row.yhat),
            yhat_lower=float(row.yhat_lower),
            yhat_upper=float(row.yhat_upper),
            reference=ref,
        )
        for row, ref in zip(frame.itertuples(index=False), references, strict=True)
    ]
    model_name = champion.estimator
    publication_id = ctx.store.publish_forecast(
        series=name,
        generated_at=now or datetime.now(UTC),
        origin=origin,
        step_seconds=int(spec.step.total_seconds()),
        level=LEVEL,
        model_name=model_name,
        model_version=champion.model_version,
        run_id=champion.run_id,
        points=points,
        band_scale=scale,
        band_scale_long=long_scale,
    )
    return PublishResult(
        series=name,
        publication_id=publication_id,
        model_name=model_name,
        model_version=champion.model_version,
        origin=origin,
        points=len(points),
    )


def _band_scale(ctx: JobContext, name: str, history: Any, origin: datetime) -> tuple[float, float]:
    """The band's stretch factors from the last day's hourly forecasts against ``history``.

    The short one (leads up to :data:`~forecaster.recalibration.SHORT_LEAD`) judges
    each observation against the latest hourly forecast before it, the long one
    against every hourly forecast made for it more than that before. Cached per
    series for an hour (the hourly forecasts that set them change once an hour); the
    hours of different series start at different minutes (:func:`_scale_period`), so
    a publish cycle over many series does not recompute them all at once.
    """
    hour = _scale_period(name, origin)
    cached = ctx.band_scales.get(name)
    if cached is not None and cached[0] == hour:
        return cached[1]
    since = origin - WINDOW
    short_rows, long_rows = ctx.store.recalibration_points(name, since=since, until=origin)
    short = _scale_of(short_rows, history, SCALE_BOUNDS)
    long = _scale_of(long_rows, history, LONG_SCALE_BOUNDS)
    ctx.band_scales[name] = (hour, (short, long))
    log.debug("band scales of %s: %.3f (short), %.3f (long)", name, short, long)
    return short, long


def _scale_period(name: str, origin: datetime) -> datetime:
    """Start of the hour-long period of ``origin`` in which ``name``'s band scales hold.

    Each series' periods are offset from the clock hour by a fixed number of seconds
    derived from its name: reading a day of past forecasts takes tens of milliseconds
    per series, which for a thousand series at the top of every clock hour would hold
    up that publish cycle by a minute.
    """
    import zlib

    offset = timedelta(seconds=zlib.crc32(name.encode()) % 3600)
    shifted = origin - offset
    return shifted.replace(minute=0, second=0, microsecond=0) + offset


def _scale_of(
    rows: list[tuple[datetime, float, float, float]],
    history: Any,
    bounds: tuple[float, float],
) -> float:
    """:func:`~forecaster.recalibration.band_scale` of past forecast rows against ``history``."""
    if not rows:
        return 1.0
    import numpy as np
    import pandas as pd

    ds = pd.DatetimeIndex([r[0] for r in rows])
    ds = ds.tz_localize("UTC") if ds.tz is None else ds.tz_convert("UTC")
    actual = history.reindex(ds).to_numpy(dtype=float)
    yhat, lower, upper = (np.array([r[i] for r in rows], dtype=float) for i in (1, 2, 3))
    return band_scale(required_scales(yhat, lower, upper, actual), LEVEL, bounds=bounds)


def _reference_bands(
    estimator: Any, spec: SeriesSpec, history: Any, *, served: Any
) -> list[tuple[float, float, float] | None]:
    """Per step, the band the regression detector judges against (watched series only).

    It is the champion's forecast without recent-level corrections
    (``follow_level=False``; see :mod:`forecaster.consumers.regressions`), with the
    estimator's own band (not recalibrated). ``served`` is the champion's ``predict()``
    before recalibration: an estimator without such corrections is not asked again.
    """
    if spec.watch is None:
        return [None] * len(served)
    from forecaster.estimators.base import follows_recent_level

    frame = served
    if follows_recent_level(estimator):
        frame = estimator.predict(
            spec.horizon_steps, history=history, level=LEVEL, follow_level=False
        )
    return [
        (float(r.yhat), float(r.yhat_lower), float(r.yhat_upper))
        for r in frame.itertuples(index=False)
    ]
