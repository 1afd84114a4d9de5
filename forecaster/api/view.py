"""In-memory view of the latest published forecasts, refreshed from the store.

The serving path never touches a model, pandas or (per request) the database: a
background task polls the store's change marker (one small query), re-reads only
the series rows stamped since the snapshot it holds, and reloads a series' forecast
only when its current publication changed.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from forecaster.errors import ForecastNotFound, SeriesNotFound, StoreError
from forecaster.store.repository import ForecastColumns, catalogue_changes, from_micros
from forecaster.store.tables import champions_table, series_table

if TYPE_CHECKING:
    from forecaster.store.repository import PublishedForecast, SeriesInfo, Store

log = logging.getLogger(__name__)

#: Every series row with its champion; the view narrows it to the changed rows.
_CATALOGUE = select(
    series_table,
    champions_table.c.estimator.label("champion"),
    champions_table.c.model_version.label("champion_version"),
).select_from(
    series_table.outerjoin(champions_table, champions_table.c.series_id == series_table.c.id)
)


@dataclass(frozen=True)
class CachedForecast:
    """A published forecast prepared for fast slicing (``ds_epoch`` sorted ascending).

    ``forecast.points`` is ``columns``: the points as arrays of numbers, not objects.
    """

    forecast: PublishedForecast
    columns: ForecastColumns
    #: ``ds`` of every point as ISO 8601 UTC (``...Z``); the strings are shared by
    #: every series forecast for the same instants (:func:`_iso_at`).
    ds_iso: list[str]
    generated_at_iso: str

    @classmethod
    def of(cls, forecast: PublishedForecast) -> CachedForecast:
        """``forecast`` with its points as columns (as the store reads them)."""
        points = forecast.points
        columns = points if isinstance(points, ForecastColumns) else ForecastColumns(points)
        return cls(
            forecast=replace(forecast, points=columns),
            columns=columns,
            ds_iso=[_iso_at(micros) for micros in columns.ds_us],
            generated_at_iso=iso_utc(forecast.generated_at),
        )

    @property
    def ds_epoch(self) -> Sequence[float]:
        """``ds`` of every point as Unix seconds (for ``bisect``)."""
        return self.columns.ds_epoch

    def is_stale(self, now: float, bound: float) -> bool:
        """:meth:`PublishedForecast.is_stale` of the forecast held."""
        return self.forecast.is_stale(now, bound)


def _unknown_series(name: str, state: ViewState) -> str:
    """Why ``name`` is not a series: a ``split_by`` family's name (whose members are
    the series; asking for the family by name was a bare "unknown series"), or not
    known at all."""
    members = [info.name for info in state.members_of(name) if info.name != name]
    if members:
        return (
            f"unknown series {name!r}: it is a split_by family; name one of its "
            f"{len(members)} members (e.g. {min(members)!r}), or give the family's total "
            "its own series in the spec (the same query without split_by)"
        )
    return f"unknown series {name!r}"


@dataclass
class ViewState:
    """One consistent snapshot of the catalogue and forecasts."""

    series: dict[str, SeriesInfo] = field(default_factory=dict)
    forecasts: dict[str, CachedForecast] = field(default_factory=dict)
    publication_ids: dict[str, int | None] = field(default_factory=dict)
    refreshed_at: datetime | None = None
    error: str | None = None
    #: Store revision this snapshot reflects (``None``: not loaded, or a schema
    #: without the marker, where every refresh reads everything).
    revision: int | None = None

    def members_of(self, family: str) -> list[SeriesInfo]:
        """The series of the ``split_by`` family ``family`` (a series not split by a
        label is the one member of its own family)."""
        return [info for info in self.series.values() if info.family == family]


def iso_utc(value: datetime) -> str:
    """``value`` as ISO 8601 UTC with a ``Z`` (``2026-11-29T03:05:00Z``): the API's form."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@lru_cache(maxsize=65536)
def _iso_at(micros: int) -> str:
    """:func:`iso_utc` of an instant in microseconds since the epoch, one string per instant.

    Series published on the same schedule share their forecast instants: 1,000
    series x 288 steps need a few hundred distinct strings, not 288,000 (as one
    string per point they were a fifth of the view's memory).
    """
    return iso_utc(from_micros(micros))


