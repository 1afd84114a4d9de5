"""Scaling answers from the in-memory forecast view: shared by the KEDA scaler and the API.

:func:`answer` checks everything a fail-safe autoscaler needs (store reachable,
series known, forecast published, fresh and covering the lead time), reads the
forecast quantile over ``[now, now + lead]`` and the latest observation, and asks
the planner for replicas. Any doubt raises a :class:`~forecaster.errors.ForecasterError`
that ``scaler/`` and ``api/`` turn into an error status, never into a 0.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import and_, select
from sqlalchemy.exc import SQLAlchemyError

from forecaster.consumers.planner import (
    Decision,
    ReplicaPlanner,
    ScalingPolicy,
    interval_quantile_steps,
    plan_replicas,
)
from forecaster.errors import ForecasterError, InputDataError, StoreError
from forecaster.store.planner_states import PlannerStateRow, PlannerStates
from forecaster.store.repository import catalogue_changes
from forecaster.store.tables import observations_table, series_table

if TYPE_CHECKING:
    from forecaster.api.view import CachedForecast, ForecastView
    from forecaster.store.repository import Store

log = logging.getLogger(__name__)

T = TypeVar("T")


class ForecastUnusable(ForecasterError):
    """The forecast exists but must not drive scaling (too old, or ends before the lead time)."""


class LeadBeyondHorizon(InputDataError):
    """The lead time reaches past what an on-time forecast of the series covers."""

    #: The HTTP query parameter to name in the 422.
    parameter = "lead_time"


@dataclass(frozen=True)
class ScalingQuery:
    """What a scaled workload asks for.

    Attributes:
        series: Series name in the store.
        policy: Target per replica, clamps and scale-down behaviour.
        lead_seconds: Time a new replica needs to become ready (> 0).
        quantile: Forecast quantile to provision for (see
            :func:`~forecaster.consumers.planner.interval_quantile`).
    """

    series: str
    policy: ScalingPolicy
    lead_seconds: float
    quantile: float


@dataclass(frozen=True)
class ScalingAnswer:
    """A planning decision and the forecast it came from."""

    decision: Decision
    series: str
    generated_at: datetime
    generated_at_iso: str
    age_seconds: float
    stale: bool


class LatestObservations:
    """The newest observed value of every series, reloaded on :meth:`refresh`.

    Like the forecast view it reads the store's change marker first and then only
    the series stamped since the revision it holds (all of them on the first load,
    or when the number of series went down).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._values: dict[str, tuple[float, float]] = {}
        self._revision: int | None = None
        self._count = 0
        self.refreshed_at: float | None = None
        self._lock = threading.Lock()
        self._failing = False

    def refresh(self) -> bool:
        """Reload; returns False (keeping the previous values) when the store fails."""
        query = select(series_table.c.name, observations_table.c.ts, observations_table.c.value)
        query = query.select_from(
            series_table.join(
                observations_table,
                and_(
                    observations_table.c.series_id == series_table.c.id,
                    observations_table.c.ts == series_table.c.last_observation_at,
                ),
            )
        )
        with self._lock:
            try:
                with self.store.engine.connect() as conn:
                    changes = catalogue_changes(conn, self._revision, self._count)
                    rows = [] if changes is None else conn.execute(changes.narrow(query)).all()
            except SQLAlchemyError as exc:
                # once per outage, first line only (a refresh runs every second or two in
                # the scaler: the whole statement and a link were logged each time)
                reason = (str(exc).splitlines() or [""])[0]
                if not self._failing:
                    log.warning(
                        "latest observations refresh failed (said again when it recovers): %s",
                        reason,
                    )
                else:
                    log.debug("latest observations refresh failed again: %s", reason)
                self._failing = True
                return False
            if self._failing:
                log.warning("latest observations refresh recovered: the store answers again")
                self._failing = False
            if changes is not None:
                values = dict(self._values) if changes.since is not None else {}
                values.update(
                    (str(name), (ts.timestamp(), float(value)))
                    for name, ts, value in rows
                    if math.isfinite(float(value))
                )
                self._values = values
                self._revision = changes.revision
                self._count = changes.count
            self.refreshed_at = datetime.now(UTC).timestamp()
            return True

    def get(self, series: str) -> tuple[float, float] | None:
        """``(unix time, value)`` of the newest observation of ``series``, if loaded."""
        return self._values.get(series)


