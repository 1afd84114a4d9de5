"""Server processes freeze their start-up heap out of the garbage collector's scans.

Each test runs the server in its own process: freezing the pytest process would keep
its cyclic garbage for good.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from forecaster.scaler import externalscaler_pb2 as pb2
from forecaster.scaler import externalscaler_pb2_grpc as pb2_grpc
from tests.support.promserver import free_port
from tests.support.scaling_seed import seed

pytestmark = pytest.mark.integration

API_PROBE = """
import gc, json
from fastapi.testclient import TestClient
from forecaster.api.app import create_app
from forecaster.config import get_settings

with TestClient(create_app(get_settings())) as client:  # as tests and notebooks build it
    plain = gc.get_freeze_count()
import forecaster.api.asgi as asgi  # as granian and uvicorn workers load it
before = gc.get_freeze_count()
with TestClient(asgi.app) as client:
    frozen = gc.get_freeze_count()
    status = client.get("/v1/series/rps/forecast").status_code
print(json.dumps([plain, before, frozen, status]))
"""


def test_the_asgi_app_freezes_after_the_first_load_and_create_app_does_not(
    make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings()
    seed(settings, name="rps")
    env = {**os.environ, "FORECASTER_DATABASE__URL": settings.database.url}

    out = subprocess.run(
        [sys.executable, "-c", API_PROBE],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )

    plain, before, frozen, status = json.loads(out.stdout.strip().splitlines()[-1])
    assert (plain, before) == (0, 0)
    assert frozen > 10_000  # the imported libraries' objects, at least
    assert status == 200  # and it serves the forecast it loaded before freezing


def test_the_scaler_process_freezes_after_loading_and_answers(
    make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings()
    seed(settings, name="rps")
    port = free_port()
    log = tmp_path / "scaler.log"
    env = {
        **os.environ,
        "FORECASTER_DATABASE__URL": settings.database.url,
        "FORECASTER_LOG_LEVEL": "INFO",
    }
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "forecaster", "scaler", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "froze" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        frozen = re.search(r"froze (\d+) start-up objects", log.read_text())
        assert frozen is not None, log.read_text()
        assert int(frozen.group(1)) > 10_000
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb2_grpc.ExternalScalerStub(channel)
            ref = pb2.ScaledObjectRef(
                name="web",
                namespace="default",
                scalerMetadata={"series": "rps", "targetPerReplica": "50"},
            )
            response = stub.GetMetrics(
                pb2.GetMetricsRequest(scaledObjectRef=ref, metricName="s0-rps"), timeout=10
            )
        (value,) = response.metricValues
        assert value.metricValueFloat > 0
    finally:
        process.terminate()
        process.wait(timeout=20)
