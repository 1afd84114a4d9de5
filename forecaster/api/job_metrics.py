"""Pipeline self-monitoring on ``/metrics``: per-stage durations, errors and progress from job_runs.

The scheduler records every ingest, train and publish run of every series in the
``job_runs`` table (``forecaster.jobs.runner``). This module folds those rows into
running totals in memory. The API's background refresher
(:func:`forecaster.api.app.create_app`) reads the rows added since the previous read
every ``min_interval`` seconds; a scrape only exports the totals last read, so it never
touches the database (a scrape that read them waited out a stalled store: 10 s or
more) and ``forecaster_job_stats_age_seconds`` says how old they are.

The counters count the runs recorded since the API process started (Prometheus's
``rate`` and ``increase`` take a restart in their stride). The state, each series'
latest outcome per stage and each stage's last run and success, is read on the
start from the runs of the last ``OUTCOME_LOOKBACK`` (two days), with one grouped
query per stage: folding the whole table took 30 s per million rows, and 1,000
series published every minute write 1.4 million a day.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from forecaster.store.repository import OUTCOME_LOOKBACK, RECORDED_JOBS
from forecaster.store.tables import job_runs_table

if TYPE_CHECKING:
    from forecaster.store.repository import Store

log = logging.getLogger(__name__)

STAGES = ("ingest", "train", "publish")
"""Stages always exported (with zeros before their first run) so dashboards have series."""

DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
"""Upper bounds (seconds) of the run-duration histogram."""

_BATCH = 5000


@dataclass
class StageTotals:
    """Running totals of one stage (``job`` value) over the runs read so far."""

    runs_ok: int = 0
    runs_failed: int = 0
    duration_sum: float = 0.0
    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    last_run_at: float | None = None
    last_success_at: float | None = None
    last_duration: float | None = None
    points: dict[str, int] = field(default_factory=dict)
    """Points written per series (from the runs' JSON detail, ``{"points": n}``)."""
    latest_ok: dict[str, bool] = field(default_factory=dict)
    """Outcome of the latest run per series."""

    def add(self, *, series: str | None, ok: bool, finished: float, duration: float | None) -> None:
        """Fold one run in (rows arrive in insertion order)."""
        if ok:
            self.runs_ok += 1
            self.last_success_at = max(self.last_success_at or finished, finished)
        else:
            self.runs_failed += 1
        self.last_run_at = max(self.last_run_at or finished, finished)
        if duration is not None:
            self.last_duration = duration
            self.duration_sum += duration
            index = next(
                (i for i, bound in enumerate(DURATION_BUCKETS) if duration <= bound),
                len(DURATION_BUCKETS),
            )
            self.bucket_counts[index] += 1
        if series is not None:
            self.latest_ok[series] = ok


class JobRunStats:
    """Incremental totals of the ``job_runs`` table, refreshed at most every ``min_interval``.

    :meth:`refresh` runs in the API's background refresher; :meth:`locked` gives a
    scrape the totals as last read, without waiting for a read in flight (one hung on
    a stalled connection held a scrape for as long as the connection).

    Args:
        store: The store whose engine holds ``job_runs``.
        min_interval: Minimum seconds between two reads of the table.
        max_age_seconds: Totals no read renewed for this long are stale
            (:meth:`problem`): a read hung on a stalled connection never fails.
    """

    def __init__(
        self, store: Store, *, min_interval: float = 5.0, max_age_seconds: float = math.inf
    ) -> None:
        self.store = store
        self.min_interval = min_interval
        self.max_age_seconds = max_age_seconds
        self.stages: dict[str, StageTotals] = {stage: StageTotals() for stage in STAGES}
        self.last_id: int | None = None  # None until the first read
        self.read_at: float | None = None
        #: Unix time the last read that worked finished (None before the first).
        self.read_ok_at: float | None = None
        self.error: str | None = None
        self._lock = threading.Lock()  # one read at a time (held across its queries)
        self._totals_lock = threading.Lock()  # the totals (held only to fold or export)

    def refresh(self, *, force: bool = False) -> None:
        """Read the rows added since the last read (unless one happened recently)."""
        with self._lock:
            now = time.monotonic()
            if not force and self.read_at is not None and now - self.read_at < self.min_interval:
                return
            self.read_at = now
            try:
                if self.last_id is None:
                    self._read_state()
                self._read_new_rows()
            except SQLAlchemyError as exc:
                self.error = f"{exc.__class__.__name__}: {exc}"[:300]
                log.warning("cannot read job runs for /metrics: %s", exc)
                return
            self.error = None
            self.read_ok_at = time.time()

    def problem(self, now: float | None = None) -> str | None:
        """Why the totals are not current, ``None`` when they are: the last read
        failed, none has worked yet, or none has finished for ``max_age_seconds``."""
        if self.error is not None:
            return self.error
        if self.read_ok_at is None:
            return "job runs not read yet"
        age = (time.time() if now is None else now) - self.read_ok_at
        if age > self.max_age_seconds:
            return f"job runs last read {age:.0f}s ago: the store is not answering"
        return None

    def locked(self) -> threading.Lock:
        """The lock to hold while reading :attr:`stages` (a read folds rows into them)."""
        return self._totals_lock

    def _read_state(self) -> None:
        """First read: the newest run (counting starts after it) and, from the last
        ``OUTCOME_LOOKBACK``, each stage's latest outcome per series and its last run,
        success and duration."""
        c = job_runs_table.c
        since = datetime.now(UTC) - OUTCOME_LOOKBACK
        with self.store.engine.connect() as conn:
            newest = int(conn.execute(select(func.max(c.id))).scalar() or 0)
        outcomes = self.store.latest_job_outcomes(RECORDED_JOBS, since=since, up_to_id=newest)
        successes: dict[str, float] = {}
        with self.store.engine.connect() as conn:
            for job in {run.job for run in outcomes}:
                success = conn.execute(
                    select(func.max(c.finished_at)).where(
                        c.job == job, c.started_at >= since, c.id <= newest, c.ok.is_(True)
                    )
                ).scalar()
                if success is not None:
                    successes[job] = success.timestamp()
        with self._totals_lock:
            for run in outcomes:  # oldest first
                totals = self.stages.setdefault(run.job, StageTotals())
                finished = run.finished_at.timestamp()
                totals.last_run_at = max(totals.last_run_at or finished, finished)
                totals.last_duration = (run.finished_at - run.started_at).total_seconds()
                if run.series is not None:
                    totals.latest_ok[run.series] = run.ok
            for job, success_at in successes.items():
                self.stages[job].last_success_at = success_at
            self.last_id = newest

    def _read_new_rows(self) -> None:
        columns = job_runs_table.c
        while True:
            query = (
                select(
                    columns.id,
                    columns.job,
                    columns.series,
                    columns.started_at,
                    columns.finished_at,
                    columns.ok,
                    columns.detail,
                )
                .where(columns.id > (self.last_id or 0))
                .where(columns.ok.is_not(None))
                .order_by(columns.id)
                .limit(_BATCH)
            )
            with self.store.engine.connect() as conn:
                rows = conn.execute(query).all()
            with self._totals_lock:
                for row in rows:
                    self._fold(row)
                    self.last_id = int(row.id)
            if len(rows) < _BATCH:
                return

    def _fold(self, row: Any) -> None:
        stage = self.stages.setdefault(str(row.job), StageTotals())
        finished = row.finished_at or row.started_at
        duration = None
        if row.finished_at is not None:
            duration = max(0.0, (row.finished_at - row.started_at).total_seconds())
        ok = bool(row.ok)
        stage.add(series=row.series, ok=ok, finished=finished.timestamp(), duration=duration)
        if ok and row.series is not None:
            points = _points(row.detail)
            if points is not None:
                stage.points[row.series] = stage.points.get(row.series, 0) + points


def _points(detail: str | None) -> int | None:
    """``n`` from a JSON detail like ``{"points": n, "seconds": s}``; None otherwise."""
    if not detail or not detail.startswith("{"):
        return None
    try:
        value = json.loads(detail).get("points")
    except (ValueError, AttributeError):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value)


