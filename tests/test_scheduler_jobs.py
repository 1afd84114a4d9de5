"""How the scheduler runs its jobs: ingest in a pool of its own, nothing new once stopping,
hourly housekeeping."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from forecaster import scheduler as scheduler_module
from forecaster.jobs.context import JobContext
from tests.support.scheduler import scheduler_thread
from tests.support.specs import elb_spec


@contextlib.contextmanager
def _built(ctx: JobContext) -> Iterator[Any]:
    """``build_scheduler(ctx)`` (paused), shut down with the job context after the block."""
    scheduler = scheduler_module.build_scheduler(ctx)
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)
        scheduler_module._CONTEXT.clear()
        ctx.store.engine.dispose()


def test_ingest_and_training_run_in_pools_of_their_own(
    tmp_path: Path, nab: Path, make_settings: Any, write_spec: Any
) -> None:
    """A Prometheus that hangs holds ingest runs for their timeouts and retries; in the
    shared pool that stopped every publish (forecasts went stale) and admin request."""
    spec = elb_spec(tmp_path, nab, write_spec)
    ctx = JobContext.create(make_settings(spec=spec))
    with _built(ctx) as scheduler:
        jobs = {job.id: job for job in scheduler.get_jobs()}
        executors = {job_id: job.executor for job_id, job in jobs.items()}
        assert executors["ingest:elb"] == "ingest"
        # training (minutes; longer when MLflow hangs) held back publishing and admin
        # requests in the shared pool, and a bootstrap queued behind it was dropped
        assert executors["train:elb"] == executors["bootstrap:elb"] == "train"
        assert {executors[j] for j in ("publish:elb", "requests", "housekeeping")} == {"default"}
        assert jobs["bootstrap:elb"].misfire_grace_time is None
        assert jobs["train:elb"].misfire_grace_time is None
        assert jobs["publish:elb"].misfire_grace_time == ctx.settings.schedule.misfire_grace_seconds


def test_runs_queued_when_the_process_stops_are_dropped() -> None:
    """After SIGTERM a run still queued behind a slow one must not start (they did,
    and kept the process up for minutes)."""
    scheduler_module._STOPPING.set()
    try:
        # outside a running scheduler these would raise (no job context): they return
        scheduler_module.ingest_job("elb")
        scheduler_module.publish_job("elb")
        scheduler_module.requests_job()
    finally:
        scheduler_module._STOPPING.clear()


def test_housekeeping_runs_hourly_and_prunes_old_job_runs(
    tmp_path: Path,
    nab: Path,
    make_settings: Any,
    write_spec: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = elb_spec(tmp_path, nab, write_spec)
    monkeypatch.setenv("FORECASTER_SCHEDULE__JOB_RUNS_RETENTION_HOURS", "24")
    ctx = JobContext.create(make_settings(spec=spec))
    assert ctx.settings.schedule.job_runs_retention_hours == 24
    now = datetime.now(UTC)
    for age in (timedelta(hours=30), timedelta(hours=25), timedelta(hours=1)):
        ctx.store.record_job_run(
            job="publish", series="elb", started_at=now - age, finished_at=now - age, ok=True
        )
    with _built(ctx) as scheduler:
        job = scheduler.get_job("housekeeping")
        assert job.trigger.interval == timedelta(hours=1)
        caplog.set_level("INFO", logger="forecaster.scheduler")
        scheduler_module.housekeeping_job()
        assert len(ctx.store.last_job_runs()) == 1
        assert "deleted 2 job runs older than 24h" in caplog.text


def test_observations_are_pruned_only_when_a_retention_is_set(
    tmp_path: Path, make_settings: Any, write_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(
        tmp_path / "spec.yaml",
        [
            {"name": "short", "query": "up", "history": "3d"},
            {"name": "long", "query": "up", "history": "40d"},
        ],
        step="1h",
        horizon="1h",
    )
    now = datetime(2026, 11, 29, tzinfo=UTC)

    def stored(ctx: JobContext) -> dict[str, int]:
        return {name: ctx.store.count_observations(name) for name in ("short", "long")}

    ctx = JobContext.create(make_settings(spec=spec))
    for name in ("short", "long"):
        sid = ctx.store.ensure_series(name=name, family=name, step_seconds=3600, horizon_steps=1)
        ctx.store.upsert_observations(sid, [(now - timedelta(days=d), 1.0) for d in range(60)])
    assert scheduler_module.prune_observations(ctx, now) == 0  # default: kept forever
    ctx.store.engine.dispose()

    monkeypatch.setenv("FORECASTER_SCHEDULE__HISTORY_RETENTION_DAYS", "20")
    ctx = JobContext.create(make_settings(spec=spec))
    # 20 days kept of "short" (more than its 3-day history and the 14-day minimum);
    # "long" keeps its 40-day training history
    assert scheduler_module.prune_observations(ctx, now) == (60 - 21) + (60 - 41)
    assert stored(ctx) == {"short": 21, "long": 41}
    ctx.store.engine.dispose()


def test_requests_left_running_by_a_stopped_scheduler_are_failed(
    tmp_path: Path, make_settings: Any, write_spec: Any
) -> None:
    """A train request running when the scheduler stopped stayed "running" forever."""
    from forecaster.store.requests import claim_next, enqueue, get_request

    spec = write_spec(tmp_path / "spec.yaml", [{"name": "s", "query": "up"}], step="1m")
    ctx = JobContext.create(make_settings(spec=spec))
    engine = ctx.store.engine
    running = enqueue(engine, job="train", series=None)
    assert claim_next(engine) is not None  # the old scheduler took it, then stopped
    waiting = enqueue(engine, job="publish", series=None)
    scheduler_module._fail_interrupted_requests(ctx)
    interrupted = get_request(engine, running.id)
    assert interrupted.status == "failed"
    assert "interrupted: the scheduler stopped while running it" in interrupted.detail
    assert get_request(engine, waiting.id).status == "pending"  # still runs
    engine.dispose()


def test_a_refused_reload_is_logged_and_keeps_the_running_spec(
    tmp_path: Path, make_settings: Any, write_spec: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Only whoever polled the request learnt that a reload was refused: the scheduler's
    log said "running requested reload" and nothing else."""
    from forecaster.store.requests import enqueue, get_request

    spec = write_spec(tmp_path / "spec.yaml", [{"name": "s", "query": "up"}], step="1m")
    ctx = JobContext.create(make_settings(spec=spec))
    with _built(ctx):
        write_spec(spec, [{"name": "s", "query": "up", "splitby": ["pod"]}], step="1m")
        refused = enqueue(ctx.store.engine, job="reload", series=None)
        caplog.set_level("INFO", logger="forecaster.scheduler")
        scheduler_module.requests_job()
        assert get_request(ctx.store.engine, refused.id).status == "failed"
        assert "requested reload failed: " in caplog.text and "splitby: unknown key" in (
            caplog.text
        )
        assert [s.name for s in ctx.spec.series] == ["s"] and not ctx.spec.series[0].split_by
        write_spec(spec, [{"name": "s", "query": "up"}, {"name": "t", "query": "up"}], step="1m")
        done = enqueue(ctx.store.engine, job="reload", series=None)
        scheduler_module.requests_job()
        assert get_request(ctx.store.engine, done.id).status == "done"
        assert f"reloaded {spec}: 2 series" in caplog.text