def freeze_startup_heap() -> int:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze``).

    Called once by the serving processes (API workers, the scaler) after start-up and
    the view's first load. Python's full collections walk every tracked object; with
    the imported libraries that is a few hundred thousand, and the scaler's took 44-49
    ms, stalling every request in flight (GetMetrics max 45-68 ms, ``benchmarks/
    scaler_latency.py``). Frozen, they are skipped (full collections 2.5-6.5 ms);
    refcounting still frees them, so forecasts replaced later are released as before.
    Only in server processes: a test or notebook process would keep its cyclic
    garbage for good.

    Returns:
        How many objects were frozen.
    """
    import gc

    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("froze %d start-up objects out of the garbage collector's scans", frozen)
    return frozen


class ForecastView:
    """Thread-safe, swap-on-refresh snapshot of the store for the read path."""

    def __init__(self, store: Store, *, max_age_seconds: float = math.inf) -> None:
        self.store = store
        #: A view no refresh has renewed for this long is not fit to serve
        #: (:meth:`problem`): a refresh hung on a stalled connection.
        self.max_age_seconds = max_age_seconds
        self._state = ViewState()
        self._lock = threading.Lock()

    @property
    def state(self) -> ViewState:
        """The current snapshot (replaced wholesale on refresh, never mutated)."""
        return self._state

    def problem(self, now: datetime | None = None) -> str | None:
        """Why the view is not fit to serve, ``None`` when it is.

        Its last refresh failed, or none has finished for longer than
        :attr:`max_age_seconds`: a refresh stuck on a connection that stalled (the
        database or the network hung, a half-open connection) never fails, and the
        view read as healthy while nothing renewed it for minutes.
        """
        state = self._state
        if state.error is not None:
            return state.error
        if state.refreshed_at is None:
            return "the forecast view has not loaded from the store yet"
        age = ((now or datetime.now(UTC)) - state.refreshed_at).total_seconds()
        if age > self.max_age_seconds:
            return (
                f"forecast view last refreshed {age:.0f}s ago (limit "
                f"{self.max_age_seconds:.0f}s): the store is not answering"
            )
        return None

    def refresh(self) -> bool:
        """Reload what changed since the last refresh.

        Returns:
            True when the store answered; False when it failed (the previous
            snapshot keeps serving and ``state.error`` says why).
        """
        with self._lock:
            old = self._state
            try:
                new = self._load(old)
            except (SQLAlchemyError, StoreError) as exc:
                # SQLAlchemy's text goes on with the statement and a link: the first
                # line says what failed
                reason = (str(exc).splitlines() or [""])[0]
                self._state = replace(
                    old, error=f"store unavailable: {exc.__class__.__name__}: {reason}"[:500]
                )
                if old.error is None:  # once per outage: a refresh runs every second or two
                    log.warning(
                        "forecast view refresh failed (the last snapshot keeps serving; "
                        "said again when it recovers): %s",
                        reason,
                    )
                else:
                    log.debug("forecast view refresh failed again: %s", reason)
                return False
            if old.error is not None:
                log.warning("forecast view refresh recovered: the store answers again")
            self._state = new
            return True

    def _load(self, old: ViewState) -> ViewState:
        """The catalogue and forecasts as of now, re-reading only what changed.

        Writers stamp each series row they change with a new store revision
        (:func:`forecaster.store.repository.mark_changed`): what to re-read is
        :func:`~forecaster.store.repository.catalogue_changes`. A different series
        count than the merged catalogue (a series written without a stamp) reloads
        everything.
        """
        from forecaster.store.repository import series_info_from_row

        with self.store.engine.connect() as conn:
            changes = catalogue_changes(conn, old.revision, len(old.series))
            if changes is None:
                return replace(old, refreshed_at=datetime.now(UTC), error=None)
            rows = conn.execute(changes.narrow(_CATALOGUE)).mappings().all()
        incremental = changes.since is not None
        series = dict(old.series) if incremental else {}
        publication_ids = dict(old.publication_ids) if incremental else {}
        forecasts = dict(old.forecasts) if incremental else {}
        to_read: dict[int, str] = {}
        for row in rows:
            name = row["name"]
            series[name] = series_info_from_row(row)
            pub_id = row["current_publication_id"]
            publication_ids[name] = pub_id
            if pub_id is None:
                forecasts.pop(name, None)
                continue
            cached = old.forecasts.get(name)
            if cached is not None and cached.forecast.publication_id == pub_id:
                forecasts[name] = cached
            else:
                to_read[int(pub_id)] = name
        if incremental and len(series) != changes.count:
            return self._load(replace(old, revision=None))
        for forecast in self.store.publications(to_read).values():
            forecasts[forecast.series] = CachedForecast.of(forecast)
        return ViewState(
            series=series,
            forecasts=forecasts,
            publication_ids=publication_ids,
            refreshed_at=datetime.now(UTC),
            revision=changes.revision,
        )

    # -- reads ------------------------------------------------------------------------
    def series_info(self, name: str) -> SeriesInfo:
        """Catalogue entry of ``name``.

        Raises:
            SeriesNotFound: Unknown series.
        """
        state = self._state
        info = state.series.get(name)
        if info is None:
            raise SeriesNotFound(_unknown_series(name, state))
        return info

    def forecast(self, name: str) -> CachedForecast:
        """The cached current forecast of ``name``.

        Raises:
            SeriesNotFound: Unknown series.
            ForecastNotFound: Known series with nothing published.
        """
        state = self._state
        cached = state.forecasts.get(name)
        if cached is None:
            if name not in state.series:
                raise SeriesNotFound(_unknown_series(name, state))
            raise ForecastNotFound(f"series {name!r} has no published forecast yet")
        return cached

    @staticmethod
    def window(cached: CachedForecast, start: float, end: float) -> tuple[int, int]:
        """Index range of points with ``start < ds_epoch <= end``."""
        lo = bisect.bisect_right(cached.ds_epoch, start)
        hi = bisect.bisect_right(cached.ds_epoch, end)
        return lo, hi

    @staticmethod
    def window_ahead(cached: CachedForecast, start: float, end: float) -> tuple[int, int]:
        """:meth:`window` for a coming window: never empty while a step covers its end.

        A window shorter than the gap to the next forecast point (a 1m lead on a 5m
        series just after a publication, whose first point is a step after its origin)
        holds no point; the next point, whose step ``(ds - step, ds]`` holds ``end``, is
        then the forecast for the window, rather than nothing.
        """
        lo, hi = ForecastView.window(cached, start, end)
        ds = cached.ds_epoch
        if lo == hi < len(ds) and ds[hi] - cached.forecast.step_seconds <= end:
            hi += 1
        return lo, hi
