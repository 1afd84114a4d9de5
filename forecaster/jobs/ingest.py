"""Ingest job: pull new observations from a series' source into the history store."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from forecaster.errors import ForecasterError, SourceQueryError
from forecaster.store.tables import SERIES_NAME_MAX

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    import pandas as pd

    from forecaster.jobs.context import JobContext
    from forecaster.sources.base import FetchedSeries
    from forecaster.specs import SeriesSpec
    from forecaster.store.repository import SeriesInfo

log = logging.getLogger(__name__)

OVERLAP_STEPS = 3
#: How many over-long member names an ingest error lists.
_MAX_LISTED = 5


@dataclass(frozen=True)
class IngestResult:
    """Points written per stored series for one spec'd series."""

    family: str
    written: dict[str, int]
    start: datetime
    end: datetime


@runtime_checkable
class ChunkedSource(Protocol):
    """A source that can hand out a range chunk by chunk (see ``PrometheusSource``)."""

    def iter_chunks(
        self, spec: SeriesSpec, start: datetime, end: datetime
    ) -> Iterator[list[FetchedSeries]]:
        """Validated series per chunk, chunks in time order, no timestamp twice."""
        ...


def ingest_series(
    ctx: JobContext, *, spec: SeriesSpec, now: datetime | None = None
) -> IngestResult:
    """Fetch ``spec``'s observations since the last stored one and upsert them.

    The window starts a few steps before the latest stored point of the laggiest
    member (late samples are re-read; upserts make overlaps harmless) or, for a new
    series, one history window before now.

    Sources that stream (:class:`ChunkedSource`, e.g. Prometheus) are written chunk
    by chunk, so memory stays bounded by one chunk however large the family is; each
    chunk is validated before any of it is written. If a later chunk fails, the
    earlier chunks stay stored and the next run resumes from the laggiest member, so
    nothing is lost and nothing is duplicated. Other sources are fetched and
    validated whole before anything is written.

    A ``split_by`` member whose name (family plus label values) is longer than the
    store keeps (:data:`~forecaster.store.tables.SERIES_NAME_MAX`) is not stored;
    the other members are, and the run then fails naming the skipped ones.

    Raises:
        SourceError: The source failed (for a streaming source, after the chunks
            before the failing one were written).
        SourceQueryError: Some members were skipped for their over-long names (all
            the others were stored).
    """
    end = now or datetime.now(UTC)
    start = end - spec.history
    # the family's catalogue, read once: it decides where the window starts; a member
    # stored with the spec's fields as they are needs no write (ensure_series cost a
    # transaction per member per run, 2.5 s of a 6.8 s ingest of 450 members on
    # PostgreSQL); members it lacks are new, and the first observation this run got of
    # each decides on a backfill
    reporting, retired = ctx.member_infos(spec)
    catalogue = {info.name: info for info in (*reporting, *retired)}
    latest = _latest_observation(reporting, spec)
    if latest is not None and latest > start:
        start = latest - OVERLAP_STEPS * spec.step
    source = ctx.source_for(spec)
    chunks = _chunks(source, spec, start, end)
    backfill = bool(spec.split_by) and latest is not None
    first_seen: dict[str, datetime] = {}
    written: dict[str, int] = {}
    series_ids: dict[str, int] = {}
    stored_chunks = 0
    too_long: set[str] = set()
    try:
        for chunk in chunks:
            for item in chunk:
                if len(item.name) > SERIES_NAME_MAX:
                    too_long.add(item.name)
                    continue
                series_id = series_ids.get(item.name)
                if series_id is None:
                    stored = catalogue.get(item.name)
                    series_id = series_ids[item.name] = (
                        stored.id
                        if stored is not None and _as_spec_says(stored, spec, item)
                        else _ensure(ctx, spec, item)
                    )
                points = _points(item)
                if backfill and points and item.name not in catalogue:
                    first_seen.setdefault(item.name, points[0][0])
                written[item.name] = written.get(item.name, 0) + (
                    ctx.store.upsert_observations(series_id, points) if points else 0
                )
            stored_chunks += 1
    except ForecasterError:
        if stored_chunks:
            log.warning(
                "ingest of %s failed after %d chunk(s) (%d points) were stored; "
                "the next run resumes from the laggiest member",
                spec.name,
                stored_chunks,
                sum(written.values()),
            )
        raise
    log.info("ingested %s: %s points in [%s, %s]", spec.name, sum(written.values()), start, end)
    # a member new to the store that was there from the window's start has older
    # history (a split_by or query change renamed every member, or a label came back)
    older = {
        name
        for name, first in first_seen.items()
        if first <= start + (OVERLAP_STEPS + 1) * spec.step
    }
    if older and start > end - spec.history:
        _backfill_new_members(ctx, spec, source, older, end - spec.history, start, series_ids)
    if not series_ids and not too_long and latest is None:
        # a new series whose query matched nothing over a whole history window: what a
        # typo in a metric or label name looks like (later runs would be silent too)
        log.warning(
            "ingest of %s: the query matched no series over [%s, %s]; check its metric "
            "and label names (query: %s)",
            spec.name,
            start,
            end,
            spec.query or spec.file,
        )
    if too_long:
        raise SourceQueryError(_too_long_message(spec, too_long, written))
    return IngestResult(family=spec.name, written=written, start=start, end=end)