@pytest.mark.integration
def test_a_reload_whose_query_prometheus_cannot_parse_keeps_the_running_spec(
    tmp_path: Path, make_settings: Any, write_spec: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A query with a missing parenthesis was accepted on reload and replaced the
    working one; every ingest after it failed (real Prometheus)."""
    from forecaster.errors import SpecError
    from tests.support.promserver import free_port, running_prometheus

    spec = write_spec(tmp_path / "spec.yaml", [{"name": "s", "query": "up"}], step="1m")
    with running_prometheus(tmp_path, {}) as prometheus:
        ctx = JobContext.create(make_settings(spec=spec, prometheus={"url": prometheus.url}))
        with _built(ctx):
            broken = 'sum(rate(http_requests_total{service="checkout"}[1m])'
            write_spec(spec, [{"name": "s", "query": broken}], step="1m")
            with pytest.raises(SpecError) as refused:
                scheduler_module.reload_spec()
            assert f"series 's': query {broken!r}:" in str(refused.value)
            assert "parse error" in str(refused.value), refused.value
            assert "the running spec stays in force" in str(refused.value)
            assert ctx.spec.series[0].query == "up"
            fixed = 'sum(rate(http_requests_total{service="checkout"}[1m]))'
            write_spec(spec, [{"name": "s", "query": fixed}], step="1m")
            scheduler_module.reload_spec()
            assert ctx.spec.series[0].query == fixed
    # a Prometheus that cannot be asked is no verdict on the query: the reload goes on
    down = make_settings(
        spec=spec,
        prometheus={"url": f"http://127.0.0.1:{free_port()}", "timeout_seconds": 2},
    )
    ctx = JobContext.create(down)
    with _built(ctx):
        write_spec(spec, [{"name": "s", "query": "up"}], step="1m")
        caplog.set_level("WARNING", logger="forecaster.sources.prometheus")
        scheduler_module.reload_spec()
        assert ctx.spec.series[0].query == "up"
        assert "could not check query 'up' against Prometheus" in caplog.text


def test_a_scheduler_refuses_to_start_without_its_webhook_secrets(
    tmp_path: Path, make_settings: Any, write_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forecaster.errors import ConfigError

    monkeypatch.delenv("NOT_SET_HOOK", raising=False)
    hook = {"webhook": "http://127.0.0.1:9/h", "secret_env": "NOT_SET_HOOK"}
    spec = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "s", "query": "up", "watch": hook}, {"name": "t", "query": "up"}],
        step="1m",
    )
    ctx = JobContext.create(make_settings(spec=spec))
    with pytest.raises(ConfigError, match="s watch: NOT_SET_HOOK"):
        scheduler_module.run_scheduler(ctx)
    ctx.store.engine.dispose()


def test_a_requested_training_names_what_was_not_promoted(
    tmp_path: Path, make_settings: Any, write_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A train request whose model could not be registered (MLflow down) read "3 series
    ok", as if the new models served."""
    from forecaster.jobs import runner
    from forecaster.jobs.train import TrainResult
    from forecaster.store.requests import enqueue, get_request

    spec = write_spec(tmp_path / "spec.yaml", [{"name": "s", "query": "up"}], step="1m")
    ctx = JobContext.create(make_settings(spec=spec))

    def trained(_ctx: Any, specs: Any) -> runner.RunSummary:  # the unit-test seam
        kept = TrainResult("s", "lightgbm", False, "not promoted: MLflow failed", "r", None)
        return runner.RunSummary("train", results=[kept])

    monkeypatch.setattr(runner, "run_train", trained)
    monkeypatch.setitem(scheduler_module._CONTEXT, "ctx", ctx)
    request = enqueue(ctx.store.engine, job="train", series=None)
    scheduler_module.requests_job()
    done = get_request(ctx.store.engine, request.id)
    assert done.status == "done"
    assert done.detail == "1 series ok; champion kept for s: not promoted: MLflow failed"
    ctx.store.engine.dispose()


def test_a_requested_training_mlflow_failed_for_is_failed(
    tmp_path: Path, make_settings: Any, write_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A train request whose models MLflow could not register (the tracking server
    down) read "done", though ``forecaster train`` exits 1 for the same outcome. The
    real path: a tracking URI where nothing listens."""
    from forecaster.store.requests import enqueue, get_request
    from tests.support.promserver import free_port

    nab_file = Path(__file__).parent.parent / "data/nab/realAWSCloudwatch"
    spec = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "s", "file": str(nab_file / "elb_request_count_8c0756.csv")}],
        step="5m",
        history="1d",
        horizon="1h",
        estimators=["seasonal_naive"],
    )
    down = f"http://127.0.0.1:{free_port()}"
    ctx = JobContext.create(
        make_settings(spec=spec, mlflow={"tracking_uri": down, "artifact_location": None})
    )
    from forecaster.jobs.runner import run_ingest

    assert run_ingest(ctx, ctx.select(None)).ok
    monkeypatch.setitem(scheduler_module._CONTEXT, "ctx", ctx)
    request = enqueue(ctx.store.engine, job="train", series=None)
    scheduler_module.requests_job()
    done = get_request(ctx.store.engine, request.id)
    assert done.status == "failed", done
    assert "MLflow failed for s" in done.detail
    ctx.store.engine.dispose()


def _family_of_pods(
    tmp_path: Path, make_settings: Any, write_spec: Any, points: dict[str, int]
) -> tuple[JobContext, datetime, dict[str, int]]:
    """A ``split_by: [pod]`` family ``fam`` (5m steps) whose pods have ``points``
    5-minute observations each up to now; the context, now and the pods' series ids."""
    spec = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "fam", "query": "sum by (pod) (up)", "split_by": ["pod"]}],
        step="5m",
        history="3d",
        horizon="1h",
        estimators=["seasonal_naive"],
    )
    ctx = JobContext.create(make_settings(spec=spec))
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    now -= timedelta(minutes=now.minute % 5)
    ids = {}
    for pod, count in points.items():
        ids[pod] = ctx.store.ensure_series(
            name=f'fam{{pod="{pod}"}}', family="fam", labels={"pod": pod},
            step_seconds=300, horizon_steps=12,
        )  # fmt: skip
        ctx.store.upsert_observations(
            ids[pod], [(now - i * timedelta(minutes=5), 100.0 + i % 288) for i in range(count)]
        )
    return ctx, now, ids


