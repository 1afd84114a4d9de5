"""Store outages: a locked SQLite or dropped PostgreSQL connections fail a job cleanly,
and the next run resumes with nothing lost; the API keeps serving its last view.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from forecaster.api.app import create_app
from forecaster.jobs.context import JobContext
from forecaster.jobs.runner import run_ingest, run_publish, run_train

pytestmark = pytest.mark.integration


def _spec(write_spec: Any, tmp_path: Path, nab: Path) -> Path:
    path: Path = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "elb", "file": str(nab / "realAWSCloudwatch/elb_request_count_8c0756.csv")}],
        history="3d",
        horizon="1h",
        estimators=["seasonal_naive"],
    )
    return path


def test_locked_sqlite_fails_cleanly_then_resumes(
    tmp_path: Path, nab: Path, make_settings: Any, write_spec: Any
) -> None:
    settings = make_settings(
        spec=_spec(write_spec, tmp_path, nab),
        database={"url": f"sqlite:///{tmp_path}/s.db", "sqlite_busy_timeout_seconds": 0.3},
    )
    ctx = JobContext.create(settings)
    specs = ctx.select(None)
    assert run_ingest(ctx, specs).ok
    assert run_train(ctx, specs).ok
    assert run_publish(ctx, specs).ok
    count = ctx.store.count_observations("elb")
    with TestClient(create_app(settings, refresh_seconds=3600)) as client:
        before = client.get("/v1/series/elb/forecast").json()
        blocker = sqlite3.connect(tmp_path / "s.db", timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            failed = run_publish(ctx, specs)
            assert not failed.ok and "locked" in failed.errors["elb"]
            # WAL mode: readers are not blocked by the writer's lock, so the API keeps
            # serving (and refreshing) the last published forecast.
            assert client.app.state.view.refresh() is True  # type: ignore[attr-defined]
            again = client.get("/v1/series/elb/forecast").json()
            assert again["generated_at"] == before["generated_at"]
            assert client.get("/readyz").status_code == 200
        finally:
            blocker.rollback()
            blocker.close()
        assert run_publish(ctx, specs).ok
        assert client.app.state.view.refresh() is True  # type: ignore[attr-defined]
        newer = client.get("/v1/series/elb/forecast").json()
        assert newer["generated_at"] > before["generated_at"]
    assert ctx.store.count_observations("elb") >= count
    ctx.store.engine.dispose()


@pytest.mark.postgres
def test_postgres_connections_killed_then_resume(
    tmp_path: Path, nab: Path, make_settings: Any, write_spec: Any, pg_url: str
) -> None:
    settings = make_settings(spec=_spec(write_spec, tmp_path, nab), db=pg_url)
    ctx = JobContext.create(settings)
    specs = ctx.select(None)
    assert run_ingest(ctx, specs).ok
    count = ctx.store.count_observations("elb")
    # Simulate a PostgreSQL restart: the server kills every pooled connection of ours.
    engine = ctx.store.engine
    with engine.connect() as a, engine.connect() as b:
        pids = {c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in (a, b)}
    from sqlalchemy import create_engine

    admin = create_engine(pg_url.split("?")[0])
    with admin.begin() as conn:
        for pid in pids:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()
    # pool_pre_ping notices dead connections: the next job runs normally.
    assert run_ingest(ctx, specs).ok
    assert run_train(ctx, specs).ok
    assert run_publish(ctx, specs).ok
    assert ctx.store.count_observations("elb") >= count
    ctx.store.engine.dispose()
