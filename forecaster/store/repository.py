"""Reads and writes of the store: series, history (idempotent upserts), forecasts, champions.

Plain Python values in and out (datetimes are tz-aware UTC); no pandas here, so the
API process can use this module without importing it.
"""

from __future__ import annotations

import contextlib
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any, overload

from sqlalchemy import DateTime, and_, delete, func, select, type_coerce, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from forecaster.errors import ForecastNotFound, InputDataError, SeriesNotFound, StoreError
from forecaster.recalibration import SHORT_LEAD
from forecaster.store.tables import (
    SERIES_NAME_MAX,
    champions_table,
    forecast_points_table,
    job_runs_table,
    observations_table,
    publications_table,
    series_table,
    store_revision_table,
    trainings_table,
)

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.engine import Connection, Engine

_BATCH = 2000


@dataclass(frozen=True)
class SeriesInfo:
    """Catalogue entry of one series."""

    id: int
    name: str
    family: str
    labels: dict[str, str]
    kind: str
    unit: str
    step_seconds: int
    horizon_steps: int
    last_observation_at: datetime | None
    champion: str | None = None
    champion_version: str | None = None


@dataclass(frozen=True)
class ForecastPoint:
    """One step of a published forecast (values in the series' unit)."""

    step: int
    ds: datetime
    yhat: float
    yhat_lower: float
    yhat_upper: float
    #: The reference band (``predict(follow_level=False)``) the regression detector
    #: judges against, as (yhat, lower, upper); published for watched series only.
    reference: tuple[float, float, float] | None = None

    def detection_band(self) -> tuple[float, float, float]:
        """(yhat, lower, upper) to judge an observation against: the reference if any."""
        return self.reference or (self.yhat, self.yhat_lower, self.yhat_upper)