def _chunks(
    source: Any, spec: SeriesSpec, start: datetime, end: datetime
) -> Iterable[list[FetchedSeries]]:
    """The source's answer over [start, end], chunk by chunk where it can stream."""
    if isinstance(source, ChunkedSource):
        return source.iter_chunks(spec, start, end)
    return [source.fetch(spec, start, end)]


def _backfill_new_members(
    ctx: JobContext,
    spec: SeriesSpec,
    source: Any,
    names: set[str],
    start: datetime,
    end: datetime,
    series_ids: dict[str, int],
) -> None:
    """Fetch one history window for members the store first saw in an incremental run.

    The family's window starts where its members already stored left off, so a member
    the store had not seen got the last few steps only, though the source has its
    history: after a change of the family's ``split_by`` or query every member is
    new, and none could be trained for days. A member that first appears in the
    middle of the window (a new route or pod) has no older history and is left
    alone. Members the store already holds are not rewritten. A failure is logged:
    the run's new observations are stored, and the members fill their history as
    they report.
    """
    added: dict[str, int] = {}
    try:
        for chunk in _chunks(source, spec, start, end):
            for item in chunk:
                if item.name in names and (points := _points(item)):
                    count = ctx.store.upsert_observations(series_ids[item.name], points)
                    added[item.name] = added.get(item.name, 0) + count
    except ForecasterError as exc:
        log.warning(
            "ingest of %s: the older history of %d new member(s) (%s) could not be "
            "fetched (%s); they start from this run's observations",
            spec.name,
            len(names),
            ", ".join(sorted(names)[:_MAX_LISTED]),
            exc,
        )
        return
    log.info(
        "ingest of %s: %d new member(s) got their history since %s (%d points)",
        spec.name,
        len(added),
        start,
        sum(added.values()),
    )


def _too_long_message(spec: SeriesSpec, names: set[str], written: dict[str, int]) -> str:
    listed = sorted(names)
    shown = ", ".join(
        f"{name[:100]!r}... ({len(name)} characters)" for name in listed[:_MAX_LISTED]
    )
    more = len(listed) - _MAX_LISTED
    return (
        f"series {spec.name!r}: {len(listed)} member(s) not stored, their names are longer "
        f"than the {SERIES_NAME_MAX} characters the store keeps: {shown}"
        + (f" and {more} more" if more > 0 else "")
        + f"; the other {len(written)} member(s) were ingested. Shorten the label values "
        f"in the query (label_replace) or split by fewer labels than {list(spec.split_by)}"
    )


def _ensure(ctx: JobContext, spec: SeriesSpec, item: FetchedSeries) -> int:
    return ctx.store.ensure_series(
        name=item.name,
        family=item.family,
        labels=item.labels,
        kind=spec.kind,
        unit=spec.unit,
        step_seconds=int(spec.step.total_seconds()),
        horizon_steps=spec.horizon_steps,
    )


def _as_spec_says(info: SeriesInfo, spec: SeriesSpec, item: FetchedSeries) -> bool:
    """Whether the stored catalogue entry already holds what :func:`_ensure` would write."""
    return (
        info.family == item.family
        and info.labels == dict(item.labels or {})
        and info.kind == spec.kind
        and info.unit == spec.unit
        and info.step_seconds == int(spec.step.total_seconds())
        and info.horizon_steps == spec.horizon_steps
    )


def _points(item: FetchedSeries) -> list[tuple[datetime, float]]:
    """``(tz-aware UTC timestamp, value)`` pairs of a fetched series."""
    values = item.values
    if values is None or not len(values):
        return []
    import pandas as pd

    stamps = pd.DatetimeIndex(values.index).to_pydatetime().tolist()
    return list(zip(stamps, values.to_numpy(dtype=float).tolist(), strict=True))


def _latest_observation(reporting_members: list[SeriesInfo], spec: SeriesSpec) -> datetime | None:
    """Where the family's next ingest window starts from: its laggiest member's newest
    observation, so none is left with a gap, among the members still reporting
    (:meth:`~forecaster.jobs.context.JobContext.member_infos`).

    A member more than :func:`_gone_after` behind the freshest one has stopped
    reporting (a pod that went away): waiting for it made every run re-read the
    whole history window of the whole family.
    """
    seen_at = [i.last_observation_at for i in reporting_members if i.last_observation_at]
    if not seen_at:
        return None
    freshest = max(seen_at)
    reporting = [seen for seen in seen_at if freshest - seen <= _gone_after(spec)]
    return min(reporting)


def _gone_after(spec: SeriesSpec) -> timedelta:
    """How far behind the family's freshest member a member counts as gone."""
    return max(timedelta(hours=1), 12 * spec.step)


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
