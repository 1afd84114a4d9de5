"""The scheduler process: APScheduler running ingest, publish and train per series.

Runs in its own process (never inside API workers, where every worker would run
every job). Jobs are stored in the database (``apscheduler_jobs``) so their next
run times survive restarts; each job has at most one running instance, misfired
runs within the grace time are coalesced into one.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from forecaster.jobs.context import JobContext
    from forecaster.specs import PipelineSpec, SeriesSpec
    from forecaster.store.db import SchedulerLock

log = logging.getLogger(__name__)

_CONTEXT: dict[str, JobContext] = {}


class _QuietRequestPoll(logging.Filter):
    """Drop APScheduler's "skipped: maximum number of running instances" for the
    2-second request poll: while one poll runs a requested job (or waits on a busy
    SQLite store) the next is skipped by design; the warning read like a fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the poll's skip message, True for everything else."""
        message = record.getMessage()
        return not (
            message.startswith('Execution of job "requests ')
            and "maximum number of running instances" in message
        )


_QUIET_POLL = _QuietRequestPoll()


class _StaleStoredJob(logging.Filter):
    """APScheduler's "Unable to restore job" (with its traceback, at ERROR) for a job
    stored by another release that this one cannot load: one WARNING line that says
    what happened. The job is removed; the spec's jobs are added afresh anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the restore failure in place; let every other record through."""
        if not (isinstance(record.msg, str) and record.msg.startswith("Unable to restore job")):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        job_id = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg = (
            "dropped the stored scheduler job %r: this release cannot load it (%s), "
            "probably stored by another release; the spec's jobs are scheduled afresh"
        )
        record.args = (job_id, f"{type(exc).__name__}: {exc}" if exc else "no reason given")
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_STALE_STORED_JOB = _StaleStoredJob()


#: Set when the process is stopping: runs still queued in the pools are dropped.
_STOPPING = threading.Event()
#: Set when a job found the scheduler lock no longer ours: the scheduler stops (exit 1).
_LOCK_LOST = threading.Event()
#: The lock this process holds while it schedules (``"held"``), asked before each job.
_LOCK: dict[str, SchedulerLock] = {}
_RUNNING: set[str] = set()
_RUNNING_LOCK = threading.Lock()
#: Seconds running jobs get to finish after SIGTERM/SIGINT before the process exits
#: without them (Kubernetes sends SIGKILL 30 s after SIGTERM by default).
SHUTDOWN_GRACE_SECONDS = 15.0
#: How often the scheduler checks that it still holds the one-per-store lock.
LOCK_CHECK_SECONDS = 5.0
#: How soon a scheduling round that failed (the store locked or away) is tried again.
RETRY_SECONDS = 5.0


def _job(func: Callable[..., None]) -> Callable[..., None]:
    """A scheduled job that does nothing once the process is stopping (a run queued
    behind a slow one started after Ctrl-C) and is counted while it runs."""

    @functools.wraps(func)
    def run(*args: Any) -> None:
        if _STOPPING.is_set() or _LOCK_LOST.is_set():
            return
        name = f"{func.__name__}{list(args) if args else ''}"
        with _RUNNING_LOCK:  # counted from here: a check stuck on a stalled connection
            _RUNNING.add(name)  # is a run the shutdown waits for, then exits without
        try:
            held = _LOCK.get("held")
            if held is not None and not held.verified():
                # another scheduler may have the lock (and these jobs) since the last check
                log.error("the scheduler lock is no longer ours: %s not run; stopping", name)
                _LOCK_LOST.set()
                return
            func(*args)
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(name)

    return run


def _ctx() -> JobContext:
    try:
        return _CONTEXT["ctx"]
    except KeyError:
        raise RuntimeError("scheduler jobs run only inside `forecaster scheduler`") from None


#: One lock per family: the scheduled ingest and the bootstrap's first ingest never
#: fetch the same range twice at once (both run right after a start).
_INGEST_LOCKS: dict[str, threading.Lock] = {}
_INGEST_LOCKS_GUARD = threading.Lock()


def _ingest_lock(family: str) -> threading.Lock:
    with _INGEST_LOCKS_GUARD:
        return _INGEST_LOCKS.setdefault(family, threading.Lock())