def test_a_new_member_gets_its_first_training_without_retraining_the_family(
    tmp_path: Path, make_settings: Any, write_spec: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A pod that appeared after start had no model until the daily retrain, its publish
    failing every minute; and a first training retrained every member of the family."""
    from forecaster.jobs.runner import run_train

    ctx, _now, _ids = _family_of_pods(
        tmp_path, make_settings, write_spec, {"old": 2 * 288, "new": 2 * 288}
    )
    family = ctx.select(["fam"])
    assert run_train(ctx, family, only={'fam{pod="old"}'}).ok  # trained before "new" came
    old_trainings = len(ctx.store.trainings('fam{pod="old"}'))
    with _built(ctx) as scheduler:
        scheduler.remove_job("bootstrap:fam")  # the start-up one: the test runs it by hand
        caplog.set_level("INFO", logger="forecaster.scheduler")
        scheduler_module.publish_job("fam")
        job = scheduler.get_job("bootstrap:fam")
        assert job is not None and job.executor == "train"
        assert 'first training of 1 new member(s) of fam: fam{pod="new"}' in caplog.text
        published = {
            r["series"]: r["ok"] for r in ctx.store.last_job_runs() if r["job"] == "publish"
        }
        assert published == {'fam{pod="old"}': True}  # "new" waits for its model, no failure
        scheduler.remove_job("bootstrap:fam")
        scheduler_module.publish_job("fam")  # within the hour: not scheduled again
        assert scheduler.get_job("bootstrap:fam") is None
        scheduler_module.bootstrap_job("fam")
        assert ctx.store.champion('fam{pod="new"}') is not None
        assert len(ctx.store.trainings('fam{pod="old"}')) == old_trainings
        assert ctx.store.latest_forecast('fam{pod="new"}').points


def test_a_new_member_is_trained_once_it_has_the_history_a_training_needs(
    tmp_path: Path, make_settings: Any, write_spec: Any
) -> None:
    """The first training ran on the new pod's first sample, failed ("1 observations
    ... at least 12 are needed") and was not tried again for an hour; the bootstrap
    also published the untrained member, recording a publish failure."""
    from forecaster.commands.status import collect
    from forecaster.jobs.runner import run_train
    from forecaster.jobs.train import MIN_POINTS

    ctx, now, ids = _family_of_pods(tmp_path, make_settings, write_spec, {"old": 2 * 288, "new": 1})
    assert run_train(ctx, ctx.select(["fam"]), only={'fam{pod="old"}'}).ok
    with _built(ctx) as scheduler:
        scheduler.remove_job("bootstrap:fam")
        scheduler_module.bootstrap_job("fam")  # as at a start: nothing to train yet
        scheduler_module.publish_job("fam")
        assert scheduler.get_job("bootstrap:fam") is None  # no training scheduled
        runs = ctx.store.last_job_runs()
        assert all(r["ok"] for r in runs), [r["detail"] for r in runs if not r["ok"]]
        assert 'fam{pod="new"}' not in {r["series"] for r in runs}
        (new,) = [r for r in collect(ctx, ctx.select(["fam"]), now) if "new" in r.series]
        assert new.problem.startswith(f"waiting for history: 1 of the {MIN_POINTS}")
        ctx.store.upsert_observations(  # an hour of samples later
            ids["new"], [(now + i * timedelta(minutes=5), 100.0) for i in range(1, MIN_POINTS)]
        )
        scheduler_module.publish_job("fam")
        assert scheduler.get_job("bootstrap:fam") is not None  # trained at once now


def test_a_restarted_scheduler_ingests_at_once(
    tmp_path: Path, nab: Path, make_settings: Any, write_spec: Any
) -> None:
    """After a restart the history is behind; the first ingest was a whole interval
    (the 5-minute step here) away, so forecasts were republished from stale data."""
    import threading

    from forecaster.jobs.runner import run_ingest

    spec = elb_spec(tmp_path, nab, write_spec)
    ctx = JobContext.create(make_settings(spec=spec))
    assert run_ingest(ctx, ctx.select(["elb"])).ok  # what the previous process ingested
    before = {r["id"] for r in ctx.store.last_job_runs() if r["job"] == "ingest"}
    stop = threading.Event()
    thread = threading.Thread(
        target=scheduler_module.run_scheduler, args=(ctx,), kwargs={"stop": stop}
    )
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not any(
            r["job"] == "ingest" and r["id"] not in before for r in ctx.store.last_job_runs()
        ):
            assert thread.is_alive() and time.monotonic() < deadline, "no ingest after the start"
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=60)
        scheduler_module._CONTEXT.clear()
        scheduler_module._STOPPING.clear()  # set by the stop, read by later direct job calls
        ctx.store.engine.dispose()
    assert not thread.is_alive()


def test_a_reload_keeps_the_next_runs_of_unchanged_intervals(
    tmp_path: Path, nab: Path, make_settings: Any, write_spec: Any
) -> None:
    """A reload replaced every job with a fresh trigger, pushing each ingest and publish
    back by up to a whole interval; one whose interval changed is rescheduled."""
    spec = elb_spec(tmp_path, nab, write_spec)
    ctx = JobContext.create(make_settings(spec=spec))
    with _built(ctx) as scheduler:
        ingest = scheduler.get_job("ingest:elb")
        # the start: ingest at once, not one step (5 minutes) later
        assert ingest.next_run_time - datetime.now(UTC) < timedelta(seconds=5)
        due = {j: scheduler.get_job(j).next_run_time for j in ("ingest:elb", "publish:elb")}
        time.sleep(1.1)  # a fresh trigger would start later than the kept time
        scheduler_module.reload_spec()
        assert {j: scheduler.get_job(j).next_run_time for j in due} == due

        trace = nab / "realAWSCloudwatch/elb_request_count_8c0756.csv"
        write_spec(
            spec,
            [{"name": "elb", "file": str(trace), "schedule": {"ingest": "10m"}}],
            history="3d",
            horizon="1h",
            estimators=["seasonal_naive"],
        )
        scheduler_module.reload_spec()
        ingest = scheduler.get_job("ingest:elb")
        assert ingest.trigger.interval == timedelta(minutes=10)
        assert ingest.next_run_time != due["ingest:elb"]
        assert scheduler.get_job("publish:elb").next_run_time == due["publish:elb"]


def test_every_ingest_runs_at_once_however_long_adding_the_jobs_takes(
    tmp_path: Path, write_spec: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each first run was "a second from when adding began": a job added later than
    that was moved a whole interval (107 of 1,500 ingests first ran 5 minutes late)."""
    spec = write_spec(
        tmp_path / "spec.yaml",
        [{"name": f"s{i}", "query": "up"} for i in range(3)],
        step="5m",
        history="3d",
        horizon="1h",
    )
    ctx = JobContext.create(make_settings(spec=spec))
    with _built(ctx) as scheduler:
        real = scheduler.add_job

        def slow_add(*args: Any, **kwargs: Any) -> Any:
            time.sleep(0.3)  # a store round trip per job, 1,500 times
            return real(*args, **kwargs)

        monkeypatch.setattr(scheduler, "add_job", slow_add)
        scheduler_module._add_jobs(scheduler, ctx)  # as at a start
        due = [scheduler.get_job(f"ingest:s{i}").next_run_time for i in range(3)]
        assert max(due) - datetime.now(UTC) < timedelta(seconds=5), due


def test_the_bootstrap_waits_for_a_running_ingest_instead_of_repeating_it(
    tmp_path: Path, nab: Path, make_settings: Any, write_spec: Any
) -> None:
    """On a first start the scheduled ingest (at once) and the bootstrap (which ingests
    a family with no history) both fetched the whole history at the same time."""
    import threading

    from forecaster.jobs.runner import run_ingest

    spec = elb_spec(tmp_path, nab, write_spec)
    ctx = JobContext.create(make_settings(spec=spec))
    with _built(ctx):  # paused: nothing runs by itself
        with scheduler_module._ingest_lock("elb"):  # the scheduled ingest is running
            bootstrap = threading.Thread(target=scheduler_module.bootstrap_job, args=("elb",))
            bootstrap.start()
            bootstrap.join(timeout=1)
            assert bootstrap.is_alive()  # waiting for the ingest
            assert run_ingest(ctx, ctx.select(["elb"])).ok
        bootstrap.join(timeout=120)
        assert not bootstrap.is_alive()
        jobs = [r["job"] for r in ctx.store.last_job_runs()]
        assert jobs.count("ingest") == 1  # the bootstrap did not ingest again
        assert "train" in jobs and "publish" in jobs


def test_a_publish_interval_the_staleness_bound_cannot_cover_is_warned_about(
    tmp_path: Path, write_spec: Any
) -> None:
    """publish: 5m with the default 120 s bound: the scaler refused the forecast for 3
    of every 5 minutes and neither start-up nor a reload said why."""
    from forecaster.specs import load_spec

    spec = load_spec(
        write_spec(
            tmp_path / "spec.yaml",
            [
                {"name": "slow", "query": "up", "schedule": {"publish": "5m"}},
                {"name": "fine", "query": "up"},
            ],
        )
    )
    warning = scheduler_module.warn_publish_slower_than_staleness(spec, 120)
    assert warning is not None and warning.startswith("slow: published every 5m (at most)")
    assert "set it to at least 600" in warning
    assert scheduler_module.warn_publish_slower_than_staleness(spec, 600) is None


def test_a_failed_scheduling_round_is_retried_not_the_end_of_scheduling(
    tmp_path: Path, write_spec: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store locked past its busy timeout raised out of APScheduler's loop: its
    thread died, the process kept the lock and never ran a job again."""
    from apscheduler.schedulers.background import BackgroundScheduler

    spec = write_spec(tmp_path / "spec.yaml", [{"name": "s", "query": "up"}], step="1m")
    ctx = JobContext.create(make_settings(spec=spec))
    calls = []
    real = BackgroundScheduler._process_jobs

    def flaky(self: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return real(self)

    monkeypatch.setattr(BackgroundScheduler, "_process_jobs", flaky)
    monkeypatch.setattr(scheduler_module, "RETRY_SECONDS", 0.2)
    with _built(ctx) as scheduler:
        scheduler.resume()
        deadline = time.monotonic() + 10
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(calls) >= 2  # tried again
        assert scheduler_module._scheduling_alive(scheduler)


def test_a_scheduler_whose_scheduling_thread_died_stops_with_an_error(
    tmp_path: Path, write_spec: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It stayed up holding the lock, so a waiting scheduler never took over."""

    from forecaster.errors import StoreError

    spec = write_spec(tmp_path / "spec.yaml", [{"name": "s", "query": "up"}], step="1m")
    ctx = JobContext.create(make_settings(spec=spec))
    monkeypatch.setattr(scheduler_module, "LOCK_CHECK_SECONDS", 0.2)
    monkeypatch.setattr(scheduler_module, "_scheduling_alive", lambda _scheduler: False)
    thread, failure = scheduler_thread(ctx)
    thread.join(timeout=60)
    scheduler_module._CONTEXT.clear()
    scheduler_module._STOPPING.clear()
    ctx.store.engine.dispose()
    assert not thread.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], StoreError)
    assert "scheduling thread died" in str(failure[0])


