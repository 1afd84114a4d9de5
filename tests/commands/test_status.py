"""``forecaster status``: one line per series saying whether it is fine, and why not."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from forecaster.commands.status import collect
from forecaster.jobs.context import JobContext
from forecaster.store.repository import Store
from tests.support.forecasts import publish_bands


def _series(store: Store, name: str, family: str | None = None, *, seen: datetime) -> None:
    labels = {"pod": name.split('"')[1]} if "{" in name else {}
    sid = store.ensure_series(
        name=name, family=family or name, labels=labels, step_seconds=60, horizon_steps=5
    )
    store.upsert_observations(sid, [(seen - timedelta(minutes=1), 1.0), (seen, 2.0)])


def _champion(store: Store, name: str) -> None:
    store.record_training(
        series=name,
        run_id="r",
        estimator="seasonal_naive",
        model_version="3",
        promoted=True,
        reason="first model",
        metrics={"mase": 1.0},
        artifact="{}",
    )


def _forecast(store: Store, name: str, made: datetime) -> None:
    publish_bands(store, name, made, timedelta(minutes=1), [(1.0, 0.0, 2.0)] * 5)


def _failed(store: Store, job: str, name: str, detail: str, now: datetime) -> None:
    store.record_job_run(
        job=job, series=name, started_at=now, finished_at=now, ok=False, detail=detail
    )


def _store(
    tmp_path: Path, make_settings: Any, write_spec: Any, now: datetime
) -> tuple[JobContext, Path]:
    spec = write_spec(
        tmp_path / "spec.yaml",
        [
            {"name": "fine", "query": "up"},
            {"name": "stale", "query": "up"},
            {"name": "broken", "query": "up"},
            {"name": "untrained", "query": "up"},
            {"name": "never", "query": "up"},
            {"name": "silent", "query": "up"},
            {"name": "fam", "query": "sum by (pod) (up)", "split_by": ["pod"]},
        ],
        step="1m",
        history="1d",
        horizon="5m",
    )
    ctx = JobContext.create(make_settings(spec=spec))
    store = ctx.store
    for name in ("fine", "stale", "broken", "untrained"):
        _series(store, name, seen=now)
    _series(store, "silent", seen=now - timedelta(hours=1))  # its exporter died
    _series(store, 'fam{pod="a"}', "fam", seen=now)
    _series(store, 'fam{pod="gone"}', "fam", seen=now - timedelta(hours=2))
    for name in ("fine", "stale", "broken", "silent", 'fam{pod="a"}'):
        _champion(store, name)
        _forecast(store, name, now - timedelta(seconds=30))
    _forecast(store, "stale", now - timedelta(hours=1))
    _failed(store, "publish", "broken", "series 'broken': source unavailable\ntraceback", now)
    # a failure followed by a success of the same job is over
    _failed(store, "ingest", "fine", "timeout", now)
    store.record_job_run(job="ingest", series="fine", started_at=now, finished_at=now, ok=True)
    return ctx, spec


def test_every_series_gets_a_state_and_the_reason(
    tmp_path: Path, make_settings: Any, write_spec: Any
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    ctx, _spec = _store(tmp_path, make_settings, write_spec, now)
    rows = {row.series: row for row in collect(ctx, ctx.select(None), now)}
    ctx.store.engine.dispose()
    assert {name: row.state for name, row in rows.items()} == {
        "fine": "ok",
        "stale": "stale",
        "broken": "publish failing",
        "untrained": "no champion",
        "never": "no history",
        "silent": "no new data",
        'fam{pod="a"}': "ok",
        'fam{pod="gone"}': "retired",
    }
    assert rows["broken"].problem == "series 'broken': source unavailable"
    # republished every minute from the old data, it read "ok" for a whole horizon
    assert rows["silent"].problem == (
        "nothing observed for 1h (ingest every 1m): has the source stopped reporting?"
    )
    assert "older than the 2m staleness bound" in rows["stale"].problem
    assert rows["fine"].champion == "seasonal_naive v3"
    assert rows["fine"].forecast_made == now - timedelta(seconds=30)
    assert rows["untrained"].forecast_made is None
    # --json: ISO 8601 times a script can parse, and the ages beside them (the times
    # read "2026-...+00:00 (2m49s ago)")
    fine = rows["fine"].to_json()
    assert datetime.fromisoformat(str(fine["forecast_made"])) == now - timedelta(seconds=30)
    assert fine["forecast_age_seconds"] == 30
    assert datetime.fromisoformat(str(fine["last_observation"])) == now
    assert fine["last_observation_age_seconds"] == 0
    never = rows["never"].to_json()
    assert never["last_observation"] is None and never["forecast_age_seconds"] is None


def test_the_command_exits_1_when_a_series_needs_attention(
    tmp_path: Path, make_settings: Any, write_spec: Any
) -> None:
    ctx, spec = _store(tmp_path, make_settings, write_spec, datetime.now(UTC))
    env = {
        **os.environ,
        "FORECASTER_PIPELINES": str(spec),
        "FORECASTER_DATABASE__URL": ctx.settings.database.url,
        # the "fine" forecasts are 30 s old at seeding: still fresh however slow the start
        "FORECASTER_SCHEDULE__STALE_AFTER_SECONDS": "900",
    }
    ctx.store.engine.dispose()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "forecaster", "status", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )

    everything = run()
    assert everything.returncode == 1, everything.stderr
    assert "broken: publish failing" in everything.stdout
    assert "8 series: 3 fine, 5 need attention" in everything.stdout
    assert re.search(r"forecast made     \S+ \(\w+ ago\)", everything.stdout)
    fine = run("fine", "fam", "--json")
    assert fine.returncode == 0, fine.stdout + fine.stderr
    states = [json.loads(line)["state"] for line in fine.stdout.splitlines()]
    assert states == ["ok", "ok", "retired"]
    unknown = run("nope")
    assert unknown.returncode == 1
    assert "series 'nope' is not in the pipeline spec" in unknown.stderr


def test_a_family_whose_ingest_fails_and_a_series_never_ingested_say_so(
    tmp_path: Path, make_settings: Any, write_spec: Any
) -> None:
    """Ingest runs are recorded under the family's name: its members read "ok" (exit 0)
    while every ingest failed, and a series whose first ingest failed "run ingest first"."""
    now = datetime.now(UTC).replace(microsecond=0)
    ctx, _spec = _store(tmp_path, make_settings, write_spec, now)
    _failed(ctx.store, "ingest", "fam", "Prometheus at http://p:9090 unavailable\nmore", now)
    _failed(ctx.store, "ingest", "never", "rejected query 'sum(load': parse error", now)
    typo = ctx.spec.series[0].model_copy(update={"name": "typo", "query": "up_typo"})
    ctx.store.record_job_run(job="ingest", series="typo", started_at=now, finished_at=now, ok=True)
    rows = {row.series: row for row in collect(ctx, [*ctx.select(["fam", "never"]), typo], now)}
    ctx.store.engine.dispose()
    # ingest ran fine and matched nothing: "run ingest first" sent people in a circle
    assert (rows["typo"].state, rows["typo"].problem) == (
        "no history",
        "ingest runs, but the query matches no series",
    )
    assert rows['fam{pod="a"}'].state == "ingest failing"
    assert rows['fam{pod="a"}'].problem == "Prometheus at http://p:9090 unavailable"
    assert rows['fam{pod="gone"}'].state == "retired"
    assert (rows["never"].state, rows["never"].problem) == (
        "ingest failing",
        "rejected query 'sum(load': parse error",
    )


def test_status_neither_creates_nor_migrates_a_store(
    tmp_path: Path, make_settings: Any, write_spec: Any
) -> None:
    """A mistyped SQLite path made a new, migrated database; a health check must read."""
    from forecaster.config import DatabaseSettings
    from forecaster.errors import StoreError
    from forecaster.store.db import make_engine

    spec = write_spec(tmp_path / "spec.yaml", [{"name": "s", "query": "up"}], step="1m")
    missing = tmp_path / "typo" / "store.db"
    with pytest.raises(StoreError, match=f"no store at {missing}"):
        JobContext.create(make_settings(db=f"sqlite:///{missing}", spec=spec), migrate=False)
    assert not missing.parent.exists()
    empty = tmp_path / "empty.db"
    make_engine(DatabaseSettings(url=f"sqlite:///{empty}")).dispose()
    empty.touch()
    with pytest.raises(StoreError, match="schema revision none .*run forecaster db upgrade"):
        JobContext.create(make_settings(db=f"sqlite:///{empty}", spec=spec), migrate=False)


def test_a_scaled_down_pod_is_not_a_silent_source(
    tmp_path: Path, make_settings: Any, write_spec: Any
) -> None:
    """A pod gone 30 minutes ago (retired only after retire_after, the 1 h horizon
    here) made status fail; only a family whose every member is silent is flagged."""
    now = datetime.now(UTC).replace(microsecond=0)
    spec = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "fam", "query": "sum by (pod) (up)", "split_by": ["pod"]}],
        step="1m",
        history="1d",
        horizon="1h",
    )
    ctx = JobContext.create(make_settings(spec=spec))
    try:
        for pod, seen in (("a", now), ("down", now - timedelta(minutes=30))):
            name = f'fam{{pod="{pod}"}}'
            _series(ctx.store, name, "fam", seen=seen)
            _champion(ctx.store, name)
            _forecast(ctx.store, name, now - timedelta(seconds=30))
        states = {row.series: row.state for row in collect(ctx, ctx.select(None), now)}
        assert states == {'fam{pod="a"}': "ok", 'fam{pod="down"}': "ok"}
        later = now + timedelta(minutes=20)  # the whole source went quiet
        for name in states:
            _forecast(ctx.store, name, later - timedelta(seconds=30))
        states = {row.series: row.state for row in collect(ctx, ctx.select(None), later)}
        assert set(states.values()) == {"no new data"}
        # the scheduler itself down: nothing ingested nor published; it blamed the source
        rows = collect(ctx, ctx.select(None), later + timedelta(hours=1))
        assert {row.state for row in rows} == {"stale"}
        assert "is the scheduler running?" in rows[0].problem
    finally:
        ctx.store.engine.dispose()


def test_the_latest_training_shows_a_refused_candidate_and_its_flags(
    tmp_path: Path, make_settings: Any, write_spec: Any
) -> None:
    """A candidate the gate refused, or a cold start, was only in ``train``'s output and
    the dashboard: status showed the old champion and "ok" with nothing about it."""
    now = datetime.now(UTC).replace(microsecond=0)
    ctx, spec = _store(tmp_path, make_settings, write_spec, now)
    # after the champion's training, which the seeding recorded at its own clock time
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    ctx.store.record_training(
        series="fine",
        run_id="r2",
        estimator="lightgbm",
        model_version="4",
        promoted=False,
        reason="lightgbm MASE 1.20 is worse than the champion seasonal_naive (1.00)",
        metrics={"mase": 1.2, "flags": ["cold_start: under 2 days of history"]},
        artifact="{}",
        trained_at=later,
    )
    rows = {row.series: row for row in collect(ctx, ctx.select(None), now)}
    assert rows["fine"].state == "ok"  # the champion still serves: nothing to fix
    assert rows["fine"].last_training == {
        "at": later.isoformat(timespec="seconds"),
        "estimator": "lightgbm",
        "promoted": False,
        "reason": "lightgbm MASE 1.20 is worse than the champion seasonal_naive (1.00)",
        "flags": ["cold_start: under 2 days of history"],
    }
    assert rows["untrained"].last_training is None
    env = {
        **os.environ,
        "FORECASTER_PIPELINES": str(spec),
        "FORECASTER_DATABASE__URL": ctx.settings.database.url,
        "FORECASTER_SCHEDULE__STALE_AFTER_SECONDS": "900",
    }
    ctx.store.engine.dispose()
    shown = subprocess.run(
        [sys.executable, "-m", "forecaster", "status", "fine"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert re.search(
        r"last training     lightgbm, not promoted \S+ ago: lightgbm MASE 1.20 is worse "
        r"than the champion seasonal_naive \(1.00\) \[cold_start: under 2 days of history\]",
        shown.stdout,
    ), shown.stdout