@_job
def ingest_job(family: str) -> None:
    """Scheduled: ingest one spec'd series (family)."""
    from forecaster.jobs.runner import run_ingest

    ctx = _ctx()
    with _ingest_lock(family):
        run_ingest(ctx, ctx.select([family]))


@_job
def publish_job(family: str) -> None:
    """Scheduled: publish forecasts of one spec'd series (all members).

    Members with no champion yet (a new pod of a ``split_by`` family, or a first
    training that failed) get a first training in the training pool, at most once an
    hour each, and are not published until they have a model: they failed every
    minute until the daily retrain.
    """
    from forecaster.jobs.runner import run_publish

    ctx = _ctx()
    spec = ctx.select([family])
    untrained = _untrained_members(ctx, spec[0])
    ready = _ready_to_train(ctx, untrained)
    if ready:
        _schedule_first_training(ctx, family, ready)
    run_publish(ctx, spec, skip=set(untrained))


#: How long before a member whose first training did not give it a model is tried again.
FIRST_TRAINING_RETRY = timedelta(hours=1)


def _untrained_members(ctx: JobContext, spec: SeriesSpec) -> list[str]:
    """The reporting members of ``spec`` with no champion (one catalogue read)."""
    return [info.name for info in ctx.member_infos(spec)[0] if info.champion is None]


def _ready_to_train(ctx: JobContext, names: list[str]) -> list[str]:
    """Those of ``names`` with the observations a training needs: tried on its first
    sample, a first training failed ("1 observations ... at least 12") and was not
    tried again for an hour."""
    from forecaster.jobs.train import stored_toward_training

    return [name for name in names if stored_toward_training(ctx.store, name)[1]]


def _schedule_first_training(ctx: JobContext, family: str, names: list[str]) -> None:
    """Run the family's bootstrap (train the untrained, then publish) in the training
    pool now, unless each of ``names`` was tried within :data:`FIRST_TRAINING_RETRY`."""
    now = datetime.now(UTC)
    due = [
        n
        for n in names
        if now - ctx.first_training.get(n, datetime.min.replace(tzinfo=UTC)) > FIRST_TRAINING_RETRY
    ]
    scheduler: Any = _CONTEXT.get("scheduler")
    if not due or scheduler is None:
        return
    for name in due:
        ctx.first_training[name] = now
    log.info("first training of %d new member(s) of %s: %s", len(due), family, ", ".join(due[:5]))
    _add_bootstrap(scheduler, family, now)


def _add_bootstrap(scheduler: Any, family: str, when: datetime) -> str:
    """Schedule the family's bootstrap at ``when`` in the training pool; its job id.

    However late it starts (queued behind other trainings) it runs: dropped as
    misfired, a series had no model until the next day.
    """
    job_id = f"bootstrap:{family}"
    scheduler.add_job(
        bootstrap_job,
        trigger="date",
        run_date=when,
        args=[family],
        id=job_id,
        name=job_id,
        executor="train",
        replace_existing=True,
        misfire_grace_time=None,
    )
    return job_id


@_job
def train_job(family: str) -> None:
    """Scheduled: retrain one spec'd series (all members), then publish at once."""
    from forecaster.jobs.runner import run_publish, run_train

    ctx = _ctx()
    spec = ctx.select([family])
    run_train(ctx, spec)
    run_publish(ctx, spec)


@_job
def bootstrap_job(family: str) -> None:
    """Scheduled once at start: train members that have no champion yet, then publish."""
    from forecaster.jobs.runner import run_ingest, run_publish, run_train

    ctx = _ctx()
    spec = ctx.select([family])
    with _ingest_lock(family):  # the scheduled first ingest may be under way: wait for it
        if not ctx.members(spec[0]):
            run_ingest(ctx, spec)
    ready = _ready_to_train(ctx, _untrained_members(ctx, spec[0]))
    if ready:
        now = datetime.now(UTC)
        ctx.first_training.update((name, now) for name in ready)
        run_train(ctx, spec, only=set(ready))  # not the whole family for one new pod
    # members still without a model are not published (publish trains them once they
    # have the history)
    run_publish(ctx, spec, skip=set(_untrained_members(ctx, spec[0])))