def observation_max_age(step_seconds: float, stale_after_seconds: float) -> float:
    """Seconds the latest observation may be old and still count as current: up to a
    step (plus scrape and ingest delay) is natural, and never less than the forecast
    staleness bound."""
    return max(stale_after_seconds, 2 * step_seconds + 60)


def answer(
    view: ForecastView,
    query: ScalingQuery,
    *,
    now: float,
    stale_after_seconds: float,
    max_view_age_seconds: float,
    observations: LatestObservations | None = None,
    planner: ReplicaPlanner | None = None,
) -> ScalingAnswer:
    """Plan replicas for ``query`` from the view's current snapshot.

    Args:
        view: The in-memory forecast view (never queried per call).
        query: The validated request.
        now: Current Unix time in seconds.
        stale_after_seconds: Forecasts generated longer ago are refused.
        max_view_age_seconds: A view not refreshed for this long counts as an outage.
        observations: Latest observed loads; without one the plan uses the forecast alone.
        planner: Stateful planner of this workload; None plans statelessly.

    Raises:
        StoreError: The view never loaded, its last refresh failed, or it is too old.
        SeriesNotFound: Unknown series.
        ForecastNotFound: Nothing published for the series.
        ForecastUnusable: The forecast is stale or ends before ``now + lead``.
        InputDataError: The quantile is not available at the published level.
    """
    state = view.state
    if state.refreshed_at is None:
        raise StoreError(state.error or "the forecast store has not been loaded yet")
    if state.error is not None:
        raise StoreError(state.error)
    view_age = now - state.refreshed_at.timestamp()
    if view_age > max_view_age_seconds:
        raise StoreError(
            f"forecast view last refreshed {view_age:.0f}s ago "
            f"(limit {max_view_age_seconds:.0f}s): the store is not being read"
        )
    cached = view.forecast(query.series)
    forecast = cached.forecast
    age = now - forecast.generated_at.timestamp()
    if age > stale_after_seconds:
        raise ForecastUnusable(
            f"forecast of {query.series!r} was generated at {cached.generated_at_iso} "
            f"({age:.0f}s ago), older than the {stale_after_seconds:.0f}s staleness bound"
        )
    step = forecast.step_seconds
    # the same answer for a lead time whatever the minute: longer than the series is
    # published for is the request's error; otherwise a window not covered is late data
    limit = _lead_limit(cached)
    if query.lead_seconds > limit:
        raise _lead_beyond_horizon(cached, query, limit)
    lo, hi = view.window_ahead(cached, now - step, now + query.lead_seconds)
    if hi <= lo or cached.ds_epoch[hi - 1] < now + query.lead_seconds - step:
        raise _behind(cached, query, now)
    cols = cached.columns
    peak = max(interval_quantile_steps(query.quantile, cols.bands(lo, hi), level=forecast.level))
    observed: float | None = None
    note = ""
    latest = observations.get(query.series) if observations is not None else None
    if latest is None:
        note = "; no observation loaded, planning on the forecast alone"
    elif now - latest[0] > observation_max_age(step, stale_after_seconds):
        note = "; latest observation is too old to use, planning on the forecast alone"
    else:
        observed = latest[1]
    if planner is None:
        decision = plan_replicas(query.policy, forecast_peak=peak, observed=observed)
    else:
        # the planner scores its lead-time forecasts (for error headroom): the median
        # forecast for the end of the lead window now, the observation when it comes
        if latest is not None and observed is not None:
            planner.observe(latest[0], latest[1])
        planner.expect(cached.ds_epoch[hi - 1], cols.yhat[hi - 1])
        decision = planner.decide(now, forecast_peak=peak, observed=observed)
    if note:
        decision = replace(decision, reason=decision.reason + note)
    return ScalingAnswer(
        decision=decision,
        series=query.series,
        generated_at=forecast.generated_at,
        generated_at_iso=cached.generated_at_iso,
        age_seconds=age,
        stale=False,
    )


