"""`kill -9` of the scheduler mid-work: nothing lost, duplicated or half-written after restarts."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def _scheduler(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "forecaster", "scheduler"],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def _count(db: Path, sql: str) -> int:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_kill_minus_nine_during_ingest_train_publish(
    tmp_path: Path, nab: Path, write_spec: Any
) -> None:
    spec = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "elb", "file": str(nab / "realAWSCloudwatch/elb_request_count_8c0756.csv")}],
        history="10d",
        horizon="6h",
        estimators=["seasonal_naive"],
        schedule={"publish": "1s", "ingest": "1s"},
    )
    db = tmp_path / "s.db"
    env = {
        "FORECASTER_PIPELINES": str(spec),
        "FORECASTER_DATABASE__URL": f"sqlite:///{db}",
        "FORECASTER_MLFLOW__TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "FORECASTER_MLFLOW__ARTIFACT_LOCATION": str(tmp_path / "artifacts"),
    }
    log = tmp_path / "scheduler.log"
    # Kill at different moments: during start-up/ingest, during training, during publishing.
    for wait_for in (
        "SELECT count(*) FROM observations",
        "SELECT count(*) FROM trainings",
        "SELECT count(*) FROM publications",
    ):
        proc = _scheduler(env, tmp_path, log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _count(db, wait_for) == 0:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    proc = _scheduler(env, tmp_path, log)
    try:
        start = _count(db, "SELECT count(*) FROM publications")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _count(db, "SELECT count(*) FROM publications") >= start + 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("scheduler did not resume publishing:\n" + log.read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    with sqlite3.connect(db) as conn:
        stamps = [
            datetime.fromisoformat(r[0]).replace(tzinfo=UTC)
            for r in conn.execute("SELECT ts FROM observations ORDER BY ts")
        ]
        # Every publication is whole: exactly the horizon's 72 steps, 1..72.
        shapes = conn.execute(
            "SELECT p.id, count(f.step), min(f.step), max(f.step) FROM publications p "
            "JOIN forecast_points f ON f.publication_id = p.id GROUP BY p.id"
        ).fetchall()
        orphans = conn.execute(
            "SELECT count(*) FROM publications p WHERE NOT EXISTS "
            "(SELECT 1 FROM forecast_points f WHERE f.publication_id = p.id)"
        ).fetchone()[0]
    assert shapes and all(s[1:] == (72, 1, 72) for s in shapes)
    assert orphans == 0
    assert len(stamps) == len(set(stamps))
    # No gap: the stored history is exactly what the source has over the same span.
    from forecaster.sources.replay import FileSource
    from forecaster.specs import load_spec

    series_spec = load_spec(spec).series[0]
    expected = FileSource().fetch(series_spec, stamps[0], stamps[-1])[0].values
    assert expected is not None
    assert [t.to_pydatetime() for t in expected.index] == stamps