@_job
def housekeeping_job() -> None:
    """Scheduled hourly: prune job runs past their retention and clear old training models;
    stop judging series no longer watched (their open regression events close)."""
    from forecaster.errors import ForecasterError
    from forecaster.jobs.detect import close_unwatched

    ctx = _ctx()
    settings = ctx.settings.schedule
    try:
        runs = ctx.store.prune_job_runs(
            before=datetime.now(UTC) - timedelta(hours=settings.job_runs_retention_hours)
        )
        models = ctx.store.drop_old_artifacts(keep=settings.training_artifacts_kept)
        observations = prune_observations(ctx)
        # e.g. a scheduler started on a spec that no longer watches a series
        unwatched = close_unwatched(ctx)
    except ForecasterError as exc:
        log.warning("housekeeping failed (retried in an hour): %s", exc)
        return
    if runs or models or observations or unwatched:
        log.info(
            "housekeeping: deleted %d job runs older than %dh and %d observations past "
            "their retention, cleared %d old training models, stopped judging %d series "
            "no longer watched",
            runs,
            settings.job_runs_retention_hours,
            observations,
            models,
            unwatched,
        )


#: Observations are kept at least this long whatever the retention (the dashboard's
#: longest window).
MIN_HISTORY_KEPT = timedelta(days=14)


def prune_observations(ctx: JobContext, now: datetime | None = None) -> int:
    """Delete observations past ``FORECASTER_SCHEDULE__HISTORY_RETENTION_DAYS`` (0: none),
    keeping at least each series' training history (and a watched series' baseline
    window) and :data:`MIN_HISTORY_KEPT`; retired members included."""
    days = ctx.settings.schedule.history_retention_days
    if not days:
        return 0
    now = now or datetime.now(UTC)
    deleted = 0
    for spec in ctx.spec.series:
        keep = max(timedelta(days=days), spec.history, MIN_HISTORY_KEPT)
        if spec.watch is not None:
            keep = max(keep, spec.watch.baseline_window)
        names = [info.name for info in ctx.store.list_series(family=spec.name)]
        for name in names:
            deleted += ctx.store.prune_history(name, before=now - keep)
    return deleted


@_job
def requests_job() -> None:
    """Scheduled every few seconds: run job requests queued through the admin API."""
    from forecaster.errors import ForecasterError
    from forecaster.jobs.runner import run_ingest, run_publish, run_train
    from forecaster.store.requests import claim_next, finish

    ctx = _ctx()
    while (request := claim_next(ctx.store.engine)) is not None:
        log.info("running requested %s for %s", request.job, request.series or "all series")
        try:
            if request.job == "reload":
                detail = reload_spec()
                log.info("%s", detail)
                finish(ctx.store.engine, request.id, ok=True, detail=detail)
                continue
            specs = ctx.select([request.series] if request.series else None)
            runner = {"ingest": run_ingest, "train": run_train, "publish": run_publish}[request.job]
            summary = runner(ctx, specs)
            detail = (
                f"{len(summary.results)} series ok"
                if summary.ok
                else "; ".join(f"{k}: {v}" for k, v in summary.errors.items())
            )
            kept = [r for r in summary.results if getattr(r, "promoted", True) is False]
            if kept:  # trained, but the champion stays (the gate, or MLflow failed)
                detail += "; champion kept for " + "; ".join(
                    f"{r.series}: {r.reason}" for r in kept
                )
            unregistered = summary.unregistered
            if unregistered:  # as `forecaster train` exits 1: nothing reached MLflow
                detail += f"; MLflow failed for {', '.join(unregistered)}"
            ok = summary.ok and not unregistered
            finish(ctx.store.engine, request.id, ok=ok, detail=detail)
        except ForecasterError as exc:
            # a refused reload was visible only to whoever polled the request
            log.error("requested %s failed: %s", request.job, exc)
            finish(ctx.store.engine, request.id, ok=False, detail=str(exc))
        except Exception as exc:
            log.exception("requested %s crashed", request.job)
            finish(ctx.store.engine, request.id, ok=False, detail=f"crashed: {exc}")


