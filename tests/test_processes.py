"""Real processes on loopback: `forecaster scheduler` and `forecaster serve` sharing one store."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.promserver import free_port

pytestmark = pytest.mark.integration


def _start(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "forecaster", *args],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _elb_store(tmp_path: Path, nab: Path, write_spec: Any, **schedule: str) -> dict[str, str]:
    """A spec of one file-replayed series (seasonal naive) and the environment that
    points the processes at it, a SQLite store and a local MLflow under ``tmp_path``."""
    spec = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "elb", "file": str(nab / "realAWSCloudwatch/elb_request_count_8c0756.csv")}],
        history="3d",
        horizon="1h",
        estimators=["seasonal_naive"],
        **({"schedule": schedule} if schedule else {}),
    )
    return {
        "FORECASTER_PIPELINES": str(spec),
        "FORECASTER_DATABASE__URL": f"sqlite:///{tmp_path}/s.db",
        "FORECASTER_MLFLOW__TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "FORECASTER_MLFLOW__ARTIFACT_LOCATION": str(tmp_path / "artifacts"),
    }


def test_scheduler_bootstraps_and_api_serves_over_http(
    tmp_path: Path, nab: Path, write_spec: Any
) -> None:
    port = free_port()
    env = {
        **_elb_store(tmp_path, nab, write_spec, publish="2s"),
        "FORECASTER_API__TOKEN": "process-test-token",
    }
    scheduler = _start(["scheduler"], env, tmp_path, tmp_path / "scheduler.log")
    server = _start(["serve", "--port", str(port)], env, tmp_path, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert scheduler.poll() is None, (tmp_path / "scheduler.log").read_text()
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                r = httpx.get(f"{base}/v1/series/elb/forecast", params={"horizon": "1h"}, timeout=2)
            except httpx.TransportError:
                time.sleep(0.5)
                continue
            if r.status_code == 200:
                body = r.json()
                break
            assert r.status_code == 404, r.text
            time.sleep(0.5)
        assert body, "no forecast served within 180 s:\n" + (tmp_path / "scheduler.log").read_text()
        assert body["model"]["name"] == "seasonal_naive"
        assert 12 <= len(body["points"]) <= 13
        first_generated = body["generated_at"]
        # Publishing every 2 s: a newer forecast replaces it.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = httpx.get(f"{base}/v1/series/elb/forecast", timeout=2)
            if r.json()["generated_at"] != first_generated:
                break
            time.sleep(0.5)
        assert r.json()["generated_at"] != first_generated
        assert httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        # An admin-triggered retrain is run by the scheduler process.
        auth = {"Authorization": "Bearer process-test-token"}
        queued = httpx.post(
            f"{base}/v1/admin/jobs", json={"job": "train", "series": "elb"}, headers=auth
        )
        assert queued.status_code == 202, queued.text
        deadline = time.monotonic() + 60
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = httpx.get(f"{base}/v1/admin/jobs/{queued.json()['id']}", headers=auth).json()
            if state["status"] in ("done", "failed"):
                break
            time.sleep(0.5)
        assert state["status"] == "done", state
        assert "forecaster_forecast{" in httpx.get(f"{base}/metrics", timeout=2).text
    finally:
        _stop(scheduler)
        _stop(server)
    jobs = {
        row[0]
        for row in sqlite3.connect(tmp_path / "s.db").execute("SELECT id FROM apscheduler_jobs")
    }
    assert {"ingest:elb", "publish:elb", "train:elb"} <= jobs
    db = sqlite3.connect(tmp_path / "s.db")
    (first_model,) = db.execute(
        "SELECT MIN(finished_at) FROM job_runs WHERE job = 'train' AND ok = 1"
    ).fetchone()
    # Publishing every 2 s can run before the first training has registered a model
    # (on a loaded machine it does): those runs fail with a message saying so. Any
    # other failure, or that one after the first model, is a bug.
    failed = [
        (job, detail)
        for job, detail, started in db.execute(
            "SELECT job, detail, started_at FROM job_runs WHERE ok = 0"
        )
        if not (job == "publish" and "no champion model yet" in detail and started < first_model)
    ]
    assert failed == [], "failed job runs (job, detail):\n" + "\n".join(map(str, failed))


def _wait_for_line(log: Path, needle: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and needle in log.read_text():
            return True
        time.sleep(0.3)
    return False


def test_a_second_scheduler_waits_for_the_first_and_takes_over(
    tmp_path: Path, nab: Path, write_spec: Any
) -> None:
    """Two schedulers on one store: the second one rewrote the first one's jobs and the
    first one's scheduling thread died while its process stayed up doing nothing. Now
    the second waits for the lock, and takes over when the first stops (a rolling
    deploy); the first stops promptly on SIGTERM, saying so."""
    env = {**_elb_store(tmp_path, nab, write_spec), "OMP_NUM_THREADS": "1"}
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = _start(["scheduler"], env, tmp_path, first_log)
    second = None
    try:
        assert _wait_for_line(first_log, "scheduled ingest:elb", 60), first_log.read_text()
        second = _start(["scheduler"], env, tmp_path, second_log)
        assert _wait_for_line(second_log, "another forecaster scheduler holds the lock", 60), (
            second_log.read_text()
        )
        assert "scheduled ingest:elb" not in second_log.read_text()
        assert first.poll() is None and second.poll() is None
        started = time.monotonic()
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
        assert time.monotonic() - started < 25
        assert "stopping on SIGTERM" in first_log.read_text()
        assert _wait_for_line(second_log, "scheduled ingest:elb", 30), second_log.read_text()
    finally:
        _stop(first)
        if second is not None:
            _stop(second)
    for log in (first_log, second_log):
        assert "Traceback" not in log.read_text(), log.read_text()


def test_servers_warn_when_they_create_an_empty_sqlite_store(tmp_path: Path) -> None:
    """A mistyped SQLite path made `serve` and `scaler` create and serve an empty
    store without a word; both now say so (and still start: a scheduler started at
    the same moment may create the store a little later)."""
    typo = tmp_path / "forcaster.db"
    env = {"FORECASTER_DATABASE__URL": f"sqlite:///{typo}", "FORECASTER_API__TOKEN": ""}
    port = free_port()
    server = _start(["serve", "--port", str(port)], env, tmp_path, tmp_path / "serve.log")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail((tmp_path / "serve.log").read_text())
    finally:
        _stop(server)
    log = (tmp_path / "serve.log").read_text()
    assert f"warning: no store at {typo} yet: creating an empty one" in log
    assert "check that setting" in log
    # the store is there now: the scaler opening it says nothing of the sort
    assert "no store at" not in _scaler_log_once_listening(env, tmp_path, "scaler.log")
    # and one given a second mistyped path warns as serve did
    other = tmp_path / "forecaster-typo.db"
    env["FORECASTER_DATABASE__URL"] = f"sqlite:///{other}"
    log = _scaler_log_once_listening(env, tmp_path, "scaler2.log")
    assert f"warning: no store at {other} yet" in log


def _scaler_log_once_listening(env: dict[str, str], tmp_path: Path, name: str) -> str:
    """Start `forecaster scaler`, wait until it listens, stop it; its log."""
    log = tmp_path / name
    scaler = _start(["scaler", "--port", str(free_port())], env, tmp_path, log)
    try:
        deadline = time.monotonic() + 60
        while "listening" not in log.read_text():
            assert scaler.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        _stop(scaler)
    return log.read_text()
