"""Stateless API replicas: two processes on one PostgreSQL store serve the same forecast."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from forecaster.config import DatabaseSettings
from forecaster.store.db import make_engine, upgrade
from forecaster.store.repository import ForecastPoint, Store
from tests.support.promserver import free_port

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def _publish(store: Store, version: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    step = timedelta(minutes=5)
    store.publish_forecast(
        series="rps",
        generated_at=now,
        origin=now,
        step_seconds=300,
        level=90.0,
        model_name="lightgbm",
        model_version=version,
        run_id=f"run-{version}",
        points=[
            ForecastPoint(
                step=i, ds=now + i * step, yhat=float(i), yhat_lower=0.0, yhat_upper=2.0 * i
            )
            for i in range(1, 25)
        ],
    )


def _wait(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never became ready")


def test_two_api_processes_agree(pg_url: str, tmp_path: Path) -> None:
    engine = make_engine(DatabaseSettings(url=pg_url))
    upgrade(engine)
    store = Store(engine)
    store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=24)
    _publish(store, "1")
    ports = [free_port(), free_port()]
    env = {**os.environ, "FORECASTER_DATABASE__URL": pg_url}
    procs: list[subprocess.Popen[Any]] = []
    try:
        for port in ports:
            with (tmp_path / f"api{port}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "forecaster", "serve", "--port", str(port)],
                        env=env,
                        cwd=tmp_path,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        urls = [f"http://127.0.0.1:{p}/v1/series/rps/forecast?horizon=2h" for p in ports]
        for port in ports:
            _wait(f"http://127.0.0.1:{port}/readyz")
        first = [httpx.get(u, timeout=2).json() for u in urls]
        assert first[0] == first[1] and first[0]["model"]["version"] == "1"
        _publish(store, "2")
        deadline = time.monotonic() + 10
        versions: list[str] = []
        while time.monotonic() < deadline:
            versions = [httpx.get(u, timeout=2).json()["model"]["version"] for u in urls]
            if versions == ["2", "2"]:
                break
            time.sleep(0.2)
        assert versions == ["2", "2"]
        bodies = [httpx.get(u, timeout=2).json() for u in urls]
        assert bodies[0] == bodies[1]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)
        engine.dispose()