def reload_spec() -> str:
    """Re-read the pipeline spec; apply it only if it validates (else nothing changes).

    Raises:
        SpecError: The new spec is invalid; the running one stays in force.
    """
    from forecaster.specs import load_spec

    ctx = _ctx()
    path = ctx.spec.path or ctx.settings.pipelines
    new_spec = load_spec(path)
    from forecaster.jobs.detect import check_webhook_secrets

    check_webhook_secrets(new_spec)
    _check_changed_queries(ctx, new_spec, path)
    warn_publish_slower_than_staleness(new_spec, ctx.settings.schedule.stale_after_seconds)
    ctx.spec = new_spec
    scheduler = _CONTEXT.get("scheduler")
    if scheduler is not None:
        _add_jobs(scheduler, ctx, reload=True)
    from forecaster.errors import ForecasterError
    from forecaster.jobs.detect import close_unwatched

    try:  # series whose watch: (or whole entry) the new spec dropped: close their events
        close_unwatched(ctx)
    except ForecasterError as exc:  # the reload stands; housekeeping tries again hourly
        log.warning("closing the events of series no longer watched failed: %s", exc)
    return f"reloaded {path}: {len(new_spec.series)} series"


def warn_publish_slower_than_staleness(
    spec: PipelineSpec, stale_after_seconds: float
) -> str | None:
    """Warn (and return the warning) about series published less often than twice
    per staleness bound.

    With ``schedule.publish: 5m`` and the default 120 s bound the scaler refused each
    forecast as stale for 3 of every 5 minutes, and nothing said why.
    """
    from forecaster.durations import format_duration

    slow = [s for s in spec.series if 2 * s.schedule.publish.total_seconds() > stale_after_seconds]
    if not slow:
        return None
    longest = max(s.schedule.publish for s in slow)
    names = ", ".join(s.name for s in slow[:5]) + (" ..." if len(slow) > 5 else "")
    message = (
        f"{names}: published every {format_duration(longest)} (at most), but "
        f"FORECASTER_SCHEDULE__STALE_AFTER_SECONDS is {stale_after_seconds:g}: their "
        "forecasts go stale between publishes and the scaler refuses them; set it to at "
        f"least {2 * longest.total_seconds():g} (two publish intervals)"
    )
    log.warning("%s", message)
    return message


def _check_changed_queries(ctx: JobContext, new_spec: PipelineSpec, path: Any) -> None:
    """Ask Prometheus to parse every query a reload adds or changes.

    A query with a typo validated as a spec (PromQL is Prometheus' to parse), replaced
    the working one, and every ingest after it failed.

    Raises:
        SpecError: Naming each series whose query Prometheus refuses to parse.
    """
    from forecaster.errors import SpecError
    from forecaster.sources.prometheus import PrometheusSource

    running = {spec.name: spec.query for spec in ctx.spec.series}
    refused = []
    for spec in new_spec.series:
        if spec.query is None or running.get(spec.name) == spec.query:
            continue
        source = ctx.source_for(spec)
        if isinstance(source, PrometheusSource):
            problem = source.check_query(spec.query)
            if problem is not None:
                refused.append(f"series {spec.name!r}: query {spec.query!r}: {problem}")
    if refused:
        raise SpecError(
            f"{path}: Prometheus cannot parse {'; '.join(refused)}; the running spec stays in force"
        )