def test_a_stored_job_this_release_cannot_load_is_one_warning_not_a_traceback(
    tmp_path: Path,
    nab: Path,
    make_settings: Any,
    write_spec: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A job stored by another release (a job this one no longer has) was dropped by
    APScheduler with a full traceback at the start, which read like a crash."""
    import logging
    import pickle

    from sqlalchemy import text

    spec = elb_spec(tmp_path, nab, write_spec)
    ctx = JobContext.create(make_settings(spec=spec))
    with _built(ctx) as scheduler:
        state = scheduler.get_job("publish:elb").__getstate__()
    state["id"] = "retired:elb"
    state["func"] = "forecaster.scheduler:retired_job_of_an_older_release"
    with ctx.store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO apscheduler_jobs (id, next_run_time, job_state) "
                "SELECT 'retired:elb', next_run_time, :s FROM apscheduler_jobs "
                "WHERE id = 'publish:elb'"
            ),
            {"s": pickle.dumps(state)},
        )
    caplog.clear()
    with (
        caplog.at_level(logging.INFO),
        _built(JobContext.create(make_settings(spec=spec))) as again,
    ):
        assert again.get_job("publish:elb") is not None
        assert "retired:elb" not in {job.id for job in again.get_jobs()}
    dropped = [r for r in caplog.records if "retired:elb" in r.getMessage()]
    assert len(dropped) == 1, [(r.levelname, r.getMessage()) for r in caplog.records]
    assert dropped[0].levelno == logging.WARNING
    assert dropped[0].exc_info is None
    assert "retired_job_of_an_older_release" in dropped[0].getMessage()
    assert "another release" in dropped[0].getMessage()
