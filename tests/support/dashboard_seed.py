"""Seed a store with a real NAB trace, forecasts made now / 1 h / 1 day earlier, trainings.

The trace (AWS ELB request count, data/nab) is shifted so its last point is the
current 5-minute step. Forecasts are seasonal-naive copies of the day before with a
+-25 % band, which is enough for the dashboard to have something honest to draw.
:func:`running_api` serves such a store with ``forecaster serve`` on loopback.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine

from forecaster.config import DatabaseSettings
from forecaster.store.db import make_engine, upgrade
from forecaster.store.repository import ForecastPoint, Store

REPO = Path(__file__).resolve().parents[2]
TRACE = REPO / "data" / "nab" / "realAWSCloudwatch" / "elb_request_count_8c0756.csv"
SERIES = "elb_requests"
STEP = timedelta(minutes=5)
DAY_STEPS = 288


def read_trace(path: Path = TRACE, *, last: int = 4 * DAY_STEPS) -> list[float]:
    """The last ``last`` values of a NAB CSV (columns ``timestamp,value``)."""
    with path.open(newline="") as handle:
        values = [float(row["value"]) for row in csv.DictReader(handle)]
    return values[-last:]


def seed_dashboard_store(url: str, *, now: datetime | None = None) -> datetime:
    """Fill the store at ``url`` (migrated here) and return the origin used (tz-aware UTC)."""
    engine = make_engine_for(url)
    try:
        upgrade(engine)
        return _fill(Store(engine), now or datetime.now(UTC))
    finally:
        engine.dispose()


def make_engine_for(url: str) -> Engine:
    """An engine for ``url`` built the way the app builds it."""
    return make_engine(DatabaseSettings(url=url))


def _fill(store: Store, now: datetime) -> datetime:
    values = read_trace()
    origin = now.replace(second=0, microsecond=0)
    origin -= timedelta(minutes=origin.minute % 5)
    stamps = [origin - (len(values) - 1 - i) * STEP for i in range(len(values))]
    sid = store.ensure_series(
        name=SERIES,
        family=SERIES,
        kind="load",
        unit="requests/5min",
        step_seconds=300,
        horizon_steps=DAY_STEPS,
    )
    store.upsert_observations(sid, zip(stamps, values, strict=True))
    store.ensure_series(name="no_forecast_yet", family="other", step_seconds=300, horizon_steps=12)
    scores = {
        "seasonal_naive": {"mase": 1.0, "smape": 31.2, "coverage": 0.81},
        "prophet": {"mase": 0.82, "smape": 26.4, "coverage": 0.88},
        "lightgbm": {"mase": 0.74, "smape": 24.9, "coverage": 0.9},
    }
    store.record_training(
        series=SERIES,
        run_id="run-old",
        estimator="prophet",
        model_version="1",
        promoted=True,
        reason="prophet MASE 0.820 beats the baseline seasonal_naive (1.000)",
        metrics={"mase": 0.82, "scores": scores, "flags": []},
        artifact=json.dumps({"kind": "test"}),
        trained_at=now - timedelta(days=2),
    )
    store.record_training(
        series=SERIES,
        run_id="run-new",
        estimator="lightgbm",
        model_version="2",
        promoted=True,
        reason="lightgbm MASE 0.740 beats the baseline (1.000) and the champion prophet (0.820)",
        metrics={"mase": 0.74, "scores": scores, "flags": []},
        artifact=json.dumps({"kind": "test"}),
        trained_at=now - timedelta(hours=30),
    )
    by_time = dict(zip(stamps, values, strict=True))
    for age in (timedelta(days=1), timedelta(hours=1), timedelta(0)):
        made = origin - age
        points = []
        for step in range(1, DAY_STEPS + 1):
            ds = made + step * STEP
            base = by_time.get(ds - timedelta(days=1), values[-1])
            # the current forecast carries a reference band, as a watched series' does
            reference = (base * 0.95, base * 0.7, base * 1.2) if age == timedelta(0) else None
            points.append(
                ForecastPoint(
                    step=step,
                    ds=ds,
                    yhat=base,
                    yhat_lower=base * 0.75,
                    yhat_upper=base * 1.25,
                    reference=reference,
                )
            )
        store.publish_forecast(
            series=SERIES,
            generated_at=made,
            origin=made,
            step_seconds=300,
            level=90.0,
            model_name="lightgbm",
            model_version="2",
            run_id="run-new",
            points=points,
        )
    return origin


@contextlib.contextmanager
def running_api(tmp_path: Path, port: int) -> Iterator[str]:
    """``forecaster serve`` on ``127.0.0.1:port`` over a freshly seeded SQLite store.

    Yields:
        The base URL, once ``/readyz`` answers 200. The server is stopped on exit.
    """
    db = f"sqlite:///{tmp_path / 'store.db'}"
    seed_dashboard_store(db)
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "FORECASTER_DATABASE__URL": db,
        "FORECASTER_MLFLOW__TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "FORECASTER_PIPELINES": str(tmp_path / "none.yaml"),
    }
    with log.open("ab") as handle:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "forecaster",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            cwd=tmp_path,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"forecaster serve exited:\n{log.read_text()}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"API not ready after 60 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