def build_scheduler(ctx: JobContext) -> Any:
    """A background APScheduler with every job of ``ctx.spec`` added, started paused."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.base import STATE_STOPPED

    _CONTEXT["ctx"] = ctx
    settings = ctx.settings.schedule
    logging.getLogger("apscheduler.scheduler").addFilter(_QUIET_POLL)  # once: same object
    logging.getLogger("apscheduler.jobstores.default").addFilter(_STALE_STORED_JOB)

    class Scheduler(BackgroundScheduler):  # type: ignore[misc]
        def _process_jobs(self) -> float | None:
            # APScheduler's loop wakes on shutdown and runs what is due once more,
            # into pools already shut down ("cannot schedule new futures")
            if self.state == STATE_STOPPED:
                return None
            try:
                return cast("float | None", super()._process_jobs())
            except Exception:
                # a store locked past its busy timeout, or a job removed under it: the
                # exception ended APScheduler's thread for good while the process kept
                # the lock and ran nothing again; try again shortly instead
                log.exception("scheduling round failed; retrying in %.0fs", RETRY_SECONDS)
                return RETRY_SECONDS

    scheduler = Scheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=ctx.store.engine)},
        # ingest waits on Prometheus (timeouts and retries) and training takes minutes
        # per family (more when MLflow hangs): each has its own pool, so neither can
        # hold back publishing or admin requests
        executors={
            "default": ThreadPoolExecutor(max_workers=2),
            "ingest": ThreadPoolExecutor(max_workers=2),
            "train": ThreadPoolExecutor(max_workers=2),
        },
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": settings.misfire_grace_seconds,
        },
        timezone=settings.timezone,
    )
    _CONTEXT["scheduler"] = scheduler
    scheduler.start(paused=True)
    _add_jobs(scheduler, ctx)
    return scheduler


def _add_jobs(scheduler: Any, ctx: JobContext, *, reload: bool = False) -> None:
    """Add (or replace) every job of ``ctx.spec``; remove jobs no longer in it.

    On a start, ingest runs at once: after a restart the history is behind, and the
    first run was a whole interval away. On a ``reload``, an interval job whose
    interval did not change keeps its next run (a reload pushed them all back).
    """
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    settings = ctx.settings.schedule
    now = datetime.now(UTC)

    def add(job_id: str, func: Callable[..., None], trigger: Any, **kwargs: Any) -> None:
        old = scheduler.get_job(job_id) if reload else None
        if (
            old is not None
            and old.next_run_time is not None
            and isinstance(trigger, IntervalTrigger)
            and getattr(old.trigger, "interval", None) == trigger.interval
        ):
            kwargs["next_run_time"] = old.next_run_time
        elif isinstance(trigger, IntervalTrigger):
            # its first run, at its start date or at once if adding the jobs took longer
            # (APScheduler moved a start date already past by a whole interval: 107 of
            # 1,500 ingests first ran 5 minutes late)
            kwargs["next_run_time"] = max(trigger.start_date, datetime.now(UTC))
        scheduler.add_job(
            func, trigger=trigger, id=job_id, name=job_id, replace_existing=True, **kwargs
        )

    wanted: set[str] = {"requests", "housekeeping"}
    add("requests", requests_job, IntervalTrigger(seconds=2))
    add(
        "housekeeping",
        housekeeping_job,
        IntervalTrigger(hours=1, start_date=now + timedelta(minutes=1)),
    )
    for spec in ctx.spec.series:
        jobs: list[tuple[str, Any, Any]] = [
            (
                f"ingest:{spec.name}",
                ingest_job,
                IntervalTrigger(
                    seconds=spec.ingest_every.total_seconds(),
                    start_date=now + timedelta(seconds=1),
                ),
            ),
            (
                f"publish:{spec.name}",
                publish_job,
                IntervalTrigger(
                    seconds=spec.schedule.publish.total_seconds(),
                    start_date=now + timedelta(seconds=15),
                ),
            ),
            (
                f"train:{spec.name}",
                train_job,
                CronTrigger.from_crontab(spec.schedule.train, timezone=settings.timezone),
            ),
        ]
        from forecaster.jobs.detect import consumer_jobs

        jobs.extend(consumer_jobs(spec, now))
        for job_id, func, trigger in jobs:
            wanted.add(job_id)
            executor = _executor_of(job_id)
            add(
                job_id,
                func,
                trigger,
                args=[spec.name],
                executor=executor,
                # a daily retrain queued behind others runs late rather than not at all
                **({"misfire_grace_time": None} if executor == "train" else {}),
            )
        wanted.add(_add_bootstrap(scheduler, spec.name, now + timedelta(seconds=2)))
    for job in scheduler.get_jobs():
        ours = job.id.startswith(
            ("ingest:", "publish:", "train:", "bootstrap:", "detect:", "warm:")
        )
        if ours and job.id not in wanted:
            log.info("removing job %s: no longer in the spec", job.id)
            job.remove()


def _executor_of(job_id: str) -> str:
    """The pool a job runs in: ingest and training each have their own."""
    kind = job_id.split(":", 1)[0]
    return kind if kind in ("ingest", "train") else "default"


def run_scheduler(ctx: JobContext, *, stop: threading.Event | None = None) -> None:
    """Run the scheduler until SIGINT/SIGTERM (or ``stop`` is set).

    Only one scheduler runs per store: a second one waits for the first to stop
    (:func:`forecaster.store.db.scheduler_lock`). On a signal, runs still queued are
    dropped and running ones get :data:`SHUTDOWN_GRACE_SECONDS` to finish; a second
    signal exits at once.
    """
    from forecaster.jobs.detect import check_webhook_secrets
    from forecaster.store.db import scheduler_lock

    check_webhook_secrets(ctx.spec)
    warn_publish_slower_than_staleness(ctx.spec, ctx.settings.schedule.stale_after_seconds)
    stop = stop or threading.Event()
    _STOPPING.clear()

    def _stop(signum: int, _frame: Any) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(130)
        log.info(
            "stopping on %s: queued runs are dropped, running ones get %.0fs to finish "
            "(send it again to exit now)",
            signal.Signals(signum).name,
            SHUTDOWN_GRACE_SECONDS,
        )
        stop.set()

    main = threading.current_thread() is threading.main_thread()
    if main:
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    lost = dead = False
    with scheduler_lock(ctx.store.engine, stop) as held:
        if not held:
            return
        _LOCK["held"] = held
        _LOCK_LOST.clear()
        _fail_interrupted_requests(ctx)
        scheduler = build_scheduler(ctx)
        scheduler.resume()
        for job in scheduler.get_jobs():
            log.info("scheduled %s, next run %s", job.id, job.next_run_time)
        try:
            while not stop.wait(LOCK_CHECK_SECONDS):  # returns at once on a signal
                if _LOCK_LOST.is_set() or not held.still_held():
                    lost = True
                    log.error(
                        "lost the scheduler lock (its database connection dropped; "
                        "another scheduler may have taken over): stopping"
                    )
                    break
                if not _scheduling_alive(scheduler):
                    dead = True
                    log.error(
                        "the scheduling thread died: stopping (exit status 1) so that the "
                        "lock is released and a restart or a waiting scheduler takes over"
                    )
                    break
        finally:
            _STOPPING.set()
            _LOCK.clear()
            # in a thread: shutdown waits for the job store's lock, which the scheduling
            # thread holds while its query hangs on a stalled connection
            stopping = threading.Thread(
                target=scheduler.shutdown, kwargs={"wait": False}, daemon=True
            )
            stopping.start()
            _wait_for_running(exit_after=main, code=1 if lost or dead else 0, also=stopping)
    if lost or dead:
        from forecaster.errors import StoreError
        from forecaster.store.db import LOST_LOCK

        raise StoreError(
            LOST_LOCK
            if lost
            else "the scheduler's scheduling thread died (see the log above) and it "
            "stopped; start it again"
        )


def _scheduling_alive(scheduler: Any) -> bool:
    """Whether APScheduler's own thread still runs (it ran no job again once dead)."""
    thread = getattr(scheduler, "_thread", None)
    return thread is None or thread.is_alive()