class JobRunCollector(Collector):
    """Exports per-stage pipeline health as ``forecaster_job_*`` and ``forecaster_points_*``.

    Families (``stage`` is the ``job_runs.job`` value: ``ingest``, ``train``, ``publish`` or
    any other recorded stage; the label is not called ``job`` because Prometheus owns that
    one and would rename it to ``exported_job``):

    * ``forecaster_job_runs_total{stage, outcome}``: runs per outcome (``ok`` / ``error``).
    * ``forecaster_job_errors_total{stage}``: failed runs.
    * ``forecaster_job_duration_seconds{stage}``: histogram of run durations (one series each).
    * ``forecaster_job_last_duration_seconds{stage}``: duration of the latest run.
    * ``forecaster_job_last_run_timestamp_seconds{stage}`` and
      ``forecaster_job_last_success_timestamp_seconds{stage}``: Unix times.
    * ``forecaster_job_failing_series{stage}``: series whose latest run of that stage failed.
    * ``forecaster_points_ingested_total{series}``: observations written by ingest.
    * ``forecaster_job_stats_ok``: 1 when the last read of ``job_runs`` worked and one
      finished within ``max_age_seconds``.
    * ``forecaster_job_stats_age_seconds``: seconds since the last read that worked.

    A scrape exports the totals as last read by :meth:`JobRunStats.refresh` (the API's
    background refresher calls it); it reads nothing from the database.
    """

    def __init__(self, stats: JobRunStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        # the totals as last read: a scrape never waits on the store
        with self.stats.locked():
            families = self._families()
        yield from families

    def _families(self) -> list[Metric]:
        stages = self.stats.stages
        runs = CounterMetricFamily(
            "forecaster_job_runs",
            "Pipeline job runs per stage and outcome",
            labels=["stage", "outcome"],
        )
        errors = CounterMetricFamily(
            "forecaster_job_errors", "Failed pipeline job runs per stage", labels=["stage"]
        )
        durations = HistogramMetricFamily(
            "forecaster_job_duration_seconds",
            "Duration of pipeline job runs (one series each) per stage, in seconds",
            labels=["stage"],
        )
        last_duration = GaugeMetricFamily(
            "forecaster_job_last_duration_seconds",
            "Duration of the latest run of a stage, in seconds",
            labels=["stage"],
        )
        last_run = GaugeMetricFamily(
            "forecaster_job_last_run_timestamp_seconds",
            "Unix time the latest run of a stage finished",
            labels=["stage"],
        )
        last_success = GaugeMetricFamily(
            "forecaster_job_last_success_timestamp_seconds",
            "Unix time the latest successful run of a stage finished",
            labels=["stage"],
        )
        failing = GaugeMetricFamily(
            "forecaster_job_failing_series",
            "Series whose latest run of a stage failed",
            labels=["stage"],
        )
        points = CounterMetricFamily(
            "forecaster_points_ingested",
            "Observations written to the store by the ingest stage, per series",
            labels=["series"],
        )
        for job, totals in sorted(stages.items()):
            runs.add_metric([job, "ok"], totals.runs_ok)
            runs.add_metric([job, "error"], totals.runs_failed)
            errors.add_metric([job], totals.runs_failed)
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(
                (*(str(b) for b in DURATION_BUCKETS), "+Inf"), totals.bucket_counts, strict=True
            ):
                cumulative += count
                buckets.append((bound, cumulative))
            durations.add_metric([job], buckets, totals.duration_sum)
            if totals.last_duration is not None:
                last_duration.add_metric([job], totals.last_duration)
            if totals.last_run_at is not None:
                last_run.add_metric([job], totals.last_run_at)
            if totals.last_success_at is not None:
                last_success.add_metric([job], totals.last_success_at)
            failing.add_metric([job], sum(1 for ok in totals.latest_ok.values() if not ok))
        for series, count in sorted(stages.get("ingest", StageTotals()).points.items()):
            points.add_metric([series], count)
        stats_ok = GaugeMetricFamily(
            "forecaster_job_stats_ok",
            "1 when the API's last read of the job_runs table worked and one finished "
            "recently (the forecaster_job_* values are current)",
        )
        stats_ok.add_metric([], 0.0 if self.stats.problem() else 1.0)
        families: list[Metric] = [runs, errors, durations, last_duration, last_run, last_success]
        families += [failing, points, stats_ok]
        if self.stats.read_ok_at is not None:
            age = GaugeMetricFamily(
                "forecaster_job_stats_age_seconds",
                "Seconds since the API last read the job_runs table (the forecaster_job_* "
                "and forecaster_points_* values are this old)",
            )
            age.add_metric([], max(0.0, time.time() - self.stats.read_ok_at))
            families.append(age)
        return families
