"""Ingest job: pull new observations from a series' source into the history store."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from forecaster.errors import SeriesNotFound

if TYPE_CHECKING:
    import pandas as pd

    from forecaster.jobs.context import JobContext
    from forecaster.specs import SeriesSpec

log = logging.getLogger(__name__)

OVERLAP_STEPS = 3


@dataclass(frozen=True)
class IngestResult:
    """Points written per stored series for one spec'd series."""

    family: str
    written: dict[str, int]
    start: datetime
    end: datetime


def ingest_series(
    ctx: JobContext, *, spec: SeriesSpec, now: datetime | None = None
) -> IngestResult:
    """Fetch ``spec``'s observations since the last stored one and upsert them.

    The window starts a few steps before the latest stored point (late samples are
    re-read; upserts make overlaps harmless) or, for a new series, one history
    window before now. Everything is fetched and validated before anything is
    written.

    Raises:
        SourceError: The source failed; nothing was written.
    """
    end = now or datetime.now(UTC)
    start = end - spec.history
    latest = _latest_observation(ctx, spec)
    if latest is not None and latest > start:
        start = latest - OVERLAP_STEPS * spec.step
    fetched = ctx.source_for(spec).fetch(spec, start, end)
    written: dict[str, int] = {}
    for item in fetched:
        values = item.values
        points: list[tuple[datetime, float]] = []
        if values is not None and len(values):
            points = [
                (ts.to_pydatetime(), float(v))
                for ts, v in zip(values.index, values.to_numpy(), strict=True)
            ]
        series_id = ctx.store.ensure_series(
            name=item.name,
            family=item.family,
            labels=item.labels,
            kind=spec.kind,
            unit=spec.unit,
            step_seconds=int(spec.step.total_seconds()),
            horizon_steps=spec.horizon_steps,
        )
        written[item.name] = ctx.store.upsert_observations(series_id, points)
    log.info("ingested %s: %s points in [%s, %s]", spec.name, sum(written.values()), start, end)
    return IngestResult(family=spec.name, written=written, start=start, end=end)


def _latest_observation(ctx: JobContext, spec: SeriesSpec) -> datetime | None:
    latest: datetime | None = None
    for name in ctx.members(spec):
        try:
            seen = ctx.store.series(name).last_observation_at
        except SeriesNotFound:
            continue
        if seen is not None and (latest is None or seen < latest):
            latest = seen  # the laggiest member decides, so none is left with a gap
    return latest


def history_frame(
    ctx: JobContext, *, name: str, step: timedelta, window: timedelta, now: datetime | None = None
) -> pd.Series:
    """The stored history of ``name`` over ``window`` as a regular-grid pandas Series."""
    import pandas as pd

    from forecaster.timeseries import to_grid

    end = now or datetime.now(UTC)
    rows = ctx.store.history(name, since=end - window, until=end)
    if not rows:
        return pd.Series([], index=pd.DatetimeIndex([], tz=UTC), dtype=float)
    index = pd.DatetimeIndex([ts for ts, _ in rows]).tz_convert(UTC)
    series = pd.Series([v for _, v in rows], index=index, dtype=float)
    return to_grid(series, step)