class ForecastColumns(Sequence[ForecastPoint]):
    """A forecast's points held as columns of machine numbers, read as ``ForecastPoint``.

    The API and scaler processes keep every series' current forecast in memory. As a
    list of ``ForecastPoint`` (a dataclass, a ``datetime`` and boxed floats per step)
    a 288-step forecast took about 110 KB; as columns 48 bytes a step (14 KB), so a
    256 MB pod holds several times the series. Indexing builds the ``ForecastPoint``
    on demand; the hot reads use the columns directly.
    """

    __slots__ = ("ds_epoch", "ds_us", "reference", "step", "yhat", "yhat_lower", "yhat_upper")

    def __init__(self, points: Iterable[ForecastPoint]) -> None:
        self._fill(
            (p.step, p.ds, p.yhat, p.yhat_lower, p.yhat_upper, *(p.reference or _NO_REFERENCE))
            for p in points
        )

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[Any]]) -> ForecastColumns:
        """Columns of ``(step, ds, yhat, yhat_lower, yhat_upper, ref_yhat, ref_lower,
        ref_upper)`` rows as the store holds them (``ref_*`` ``None`` without a
        reference), without a ``ForecastPoint`` per row."""
        columns = cls.__new__(cls)
        columns._fill(rows)
        return columns

    def _fill(self, rows: Iterable[Sequence[Any]]) -> None:
        self.step = array("q")
        #: ``ds`` as integer microseconds since the epoch (exact) and as float seconds
        #: (for ``bisect`` against ``time.time()``).
        self.ds_us = array("q")
        self.ds_epoch = array("d")
        self.yhat = array("d")
        self.yhat_lower = array("d")
        self.yhat_upper = array("d")
        reference = array("d")
        any_reference = False
        nan = math.nan
        for step, ds, yhat, lower, upper, ref_yhat, ref_lower, ref_upper in rows:
            self.step.append(step)
            micros = (ds - (_NAIVE_EPOCH if ds.tzinfo is None else _EPOCH)) // _MICROSECOND
            self.ds_us.append(micros)
            self.ds_epoch.append(micros / 1e6)
            self.yhat.append(yhat)
            self.yhat_lower.append(lower)
            self.yhat_upper.append(upper)
            if ref_yhat is None:
                reference.extend((nan, nan, nan))
            else:
                any_reference = True
                reference.extend((ref_yhat, ref_lower, ref_upper))
        #: (yhat, lower, upper) per step, flattened; ``None`` when no step has one.
        self.reference = reference if any_reference else None

    def __len__(self) -> int:
        return len(self.step)

    @overload
    def __getitem__(self, index: int) -> ForecastPoint: ...

    @overload
    def __getitem__(self, index: slice) -> list[ForecastPoint]: ...

    def __getitem__(self, index: int | slice) -> ForecastPoint | list[ForecastPoint]:
        if isinstance(index, slice):
            return [self._point(i) for i in range(*index.indices(len(self)))]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("forecast point index out of range")
        return self._point(index)

    def bands(self, lo: int, hi: int) -> list[tuple[float, float, float]]:
        """``(yhat, yhat_lower, yhat_upper)`` of steps ``lo`` to ``hi - 1``, as floats."""
        return list(
            zip(
                self.yhat[lo:hi].tolist(),
                self.yhat_lower[lo:hi].tolist(),
                self.yhat_upper[lo:hi].tolist(),
                strict=True,
            )
        )

    def ds(self, index: int) -> datetime:
        """``ds`` of step ``index`` (0-based) as a UTC datetime."""
        return from_micros(self.ds_us[index])

    def _point(self, i: int) -> ForecastPoint:
        reference = None
        if self.reference is not None and not math.isnan(self.reference[3 * i]):
            reference = (
                self.reference[3 * i],
                self.reference[3 * i + 1],
                self.reference[3 * i + 2],
            )
        return ForecastPoint(
            step=self.step[i],
            ds=self.ds(i),
            yhat=self.yhat[i],
            yhat_lower=self.yhat_lower[i],
            yhat_upper=self.yhat_upper[i],
            reference=reference,
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
#: The epoch for naive datetimes, which the store means as UTC.
_NAIVE_EPOCH = datetime(1970, 1, 1)  # noqa: DTZ001
_NO_REFERENCE = (None, None, None)
#: The ``forecast_points`` columns :meth:`ForecastColumns.from_rows` takes, in order.
_POINT_COLUMNS = (
    forecast_points_table.c.step,
    # As the driver reads it (naive UTC on SQLite): the columns need microseconds, not
    # an aware datetime, and the conversion was a fifth of a bulk read's time.
    type_coerce(forecast_points_table.c.ds, DateTime(timezone=True)).label("ds"),
    forecast_points_table.c.yhat,
    forecast_points_table.c.yhat_lower,
    forecast_points_table.c.yhat_upper,
    forecast_points_table.c.ref_yhat,
    forecast_points_table.c.ref_lower,
    forecast_points_table.c.ref_upper,
)
#: Publications read per query by :meth:`Store.publications` (bounded ``IN`` lists).
_PUBLICATIONS_PER_QUERY = 500
#: Rows the driver fetches at a time in :meth:`Store.publications`.
_ROWS_PER_FETCH = 5000


def from_micros(micros: int) -> datetime:
    """The UTC datetime ``micros`` microseconds after the Unix epoch (exact)."""
    return _EPOCH + micros * _MICROSECOND


@dataclass(frozen=True)
class PublishedForecast:
    """A whole published forecast with its provenance."""

    publication_id: int
    series: str
    generated_at: datetime
    origin: datetime
    step_seconds: int
    level: float
    model_name: str
    model_version: str
    run_id: str
    #: A list as read from the store; :class:`ForecastColumns` in the API's view.
    points: Sequence[ForecastPoint] = field(default_factory=list)
    #: The factor the served band was stretched by around ``yhat`` (1: as calibrated).
    band_scale: float = 1.0
    #: The factor for steps beyond an hour of lead (:data:`~forecaster.recalibration.SHORT_LEAD`).
    band_scale_long: float = 1.0

    def is_stale(self, now: float, bound: float) -> bool:
        """Whether it was generated more than ``bound`` seconds before Unix time ``now``
        (``FORECASTER_SCHEDULE__STALE_AFTER_SECONDS``: the publish job is not keeping up)."""
        return now - self.generated_at.timestamp() > bound


#: Every ``job`` value the pipelines record in ``job_runs``.
RECORDED_JOBS = ("ingest", "train", "publish", "detect", "warm")
#: How far back a series' latest outcome per job is looked for (training is daily;
#: older runs are not its current state).
OUTCOME_LOOKBACK = timedelta(days=2)


@dataclass(frozen=True)
class JobOutcome:
    """One recorded job run (a row of ``job_runs``)."""

    id: int
    job: str
    series: str | None
    ok: bool
    started_at: datetime
    finished_at: datetime
    detail: str


@dataclass(frozen=True)
class Champion:
    """The model currently serving a series."""

    series: str
    training_id: int
    estimator: str
    model_version: str
    run_id: str
    mase: float | None
    promoted_at: datetime
    artifact: str | None


def series_info_from_row(row: Any) -> SeriesInfo:
    """A :class:`SeriesInfo` from a mapping row of ``series`` joined with its champion."""
    return SeriesInfo(
        id=row["id"],
        name=row["name"],
        family=row["family"],
        labels=dict(row["labels"] or {}),
        kind=row["kind"],
        unit=row["unit"],
        step_seconds=row["step_seconds"],
        horizon_steps=row["horizon_steps"],
        last_observation_at=row["last_observation_at"],
        champion=row["champion"],
        champion_version=row["champion_version"],
    )


#: One row: the store revision (``None`` on a schema without migration 0007's row)
#: and the number of series; what in-memory readers of the catalogue poll.
CHANGE_MARKER = select(
    select(store_revision_table.c.revision).where(store_revision_table.c.id == 1).scalar_subquery(),
    select(func.count()).select_from(series_table).scalar_subquery(),
)


@dataclass(frozen=True)
class CatalogueChanges:
    """What a reader of the catalogue must re-read (:func:`catalogue_changes`)."""

    #: The store revision now (``None``: a schema without migration 0007's row).
    revision: int | None
    #: The number of series now.
    count: int
    #: Re-read the rows stamped above this revision; ``None``: every row.
    since: int | None

    def narrow(self, query: Select[Any]) -> Select[Any]:
        """``query`` (over ``series``) limited to the rows to re-read."""
        if self.since is None:
            return query
        return query.where(series_table.c.revision > self.since)


def catalogue_changes(conn: Connection, since: int | None, known: int) -> CatalogueChanges | None:
    """What changed for a reader holding revision ``since`` and ``known`` series.

    ``None`` when nothing did (one read of :data:`CHANGE_MARKER`). Otherwise the
    rows stamped above ``since``, or every row when the reader holds none, when
    series went missing (deleted by hand), or when more than a quarter of them
    changed: one plain read of every row is then cheaper than picking the changed
    ones through the revision index (twice as cheap on PostgreSQL at 5,000 series,
    ``benchmarks/view_refresh.py``).
    """
    revision, count = conn.execute(CHANGE_MARKER).one()
    if since is not None and revision == since and count == known:
        return None
    if since is not None and count >= known:
        changed = conn.execute(
            select(func.count()).select_from(series_table).where(series_table.c.revision > since)
        ).scalar_one()
        if int(changed) * 4 > count:
            since = None
    else:
        since = None
    return CatalogueChanges(None if revision is None else int(revision), int(count), since)


def mark_changed(conn: Connection, series_ids: Iterable[int]) -> int:
    """Stamp ``series_ids`` with a new store revision; returns it.

    Call it as the last statement of every write transaction that changes a
    ``series`` row or a champion: the readers that keep the catalogue in memory
    (:class:`forecaster.api.view.ForecastView`,
    :class:`forecaster.consumers.scaling.LatestObservations`) re-read only rows
    stamped above the revision they hold. The series rows are locked first and the
    counter last, so on PostgreSQL the counter's row lock is held only until the
    commit that follows, increments commit in order, and two writers never wait on
    each other in opposite orders.
    """
    ids = sorted({int(i) for i in series_ids})
    if ids:
        conn.execute(
            # FOR NO KEY UPDATE on PostgreSQL: what an UPDATE of the row takes anyway;
            # plain FOR UPDATE would also wait for the key-share locks that foreign
            # keys (observations, publications) take on it, and deadlock with them.
            select(series_table.c.id)
            .where(series_table.c.id.in_(ids))
            .with_for_update(key_share=True)
        ).all()
    revision = conn.execute(
        update(store_revision_table)
        .where(store_revision_table.c.id == 1)
        .values(revision=store_revision_table.c.revision + 1)
        .returning(store_revision_table.c.revision)
    ).scalar_one_or_none()
    if revision is None:  # a schema made without migration 0007's first row
        revision = 1
        conn.execute(store_revision_table.insert().values(id=1, revision=revision))
    if ids:
        conn.execute(
            update(series_table).where(series_table.c.id.in_(ids)).values(revision=revision)
        )
    return int(revision)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise InputDataError(f"naive datetime {value.isoformat()} given; timestamps must be UTC")
    return value.astimezone(UTC)


class Store:
    """Repository over one engine. Every method runs in its own transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- series -----------------------------------------------------------------------
    def ensure_series(
        self,
        *,
        name: str,
        family: str,
        labels: dict[str, str] | None = None,
        kind: str = "load",
        unit: str = "",
        step_seconds: int,
        horizon_steps: int,
    ) -> int:
        """Create the series if it does not exist (or update its spec'd fields); return its id.

        Raises:
            InputDataError: ``name`` is longer than :data:`SERIES_NAME_MAX` characters
                (refused on every database; PostgreSQL would refuse it anyway).
        """
        if len(name) > SERIES_NAME_MAX:
            raise InputDataError(
                f"series name {name[:80]!r}... is {len(name)} characters long; "
                f"the store keeps names of at most {SERIES_NAME_MAX}"
            )
        values = {
            "family": family,
            "labels": dict(labels or {}),
            "kind": kind,
            "unit": unit,
            "step_seconds": int(step_seconds),
            "horizon_steps": int(horizon_steps),
        }
        try:
            with self.engine.begin() as conn:
                row = conn.execute(
                    select(series_table.c.id).where(series_table.c.name == name)
                ).first()
                if row is not None:
                    conn.execute(
                        update(series_table).where(series_table.c.id == row[0]).values(**values)
                    )
                    series_id = int(row[0])
                else:
                    result = conn.execute(
                        series_table.insert().values(
                            name=name, created_at=datetime.now(UTC), **values
                        )
                    )
                    series_id = int(result.inserted_primary_key[0])  # type: ignore[index]
                mark_changed(conn, [series_id])
                return series_id
        except IntegrityError:
            # Created concurrently by another process: read it back.
            return self.series(name).id
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot register series {name!r}: {exc}") from exc

    def series(self, name: str) -> SeriesInfo:
        """The catalogue entry of ``name``.

        Raises:
            SeriesNotFound: If no such series was ever ingested.
        """
        for info in self._select_series(series_table.c.name == name):
            return info
        raise SeriesNotFound(f"unknown series {name!r}")

    def list_series(self, family: str | None = None) -> list[SeriesInfo]:
        """All series (optionally one family), sorted by name."""
        condition = None if family is None else series_table.c.family == family
        return self._select_series(condition)

    def _select_series(self, condition: Any) -> list[SeriesInfo]:
        query = (
            select(
                series_table,
                champions_table.c.estimator.label("champion"),
                champions_table.c.model_version.label("champion_version"),
            )
            .select_from(
                series_table.outerjoin(
                    champions_table, champions_table.c.series_id == series_table.c.id
                )
            )
            .order_by(series_table.c.name)
        )
        if condition is not None:
            query = query.where(condition)
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(query).mappings().all()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the series catalogue: {exc}") from exc
        return [series_info_from_row(row) for row in rows]

    # -- history ----------------------------------------------------------------------
    def upsert_observations(self, series_id: int, points: Iterable[tuple[datetime, float]]) -> int:
        """Insert or overwrite observations of one series; idempotent.

        Re-running with the same or overlapping points never duplicates a
        (series, timestamp) pair. Non-finite values are rejected.

        Returns:
            The number of points written.
        """
        rows: list[dict[str, Any]] = []
        stamps: list[datetime] = []
        for ts, value in points:
            v = float(value)
            if not math.isfinite(v):
                raise InputDataError(f"non-finite value {value!r} at {ts.isoformat()}")
            stamps.append(_utc(ts))
            rows.append({"series_id": series_id, "ts": stamps[-1], "value": v})
        if not rows:
            return 0
        try:
            with self.engine.begin() as conn:
                insert = _dialect_insert(conn)
                for start in range(0, len(rows), _BATCH):
                    stmt = insert(observations_table)
                    stmt = stmt.on_conflict_do_update(
                        index_elements=["series_id", "ts"],
                        set_={"value": stmt.excluded.value},
                    )
                    conn.execute(stmt, rows[start : start + _BATCH])
                latest = max(stamps)
                conn.execute(
                    update(series_table)
                    .where(series_table.c.id == series_id)
                    .where(
                        (series_table.c.last_observation_at.is_(None))
                        | (series_table.c.last_observation_at < latest)
                    )
                    .values(last_observation_at=latest)
                )
                # Always: a rewrite of the newest value changes what readers of the
                # latest observation hold even when the timestamp does not move.
                mark_changed(conn, [series_id])
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot write observations of series id {series_id}: {exc}") from exc
        return len(rows)

    def history(
        self, name: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[tuple[datetime, float]]:
        """Observations of ``name`` in ``[since, until]``, oldest first."""
        info = self.series(name)
        query = select(observations_table.c.ts, observations_table.c.value).where(
            observations_table.c.series_id == info.id
        )
        if since is not None:
            query = query.where(observations_table.c.ts >= _utc(since))
        if until is not None:
            query = query.where(observations_table.c.ts <= _utc(until))
        query = query.order_by(observations_table.c.ts)
        try:
            with self.engine.connect() as conn:
                return [(row[0], float(row[1])) for row in conn.execute(query)]
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read history of {name!r}: {exc}") from exc

    def count_observations(self, name: str) -> int:
        """How many observations of ``name`` are stored."""
        info = self.series(name)
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(observations_table)
                    .where(observations_table.c.series_id == info.id)
                ).scalar_one()
            )

    def prune_history(self, name: str, *, before: datetime) -> int:
        """Delete observations of ``name`` older than ``before``; returns how many."""
        info = self.series(name)
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    delete(observations_table).where(
                        and_(
                            observations_table.c.series_id == info.id,
                            observations_table.c.ts < _utc(before),
                        )
                    )
                )
                deleted = int(result.rowcount or 0)
                if deleted:
                    mark_changed(conn, [info.id])
                return deleted
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot prune the history of {name!r}: {exc}") from exc

    # -- forecasts --------------------------------------------------------------------
    def publish_forecast(
        self,
        *,
        series: str,
        generated_at: datetime,
        origin: datetime,
        step_seconds: int,
        level: float,
        model_name: str,
        model_version: str,
        run_id: str,
        points: Sequence[ForecastPoint],
        band_scale: float = 1.0,
        band_scale_long: float | None = None,
        keep_recent: timedelta = timedelta(hours=2),
        keep_hourly: timedelta = timedelta(days=2),
    ) -> int:
        """Write a forecast and make it current, atomically.

        The rows and the switch of ``series.current_publication_id`` happen in one
        transaction: a reader sees the old forecast or the whole new one. Older
        publications are thinned: all of the last ``keep_recent``, then the first of
        each hour up to ``keep_hourly``, nothing older. ``band_scale`` records how far
        the served band was stretched (:mod:`forecaster.recalibration`), so the
        estimator's own band can be recovered; ``band_scale_long`` the factor of the
        steps beyond an hour of lead (default: ``band_scale``).

        Returns:
            The publication id.
        """
        if not points:
            raise InputDataError(f"refusing to publish an empty forecast for {series!r}")
        band_scale_long = band_scale if band_scale_long is None else band_scale_long
        for what, factor in (("band_scale", band_scale), ("band_scale_long", band_scale_long)):
            if not (math.isfinite(factor) and factor > 0):
                raise InputDataError(
                    f"forecast for {series!r}: {what} must be a positive number, got {factor!r}"
                )
        for p in points:
            bands = [("", (p.yhat, p.yhat_lower, p.yhat_upper))]
            if p.reference is not None:
                bands.append(("reference ", p.reference))
            for what, (yhat, lower, upper) in bands:
                if not all(math.isfinite(v) for v in (yhat, lower, upper)):
                    raise InputDataError(
                        f"forecast for {series!r} step {p.step}: {what}values are not finite"
                    )
                if not lower <= yhat <= upper:
                    raise InputDataError(
                        f"forecast for {series!r} step {p.step}: {what}interval "
                        f"[{lower}, {upper}] does not contain yhat {yhat}"
                    )
        info = self.series(series)
        generated_at = _utc(generated_at)
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    publications_table.insert().values(
                        series_id=info.id,
                        generated_at=generated_at,
                        origin=_utc(origin),
                        step_seconds=int(step_seconds),
                        horizon_steps=len(points),
                        level=float(level),
                        model_name=model_name,
                        model_version=str(model_version),
                        run_id=run_id,
                        band_scale=float(band_scale),
                        band_scale_long=float(band_scale_long),
                    )
                )
                publication_id = int(result.inserted_primary_key[0])  # type: ignore[index]
                conn.execute(
                    forecast_points_table.insert(),
                    [
                        {
                            "publication_id": publication_id,
                            "step": p.step,
                            "ds": _utc(p.ds),
                            "yhat": float(p.yhat),
                            "yhat_lower": float(p.yhat_lower),
                            "yhat_upper": float(p.yhat_upper),
                            **_reference_columns(p.reference),
                        }
                        for p in points
                    ],
                )
                conn.execute(
                    update(series_table)
                    .where(series_table.c.id == info.id)
                    .values(current_publication_id=publication_id)
                )
                self._thin_publications(conn, info.id, generated_at, keep_recent, keep_hourly)
                mark_changed(conn, [info.id])
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot publish forecast for {series!r}: {exc}") from exc
        return publication_id

    @staticmethod
    def _thin_publications(
        conn: Connection,
        series_id: int,
        now: datetime,
        keep_recent: timedelta,
        keep_hourly: timedelta,
    ) -> None:
        rows = conn.execute(
            select(publications_table.c.id, publications_table.c.generated_at)
            .where(publications_table.c.series_id == series_id)
            .where(publications_table.c.generated_at < now - keep_recent)
            .order_by(publications_table.c.generated_at)
        ).all()
        doomed: list[int] = []
        seen_hours: set[datetime] = set()
        for pub_id, generated in rows:
            if generated < now - keep_hourly:
                doomed.append(pub_id)
                continue
            hour = generated.replace(minute=0, second=0, microsecond=0)
            if hour in seen_hours:
                doomed.append(pub_id)
            else:
                seen_hours.add(hour)
        for start in range(0, len(doomed), 500):
            chunk = doomed[start : start + 500]
            conn.execute(
                delete(forecast_points_table).where(
                    forecast_points_table.c.publication_id.in_(chunk)
                )
            )
            conn.execute(delete(publications_table).where(publications_table.c.id.in_(chunk)))

    def latest_forecast(self, name: str) -> PublishedForecast:
        """The current published forecast of ``name``.

        Raises:
            SeriesNotFound: Unknown series.
            ForecastNotFound: Nothing published yet.
        """
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(series_table.c.id, series_table.c.current_publication_id).where(
                        series_table.c.name == name
                    )
                ).first()
                if row is None:
                    raise SeriesNotFound(f"unknown series {name!r}")
                if row[1] is None:
                    raise ForecastNotFound(f"series {name!r} has no published forecast yet")
                return self._load_publication(conn, name, int(row[1]))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the forecast of {name!r}: {exc}") from exc

    def publication(self, name: str, publication_id: int) -> PublishedForecast:
        """The published forecast ``publication_id`` of ``name`` (e.g. a known current one)."""
        try:
            with self.engine.connect() as conn:
                return self._load_publication(conn, name, publication_id)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the forecast of {name!r}: {exc}") from exc

    def forecast_made_before(self, name: str, when: datetime) -> PublishedForecast | None:
        """The last forecast of ``name`` generated at or before ``when`` (if kept)."""
        info = self.series(name)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(publications_table.c.id)
                .where(publications_table.c.series_id == info.id)
                .where(publications_table.c.generated_at <= _utc(when))
                .order_by(publications_table.c.generated_at.desc())
                .limit(1)
            ).first()
            return None if row is None else self._load_publication(conn, name, int(row[0]))

    def hourly_forecast_points(
        self, name: str, *, since: datetime, until: datetime
    ) -> list[tuple[datetime, float, float, float]]:
        """``(ds, yhat, lower, upper)`` for each forecast step in ``[since, until]``, as
        the most recent hourly publication before it forecast it, with the band the
        estimator gave (the publication's band scale undone).

        "Hourly publication": the first kept publication of each clock hour (the store
        keeps those for two days). Steps no such publication covers are left out.
        """
        return self.recalibration_points(name, since=since, until=until)[0]

    def long_lead_forecast_points(
        self, name: str, *, since: datetime, until: datetime
    ) -> list[tuple[datetime, float, float, float]]:
        """``(ds, yhat, lower, upper)`` of every hourly publication's forecast steps in
        ``[since, until]`` with a lead beyond :data:`~forecaster.recalibration.SHORT_LEAD`
        (steps forecast by several publications appear once per publication), with the
        band the estimator gave (the long band scale undone)."""
        return self.recalibration_points(name, since=since, until=until)[1]

    def recalibration_points(
        self, name: str, *, since: datetime, until: datetime
    ) -> tuple[
        list[tuple[datetime, float, float, float]], list[tuple[datetime, float, float, float]]
    ]:
        """:meth:`hourly_forecast_points` and :meth:`long_lead_forecast_points` from one
        read of the store (what the publish job's recalibration judges, hourly)."""
        hourly, rows = self._hourly_rows(name, since=since, until=until, back=timedelta(days=2))
        # publication i judges the steps after it and up to the next hourly one; only
        # publications from two hours before ``since`` on take part
        recent_from = _utc(since) - timedelta(hours=2)
        following = {
            pub_id: hourly[i + 1][1] if i + 1 < len(hourly) else None
            for i, (pub_id, _) in enumerate(hourly)
        }
        short: list[tuple[datetime, float, float, float]] = []
        long: list[tuple[datetime, float, float, float]] = []
        for pub_id, generated, ds, yhat, lower, upper, is_long in rows:
            if is_long:
                long.append((ds, yhat, lower, upper))
            after = following[pub_id]
            if generated < recent_from or ds <= generated or (after is not None and ds > after):
                continue
            short.append((ds, yhat, lower, upper))
        short.sort(key=lambda r: r[0])
        long.sort(key=lambda r: r[0])
        return short, long

    def _hourly_rows(
        self, name: str, *, since: datetime, until: datetime, back: timedelta
    ) -> tuple[
        list[tuple[int, datetime]],
        list[tuple[int, datetime, datetime, float, float, float, bool]],
    ]:
        """The hourly publications generated in ``[since - back, until]`` (oldest first,
        ``(id, generated_at)``) and their forecast steps with ``ds`` in ``[since, until]``
        as ``(publication id, generated_at, ds, yhat, lower, upper, lead beyond
        SHORT_LEAD)``, with the band the estimator gave: the publication's short scale
        undone for leads up to :data:`~forecaster.recalibration.SHORT_LEAD`, its long
        one beyond (older publications, without a long scale, used the short
        throughout).
        """
        info = self.series(name)
        start, end = _utc(since), _utc(until)
        try:
            with self.engine.connect() as conn:
                pubs = conn.execute(
                    select(
                        publications_table.c.id,
                        publications_table.c.generated_at,
                        publications_table.c.step_seconds,
                        publications_table.c.band_scale,
                        publications_table.c.band_scale_long,
                    )
                    .where(publications_table.c.series_id == info.id)
                    .where(publications_table.c.generated_at >= start - back)
                    .where(publications_table.c.generated_at <= end)
                    .order_by(publications_table.c.generated_at)
                ).all()
                hourly: list[tuple[int, datetime, int, float, float]] = []
                for pub_id, generated, step_seconds, short, long in pubs:
                    hour = generated.replace(minute=0, second=0, microsecond=0)
                    if hourly and hourly[-1][1].replace(minute=0, second=0, microsecond=0) == hour:
                        continue
                    short = 1.0 if short is None else float(short)
                    long = short if long is None else float(long)
                    hourly.append((int(pub_id), generated, int(step_seconds), short, long))
                if not hourly:
                    return [], []
                rows = conn.execute(
                    select(
                        forecast_points_table.c.publication_id,
                        forecast_points_table.c.step,
                        forecast_points_table.c.ds,
                        forecast_points_table.c.yhat,
                        forecast_points_table.c.yhat_lower,
                        forecast_points_table.c.yhat_upper,
                    )
                    .where(forecast_points_table.c.publication_id.in_([h[0] for h in hourly]))
                    .where(forecast_points_table.c.ds >= start)
                    .where(forecast_points_table.c.ds <= end)
                ).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the past forecasts of {name!r}: {exc}") from exc
        by_id = {h[0]: h for h in hourly}
        out = []
        for pub_id, step, ds, yhat, lower, upper in rows:
            _, generated, step_seconds, short, long = by_id[int(pub_id)]
            is_long = timedelta(seconds=int(step) * step_seconds) > SHORT_LEAD
            scale = long if is_long else short
            own_lower, own_upper = yhat - (yhat - lower) / scale, yhat + (upper - yhat) / scale
            out.append((int(pub_id), generated, ds, yhat, own_lower, own_upper, is_long))
        return [(h[0], h[1]) for h in hourly], out

    def publications(self, wanted: Mapping[int, str]) -> dict[int, PublishedForecast]:
        """The publications ``wanted`` (publication id -> series name), by id.

        Two queries per :data:`_PUBLICATIONS_PER_QUERY` publications instead of two per
        publication: the serving view's first load reads every series' current
        forecast, and one round trip each made that the bulk of its start-up.

        Raises:
            StoreError: The store failed, or a publication is not there (any more).
        """
        ids = sorted(wanted)
        out: dict[int, PublishedForecast] = {}
        try:
            with self.engine.connect() as conn:
                for start in range(0, len(ids), _PUBLICATIONS_PER_QUERY):
                    part = ids[start : start + _PUBLICATIONS_PER_QUERY]
                    pubs = {
                        row["id"]: row
                        for row in conn.execute(
                            select(publications_table).where(publications_table.c.id.in_(part))
                        ).mappings()
                    }
                    rows = conn.execute(
                        select(forecast_points_table.c.publication_id, *_POINT_COLUMNS)
                        .where(forecast_points_table.c.publication_id.in_(part))
                        .order_by(
                            forecast_points_table.c.publication_id, forecast_points_table.c.step
                        )
                        # Fetched in batches (a server-side cursor on PostgreSQL): the
                        # driver buffering all 144,000 rows left the API 20 MB larger.
                        .execution_options(yield_per=_ROWS_PER_FETCH)
                    )
                    for pub_id, group in groupby(rows, key=itemgetter(0)):
                        pub = pubs.get(pub_id)
                        if pub is not None:  # else it went between the two reads: missing
                            columns = ForecastColumns.from_rows(row[1:] for row in group)
                            out[pub_id] = _published(wanted[pub_id], pub, columns)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read {len(ids)} forecast(s): {exc}") from exc
        missing = [pub_id for pub_id in ids if pub_id not in out]
        if missing:
            names = ", ".join(repr(wanted[pub_id]) for pub_id in missing[:5])
            raise StoreError(
                f"{len(missing)} forecast(s) are no longer in the store ({names}); "
                "they were replaced while being read"
            )
        return out

    @staticmethod
    def _load_publication(conn: Connection, name: str, publication_id: int) -> PublishedForecast:
        pub = (
            conn.execute(
                select(publications_table).where(publications_table.c.id == publication_id)
            )
            .mappings()
            .one()
        )
        columns = ForecastColumns.from_rows(
            conn.execute(
                select(*_POINT_COLUMNS)
                .where(forecast_points_table.c.publication_id == publication_id)
                .order_by(forecast_points_table.c.step)
            )
        )
        return _published(name, pub, columns)

    # -- trainings and champions ------------------------------------------------------
    def record_training(
        self,
        *,
        series: str,
        run_id: str,
        estimator: str,
        model_version: str | None,
        promoted: bool,
        reason: str,
        metrics: dict[str, Any],
        artifact: str | None,
        trained_at: datetime | None = None,
    ) -> int:
        """Log one training outcome; when ``promoted`` also make it the series' champion."""
        info = self.series(series)
        now = _utc(trained_at) if trained_at else datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    trainings_table.insert().values(
                        series_id=info.id,
                        trained_at=now,
                        run_id=run_id,
                        estimator=estimator,
                        model_version=model_version,
                        promoted=promoted,
                        reason=reason,
                        metrics=metrics,
                        artifact=artifact,
                    )
                )
                training_id = int(result.inserted_primary_key[0])  # type: ignore[index]
                if promoted:
                    conn.execute(
                        delete(champions_table).where(champions_table.c.series_id == info.id)
                    )
                    mase = metrics.get("mase")
                    conn.execute(
                        champions_table.insert().values(
                            series_id=info.id,
                            training_id=training_id,
                            estimator=estimator,
                            model_version=str(model_version or "local"),
                            run_id=run_id,
                            mase=_finite_or_none(mase),
                            promoted_at=now,
                        )
                    )
                    mark_changed(conn, [info.id])
                return training_id
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record training of {series!r}: {exc}") from exc

    def promotion_lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Hold the series' promotion lock for a block (:func:`forecaster.store.db.
        promotion_lock`): one training at a time gates and promotes a series."""
        from forecaster.store.db import promotion_lock

        return promotion_lock(self.engine, name)

    def champion(self, name: str) -> Champion | None:
        """The series' champion, with its saved estimator state, or ``None``."""
        info = self.series(name)
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(champions_table, trainings_table.c.artifact)
                    .select_from(
                        champions_table.join(
                            trainings_table, trainings_table.c.id == champions_table.c.training_id
                        )
                    )
                    .where(champions_table.c.series_id == info.id)
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return Champion(
            series=name,
            training_id=row["training_id"],
            estimator=row["estimator"],
            model_version=row["model_version"],
            run_id=row["run_id"],
            mase=row["mase"],
            promoted_at=row["promoted_at"],
            artifact=row["artifact"],
        )

    def trainings(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        """The latest training outcomes of ``name``, newest first (without artifacts)."""
        info = self.series(name)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    trainings_table.c.id,
                    trainings_table.c.trained_at,
                    trainings_table.c.run_id,
                    trainings_table.c.estimator,
                    trainings_table.c.model_version,
                    trainings_table.c.promoted,
                    trainings_table.c.reason,
                    trainings_table.c.metrics,
                )
                .where(trainings_table.c.series_id == info.id)
                .order_by(trainings_table.c.trained_at.desc(), trainings_table.c.id.desc())
                .limit(limit)
            ).mappings()
            return [dict(r) for r in rows]

    def drop_old_artifacts(self, *, keep: int) -> int:
        """Clear the stored model of every training but each series' champion and its
        ``keep`` newest; returns how many were cleared.

        Only the champion's model is ever loaded (the publish job); the others stay in
        MLflow. Their outcome rows (reason, metrics) are kept for ``trainings``. A
        daily retrain stored a new model per series every day, forever.
        """
        t = trainings_table.c
        cleared = 0
        try:
            with self.engine.begin() as conn:
                champions = select(champions_table.c.training_id)
                ids = conn.execute(
                    select(t.id, t.series_id)
                    .where(t.artifact.is_not(None), t.id.not_in(champions))
                    .order_by(t.series_id, t.trained_at.desc(), t.id.desc())
                ).all()
                stale = [
                    row.id
                    for _, rows in groupby(ids, key=itemgetter(1))
                    for row in list(rows)[keep:]
                ]
                for start in range(0, len(stale), 500):
                    chunk = stale[start : start + 500]
                    conn.execute(
                        update(trainings_table).where(t.id.in_(chunk)).values(artifact=None)
                    )
                    cleared += len(chunk)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot clear old training artifacts: {exc}") from exc
        return cleared

    # -- job runs ---------------------------------------------------------------------
    def prune_job_runs(self, *, before: datetime, batch: int = 10_000) -> int:
        """Delete the job runs started before ``before``, ``batch`` rows per transaction
        (so a large backlog does not hold a long lock); returns how many went.

        Every ingest, publish and train run of every series is a row: 1,000 series
        published every minute add 1.4 million a day.
        """
        c = job_runs_table.c
        deleted = 0
        try:
            while True:
                oldest = select(c.id).where(c.started_at < _utc(before)).limit(batch)
                with self.engine.begin() as conn:
                    gone = conn.execute(delete(job_runs_table).where(c.id.in_(oldest))).rowcount
                deleted += gone
                if gone < batch:
                    return deleted
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot prune old job runs: {exc}") from exc

    def record_job_run(
        self,
        *,
        job: str,
        series: str | None,
        started_at: datetime,
        finished_at: datetime,
        ok: bool,
        detail: str = "",
    ) -> None:
        """Log the outcome of one job run (best effort: store errors are swallowed)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    job_runs_table.insert().values(
                        job=job,
                        series=series,
                        started_at=_utc(started_at),
                        finished_at=_utc(finished_at),
                        ok=ok,
                        detail=detail[:4000],
                    )
                )
        except SQLAlchemyError:
            return

    def latest_job_outcomes(
        self, jobs: Iterable[str], *, since: datetime, up_to_id: int | None = None
    ) -> list[JobOutcome]:
        """The latest finished run of each (job, series) started since ``since`` (and with
        an id up to ``up_to_id``), oldest first: one grouped query per job over the
        (job, started_at) index, never the whole table."""
        c = job_runs_table.c
        out: list[JobOutcome] = []
        with self.engine.connect() as conn:
            for job in jobs:
                recent = [c.job == job, c.started_at >= _utc(since), c.ok.is_not(None)]
                if up_to_id is not None:
                    recent.append(c.id <= up_to_id)
                latest = select(func.max(c.id)).where(*recent).group_by(c.series)
                rows = conn.execute(
                    select(c.id, c.job, c.series, c.ok, c.started_at, c.finished_at, c.detail)
                    .where(c.id.in_(latest))
                    .order_by(c.id)
                ).all()
                out += [
                    JobOutcome(
                        id=int(r.id),
                        job=str(r.job),
                        series=r.series,
                        ok=bool(r.ok),
                        started_at=r.started_at,
                        finished_at=r.finished_at or r.started_at,
                        detail=r.detail or "",
                    )
                    for r in rows
                ]
        return out

    def current_publications(self) -> dict[str, tuple[datetime, str, str]]:
        """Series name -> (generated_at, model name, model version) of its current forecast."""
        p = publications_table.c
        query = select(series_table.c.name, p.generated_at, p.model_name, p.model_version).join(
            publications_table, p.id == series_table.c.current_publication_id
        )
        try:
            with self.engine.connect() as conn:
                return {
                    r.name: (r.generated_at, r.model_name, r.model_version)
                    for r in conn.execute(query)
                }
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the current forecasts: {exc}") from exc

    def last_job_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """Latest job runs, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(job_runs_table).order_by(job_runs_table.c.id.desc()).limit(limit)
            ).mappings()
            return [dict(r) for r in rows]


def _published(name: str, pub: Any, columns: ForecastColumns) -> PublishedForecast:
    """The :class:`PublishedForecast` of a ``publications`` row and its points."""
    short = 1.0 if pub["band_scale"] is None else float(pub["band_scale"])
    long = pub["band_scale_long"]
    return PublishedForecast(
        publication_id=pub["id"],
        series=name,
        generated_at=pub["generated_at"],
        origin=pub["origin"],
        step_seconds=pub["step_seconds"],
        level=pub["level"],
        model_name=pub["model_name"],
        model_version=pub["model_version"],
        run_id=pub["run_id"],
        points=columns,
        band_scale=short,
        band_scale_long=short if long is None else float(long),
    )


def _dialect_insert(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def _finite_or_none(value: Any) -> float | None:
    """``value`` as a float, or ``None`` when missing or not finite (NaN, +-Inf)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _reference_columns(reference: tuple[float, float, float] | None) -> dict[str, float | None]:
    """The ``forecast_points`` columns of a point's reference band (NULL without one)."""
    yhat, lower, upper = reference or (None, None, None)
    return {"ref_yhat": yhat, "ref_lower": lower, "ref_upper": upper}