def _origin(cached: CachedForecast) -> float:
    """Unix time of the newest observation the forecast starts from (a step before its
    first point)."""
    return cached.ds_epoch[0] - cached.forecast.step_seconds


def _lead_limit(cached: CachedForecast) -> float:
    """The longest lead time a forecast of this series covers when published on time
    from data on time: how far it reaches past the data it starts from (the published
    horizon), less the lag data normally has (two steps and a minute)."""
    reach = cached.ds_epoch[-1] - _origin(cached)
    return max(0.0, reach - (2 * cached.forecast.step_seconds + 60))


def _lead_beyond_horizon(
    cached: CachedForecast, query: ScalingQuery, limit: float
) -> LeadBeyondHorizon:
    """The request's lead time is longer than the series is published for (422)."""
    reach = cached.ds_epoch[-1] - _origin(cached)
    return LeadBeyondHorizon(
        f"lead time {query.lead_seconds:.0f}s is longer than forecasts of {query.series!r} "
        f"cover: they reach {reach:.0f}s past the data they start from, so lead times up "
        f"to {limit:.0f}s are covered while data and publications are on time (or publish "
        "a longer horizon)"
    )


def _behind(cached: CachedForecast, query: ScalingQuery, now: float) -> ForecastUnusable:
    """A lead the series is published for, not covered: the data or the publication
    is late (503)."""
    from forecaster.api.view import iso_utc

    origin = _origin(cached)
    published = cached.forecast.generated_at.timestamp()
    return ForecastUnusable(
        f"forecast of {query.series!r} ends at {cached.ds_iso[-1]}, before now + lead time "
        f"({query.lead_seconds:.0f}s): it was published {now - published:.0f}s ago from "
        f"data up to {iso_utc(datetime.fromtimestamp(origin, UTC))} "
        f"({published - origin:.0f}s older than the publication); ingestion or "
        "publishing is behind"
    )


def trigger_digest(key: tuple[str, ...]) -> str:
    """A fixed-length digest of a planner key (the row key of its saved state)."""
    return hashlib.sha256(json.dumps(list(key)).encode()).hexdigest()


