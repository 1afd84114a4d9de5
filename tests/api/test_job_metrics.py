"""Pipeline self-monitoring on /metrics: per-stage totals read from job_runs, parsed back."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from forecaster.api.app import create_app
from forecaster.api.job_metrics import JobRunCollector, JobRunStats
from forecaster.store.db import make_engine, upgrade
from forecaster.store.repository import Store
from forecaster.store.tables import trainings_table

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)  # within OUTCOME_LOOKBACK
_MINUTES = itertools.count(1)


def _run(store: Store, job: str, series: str, *, took: float, ok: bool, **detail: Any) -> None:
    """Record one run of ``took`` seconds, a minute after the previous one."""
    started = T0 + timedelta(minutes=next(_MINUTES))
    store.record_job_run(
        job=job,
        series=series,
        started_at=started,
        finished_at=started + timedelta(seconds=took),
        ok=ok,
        detail=json.dumps(detail) if ok else "series 'x': source unavailable",
    )


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture
def store(make_settings: Any, db_url: str) -> Any:
    engine = make_engine(make_settings(db=db_url).database)
    upgrade(engine)
    yield Store(engine)
    engine.dispose()


def test_stage_totals_durations_errors_and_points(store: Store) -> None:
    registry = CollectorRegistry()
    stats = JobRunStats(store, min_interval=0.0)
    registry.register(JobRunCollector(stats))
    stats.refresh()  # the API's first read: counting starts here
    _run(store, "ingest", "rps", took=0.3, ok=True, points=288, seconds=0.3)
    _run(store, "ingest", "latency", took=0.2, ok=True, points=100)
    _run(store, "ingest", "rps", took=0.4, ok=True, points=12)
    _run(store, "train", "rps", took=42.0, ok=True, chosen="lightgbm", seconds=42.0)
    _run(store, "train", "latency", took=3.0, ok=False)
    _run(store, "publish", "rps", took=0.05, ok=True, points=288)
    stats.refresh()  # the API's background refresher; a scrape reads nothing
    s = _samples(generate_latest(registry).decode())

    def value(name: str, **labels: str) -> float:
        return s[(name, tuple(sorted(labels.items())))]

    assert value("forecaster_job_runs_total", stage="ingest", outcome="ok") == 3
    assert value("forecaster_job_runs_total", stage="train", outcome="error") == 1
    assert value("forecaster_job_errors_total", stage="train") == 1
    assert value("forecaster_job_errors_total", stage="publish") == 0
    assert value("forecaster_job_duration_seconds_count", stage="ingest") == 3
    assert value("forecaster_job_duration_seconds_sum", stage="ingest") == pytest.approx(0.9)
    assert value("forecaster_job_duration_seconds_bucket", stage="train", le="30.0") == 1
    assert value("forecaster_job_duration_seconds_bucket", stage="train", le="60.0") == 2
    assert value("forecaster_job_duration_seconds_bucket", stage="train", le="+Inf") == 2
    assert value("forecaster_job_last_duration_seconds", stage="train") == pytest.approx(3.0)
    assert value("forecaster_points_ingested_total", series="rps") == 300
    assert value("forecaster_points_ingested_total", series="latency") == 100
    assert value("forecaster_job_failing_series", stage="train") == 1
    assert value("forecaster_job_failing_series", stage="ingest") == 0
    last_train_ok = value("forecaster_job_last_success_timestamp_seconds", stage="train")
    last_train = value("forecaster_job_last_run_timestamp_seconds", stage="train")
    assert last_train_ok < last_train  # the failure came after the success
    assert value("forecaster_job_stats_ok") == 1

    # Later runs are folded in incrementally; a recovered series stops counting as failing.
    _run(store, "train", "latency", took=5.0, ok=True, chosen="prophet")
    _run(store, "ingest", "rps", took=0.1, ok=True, points=1)
    stats.refresh()
    s = _samples(generate_latest(registry).decode())
    assert value("forecaster_job_failing_series", stage="train") == 0
    assert value("forecaster_job_runs_total", stage="train", outcome="ok") == 2
    assert value("forecaster_points_ingested_total", series="rps") == 301
    assert value("forecaster_job_duration_seconds_count", stage="ingest") == 4


def test_an_api_started_later_reads_the_state_not_the_whole_table(store: Store) -> None:
    """Counters count from the API's start; each stage's latest outcome per series and
    its last run and success come from the table (one grouped query per stage)."""
    old = T0 - timedelta(days=3)  # beyond OUTCOME_LOOKBACK: not read at all
    store.record_job_run(
        job="train", series="gone", started_at=old, finished_at=old, ok=False, detail="x"
    )
    _run(store, "train", "rps", took=40.0, ok=True)
    _run(store, "train", "latency", took=2.0, ok=True)
    _run(store, "train", "latency", took=3.0, ok=False)
    _run(store, "publish", "rps", took=0.1, ok=False)
    _run(store, "publish", "rps", took=0.2, ok=True)
    _run(store, "detect", "latency", took=0.5, ok=False)
    registry = CollectorRegistry()
    stats = JobRunStats(store, min_interval=0.0)
    registry.register(JobRunCollector(stats))
    stats.refresh()
    s = _samples(generate_latest(registry).decode())

    def value(name: str, **labels: str) -> float:
        return s[(name, tuple(sorted(labels.items())))]

    assert value("forecaster_job_runs_total", stage="train", outcome="ok") == 0
    assert value("forecaster_job_errors_total", stage="train") == 0
    assert value("forecaster_job_failing_series", stage="train") == 1  # latency; not "gone"
    assert value("forecaster_job_failing_series", stage="publish") == 0  # rps recovered
    assert value("forecaster_job_failing_series", stage="detect") == 1
    assert value("forecaster_job_last_duration_seconds", stage="train") == pytest.approx(3.0)
    last_train = value("forecaster_job_last_run_timestamp_seconds", stage="train")
    last_train_ok = value("forecaster_job_last_success_timestamp_seconds", stage="train")
    assert last_train - last_train_ok == pytest.approx(60 + 3 - 2)  # a minute apart
    assert last_train_ok > T0.timestamp()

    # runs after the start are counted
    _run(store, "train", "latency", took=1.0, ok=True)
    stats.refresh()
    s = _samples(generate_latest(registry).decode())
    assert value("forecaster_job_runs_total", stage="train", outcome="ok") == 1
    assert value("forecaster_job_failing_series", stage="train") == 0


def test_old_job_runs_and_training_models_are_pruned(store: Store) -> None:
    _run(store, "publish", "rps", took=0.1, ok=True)
    cutoff = T0 + timedelta(minutes=next(_MINUTES))
    _run(store, "publish", "rps", took=0.1, ok=True)
    _run(store, "publish", "rps", took=0.1, ok=True)
    assert store.prune_job_runs(before=cutoff, batch=1) == 1
    assert len(store.last_job_runs()) == 2
    assert store.prune_job_runs(before=cutoff) == 0

    sid = store.ensure_series(
        name="rps", family="rps", labels={}, step_seconds=60, horizon_steps=10
    )
    assert sid
    ids = []
    for day in range(6):
        ids.append(
            store.record_training(
                series="rps",
                run_id=f"r{day}",
                estimator="seasonal_naive",
                model_version=str(day),
                promoted=day == 1,  # an old champion, kept through later rejections
                reason="gate",
                metrics={"mase": 1.0},
                artifact=f'{{"day": {day}}}',
                trained_at=T0 + timedelta(days=day),
            )
        )
    assert store.drop_old_artifacts(keep=2) == 3  # days 0, 2, 3
    champion = store.champion("rps")
    assert champion is not None and champion.artifact == '{"day": 1}'
    assert len(store.trainings("rps")) == 6  # the outcomes stay
    with store.engine.connect() as conn:
        kept = conn.execute(
            select(trainings_table.c.id).where(trainings_table.c.artifact.is_not(None))
        ).scalars()
        assert sorted(kept) == [ids[1], ids[4], ids[5]]
    assert store.drop_old_artifacts(keep=2) == 0


def test_reads_are_rate_limited_and_store_failures_are_reported(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats = JobRunStats(store, min_interval=3600.0)
    registry = CollectorRegistry()
    registry.register(JobRunCollector(stats))
    s = _samples(generate_latest(registry).decode())
    assert s[("forecaster_job_stats_ok", ())] == 0  # nothing read yet
    assert ("forecaster_job_stats_age_seconds", ()) not in s
    stats.refresh()
    _run(store, "publish", "rps", took=1.0, ok=True)
    stats.refresh()
    s = _samples(generate_latest(registry).decode())
    # Within min_interval the cached totals are served: the new run is not read yet.
    assert s[("forecaster_job_runs_total", (("outcome", "ok"), ("stage", "publish")))] == 0
    assert s[("forecaster_job_stats_ok", ())] == 1
    assert 0 <= s[("forecaster_job_stats_age_seconds", ())] < 3600
    stats.refresh(force=True)
    s = _samples(generate_latest(registry).decode())
    assert s[("forecaster_job_runs_total", (("outcome", "ok"), ("stage", "publish")))] == 1

    def unreachable() -> None:
        raise OperationalError("SELECT", {}, ConnectionError("database is down"))

    monkeypatch.setattr(store.engine, "connect", unreachable)
    stats.refresh(force=True)
    s = _samples(generate_latest(registry).decode())
    assert s[("forecaster_job_stats_ok", ())] == 0
    assert s[("forecaster_job_runs_total", (("outcome", "ok"), ("stage", "publish")))] == 1


def test_totals_no_read_renewed_for_too_long_are_stale(store: Store) -> None:
    """A read hung on a stalled connection never fails: the totals it holds back read as
    current for as long as it hangs, unless their age says otherwise."""
    import time

    stats = JobRunStats(store, min_interval=0.0, max_age_seconds=30.0)
    stats.refresh()
    assert stats.problem() is None
    assert stats.read_ok_at is not None
    problem = stats.problem(now=stats.read_ok_at + 31.0)
    assert problem is not None and "last read 31s ago" in problem
    assert time.time() - stats.read_ok_at < 30.0


def test_api_metrics_export_both_forecasts_and_pipeline_health(make_settings: Any) -> None:
    settings = make_settings()
    engine = make_engine(settings.database)
    upgrade(engine)
    _run(Store(engine), "ingest", "rps", took=0.5, ok=True, points=10)  # before the API
    points = ("forecaster_points_ingested_total", (("series", "rps"),))
    with TestClient(create_app(settings, refresh_seconds=0.1)) as client:
        client.app.state.job_stats.min_interval = 0.0  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        stats_ok = ("forecaster_job_stats_ok", ())
        while (before := _samples(client.get("/metrics").text))[stats_ok] < 1:
            assert time.monotonic() < deadline, "the job runs were never read"
            time.sleep(0.05)
        _run(Store(engine), "ingest", "rps", took=0.5, ok=True, points=10)
        while points not in _samples(text := client.get("/metrics").text):  # read beside the view
            assert time.monotonic() < deadline, "the new run was never read"
            time.sleep(0.05)
    engine.dispose()
    assert points not in before
    assert before[("forecaster_job_last_success_timestamp_seconds", (("stage", "ingest"),))] > 0
    names = {f.name for f in text_string_to_metric_families(text)}
    assert names >= {
        "forecaster_job_runs",
        "forecaster_job_duration_seconds",
        "forecaster_job_last_success_timestamp_seconds",
        "forecaster_points_ingested",
        "forecaster_forecast",
        "forecaster_view_refresh_ok",
    }
    s = _samples(text)
    assert s[points] == 10
    # Stages with no run yet are exported with zeros, so dashboards have a series.
    assert s[("forecaster_job_runs_total", (("outcome", "ok"), ("stage", "train")))] == 0