def _fail_interrupted_requests(ctx: JobContext) -> None:
    """Admin requests left running by a scheduler that stopped are failed, not kept
    running forever."""
    from sqlalchemy.exc import SQLAlchemyError

    from forecaster.store.requests import fail_interrupted

    try:
        count = fail_interrupted(ctx.store.engine)
    except SQLAlchemyError as exc:
        log.warning("cannot fail interrupted job requests: %s", exc)
        return
    if count:
        log.warning("%d job request(s) interrupted by the last scheduler stop marked failed", count)


def _wait_for_running(
    *, exit_after: bool, code: int = 0, also: threading.Thread | None = None
) -> None:
    """Give running jobs (and the thread ``also``, the scheduler's shutdown) the grace
    period; past it, exit with ``code`` without them (``exit_after``: the real process;
    a store write is one transaction, so none is left half done)."""
    deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
    while time.monotonic() < deadline:
        with _RUNNING_LOCK:
            if not _RUNNING and (also is None or not also.is_alive()):
                return
        time.sleep(0.2)
    with _RUNNING_LOCK:
        left = sorted(_RUNNING)
    if also is not None and also.is_alive():
        left.append("the scheduler's shutdown (its job store is not answering)")
    log.warning(
        "stopped with %d run(s) unfinished after %.0fs: %s",
        len(left),
        SHUTDOWN_GRACE_SECONDS,
        ", ".join(left),
    )
    if exit_after:
        logging.shutdown()
        os._exit(code)