class PlannerBook:
    """Stateful planners keyed by workload, forgetting those not asked for a while.

    With ``states`` (the store's ``planner_state`` table) the planners' memory
    survives a restart: :meth:`persist`, called off the answering path (the
    scaler's refresh thread), first loads the saved states, then writes the
    planners that decided since its last write, at most every
    ``persist_every_seconds``; a planner asked for the first time starts from its
    saved state when there is one of the same policy. The answering path itself
    never touches the store.
    """

    def __init__(
        self,
        *,
        forget_after_seconds: float = 3600.0,
        max_entries: int = 10_000,
        states: PlannerStates | None = None,
        persist_every_seconds: float = 5.0,
        save_batch: int = 50,
        save_pause_seconds: float = 0.02,
    ) -> None:
        self.forget_after_seconds = forget_after_seconds
        self.max_entries = max_entries
        self.states = states
        self.persist_every_seconds = persist_every_seconds
        self.save_batch = save_batch
        self.save_pause_seconds = save_pause_seconds
        # least recently asked first (a planner asked for moves to the end)
        self._planners: OrderedDict[tuple[str, ...], tuple[ReplicaPlanner, float]] = OrderedDict()
        self._evicting_since: float | None = None
        self._lock = threading.Lock()
        # held while a planner decides and while one is copied for saving
        self._mutex = threading.Lock()
        self._labels: dict[tuple[str, ...], tuple[str, str, str]] = {}  # and digest
        # the key a trigger (its ScaledObject and KEDA's metric name) was last asked with
        self._lineage: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._lineage_of: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._dirty: set[tuple[str, ...]] = set()
        self._saved: dict[str, dict[str, Any]] = {}
        self._loaded_at: float | None = None
        self._persisted_at = self._pruned_at = 0.0
        self._failing = False

    @property
    def loaded(self) -> bool:
        """Whether the saved states were read (always true without ``states``)."""
        return self.states is None or self._loaded_at is not None

    def get(
        self,
        key: tuple[str, ...],
        policy: ScalingPolicy,
        now: float,
        *,
        lineage: tuple[str, ...] | None = None,
    ) -> ReplicaPlanner:
        """The planner of ``key``; a new one if unknown or if its policy changed: from
        its saved state, if one of this policy was loaded, else with the replica memory
        of the planner last asked for the same ``lineage`` (the same trigger before its
        metadata was edited), if any."""
        with self._lock:
            entry = self._planners.get(key)
            if entry is None or entry[0].policy != policy:
                if len(self._planners) >= self.max_entries:
                    self._forget(now)
                planner = self._restored(key, policy, now) if entry is None else None
                if planner is None and lineage is not None:
                    planner = self._carried_over(key, lineage, policy)
                planner = planner or ReplicaPlanner(policy)
            else:
                planner = entry[0]
            self._planners[key] = (planner, now)
            self._planners.move_to_end(key)
            if lineage is not None:
                self._lineage[lineage] = key
                self._lineage_of[key] = lineage
            return planner

    def _carried_over(
        self, key: tuple[str, ...], lineage: tuple[str, ...], policy: ScalingPolicy
    ) -> ReplicaPlanner | None:
        previous = self._lineage.get(lineage)
        entry = None if previous is None or previous == key else self._planners.get(previous)
        return None if entry is None else entry[0].carried_over(policy)

    def decide(
        self,
        key: tuple[str, ...],
        policy: ScalingPolicy,
        now: float,
        run: Callable[[ReplicaPlanner], T],
        *,
        labels: tuple[str, str] = ("", ""),
        lineage: tuple[str, ...] | None = None,
    ) -> T:
        """``run(planner)`` with the planner of ``key``; the planner is saved on the
        next :meth:`persist` (``labels``: the ScaledObject and series its row names;
        ``lineage``: see :meth:`get`)."""
        planner = self.get(key, policy, now, lineage=lineage)
        with self._mutex:
            result = run(planner)
            # only a decision is saved: a trigger that fails (an unknown series, a stale
            # forecast) left a row of its untouched planner for each of its calls' keys
            if self.states is not None:
                self._dirty.add(key)
                if key not in self._labels:
                    self._labels[key] = (*labels, trigger_digest(key))
            return result

    def _restored(
        self, key: tuple[str, ...], policy: ScalingPolicy, now: float
    ) -> ReplicaPlanner | None:
        if not self._saved:
            return None
        state = self._saved.pop(trigger_digest(key), None)
        if state is None:
            return None
        try:
            return ReplicaPlanner.restore(policy, state, now=now)
        except (ValueError, KeyError, TypeError, InputDataError) as exc:
            log.info("not restoring the saved planner state of %s: %s", key[:2], exc)
            return None

    def load(self, now: float) -> bool:
        """Read the saved states, unless they were (a read: it never waits for writers).

        Returns:
            False when the store failed (logged; retried on the next call).
        """
        return True if self.loaded else self.persist(now)

    def persist(self, now: float) -> bool:
        """Load the saved states (once), then save the planners that decided since the
        last save (at most every ``persist_every_seconds``). Off the answering path,
        and off the thread that refreshes the forecasts: a save can wait for the store's
        write lock.

        Returns:
            False when the store failed (logged; retried on the next call).
        """
        if self.states is None:
            return True
        try:
            if self._loaded_at is None:
                self._load(now)
            elif now - self._persisted_at >= self.persist_every_seconds:
                if not self.flush(now):
                    return not self._failing  # nothing to save: the store was not asked
            else:
                return not self._failing
        except StoreError as exc:
            if not self._failing:
                log.warning("planner state not saved or loaded (retrying): %s", exc)
            self._failing = True
            return False
        if self._failing:
            log.info("planner state store reachable again")
        self._failing = False
        return True

    def _load(self, now: float) -> None:
        assert self.states is not None
        since = datetime.fromtimestamp(now - self.forget_after_seconds, UTC)
        saved = self.states.load(since=since)
        self.states.prune(before=since)
        with self._lock:
            # a planner already asked for keeps its own memory
            live = {trigger_digest(key) for key in self._planners}
            self._saved = {k: v for k, v in saved.items() if k not in live}
        self._loaded_at = self._pruned_at = self._persisted_at = now
        if saved:
            log.info("loaded the saved state of %d replica planners", len(saved))

    def flush(self, now: float) -> int:
        """Save the planners that decided since the last save; returns how many.

        Raises:
            StoreError: The store cannot be written (they stay due for the next save).
        """
        if self.states is None:
            return 0
        self._persisted_at = now
        if now - self._pruned_at > self.forget_after_seconds:
            self._saved = {}  # never asked for since the start: gone
            self.states.prune(before=datetime.fromtimestamp(now - self.forget_after_seconds, UTC))
            self._pruned_at = now
        with self._mutex:
            due, self._dirty = self._dirty, set()
        keys = list(due)
        at = datetime.fromtimestamp(now, UTC)
        saved = 0
        for start in range(0, len(keys), self.save_batch):
            if start:
                # a pause between batches: one long save in this thread held the GIL for
                # tens of ms at a time, and the answers queued behind it (the scaler
                # latency benchmark's p99 went from ~9 to 30-110 ms)
                time.sleep(self.save_pause_seconds)
            rows = self._rows(keys[start : start + self.save_batch])
            try:
                self.states.save(rows, at=at)
            except StoreError:
                with self._mutex:
                    self._dirty.update(keys[start:])
                raise
            saved += len(rows)
        return saved

    def _rows(self, keys: list[tuple[str, ...]]) -> list[PlannerStateRow]:
        rows: list[PlannerStateRow] = []
        for key in keys:
            with self._lock:
                entry = self._planners.get(key)
            if entry is None:
                continue  # forgotten
            scaled_object, series, digest = self._labels.get(key) or ("", "", trigger_digest(key))
            with self._mutex:
                state = entry[0].snapshot()
            rows.append(PlannerStateRow(digest, scaled_object, series, state))
        return rows

    def _forget(self, now: float) -> None:
        """Drop the planners not asked for ``forget_after_seconds``, else the least
        recently asked one. In order of last use: with the book full, finding the
        oldest scanned every planner on every call (1.5 ms a call at 10,000)."""
        cutoff = now - self.forget_after_seconds
        planners = self._planners
        while planners:
            key, (_, seen) = next(iter(planners.items()))
            if seen >= cutoff:
                break
            del planners[key]
            self._dropped(key)
        if len(planners) >= self.max_entries:
            key, _ = planners.popitem(last=False)
            self._dropped(key)
            if self._evicting_since is None or now - self._evicting_since > 3600:
                self._evicting_since = now
                log.warning(
                    "more than %d scaled triggers asked within %.0fs: the least recently "
                    "asked planners are forgotten (their scale-down windows start over)",
                    self.max_entries,
                    self.forget_after_seconds,
                )

    def _dropped(self, key: tuple[str, ...]) -> None:
        self._labels.pop(key, None)
        lineage = self._lineage_of.pop(key, None)
        if lineage is not None and self._lineage.get(lineage) == key:
            del self._lineage[lineage]

    def __len__(self) -> int:
        return len(self._planners)
