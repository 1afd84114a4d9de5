"""The example ScaledObjects in pipelines/keda/ work against the real scaler and API.

Each manifest is read as KEDA would: the external triggers' whole ``metadata`` map
goes to the gRPC scaler (loopback), the metrics-api trigger's URL is requested from
the API and its ``valueLocation`` read from the answer, and the prometheus trigger's
query is checked with ``promtool`` and against the metric names /metrics exports.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from tests.support.scaling_seed import seed

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = sorted((REPO / "pipelines" / "keda").glob("*.yaml"))

pytestmark = pytest.mark.integration


def _triggers(kind: str) -> list[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """(manifest, its spec, trigger) for every trigger whose type starts with ``kind``."""
    out = []
    for path in MANIFESTS:
        doc = yaml.safe_load(path.read_text())
        for trigger in doc["spec"]["triggers"]:
            if trigger["type"].startswith(kind):
                out.append((path, doc["spec"], trigger))
    return out


def test_every_manifest_is_a_scaled_object_with_a_fallback() -> None:
    assert len(MANIFESTS) == 4
    for path in MANIFESTS:
        doc = yaml.safe_load(path.read_text())
        assert doc["apiVersion"] == "keda.sh/v1alpha1" and doc["kind"] == "ScaledObject"
        spec = doc["spec"]
        assert spec["scaleTargetRef"]["name"], path.name
        fallback = spec["fallback"]
        assert fallback["failureThreshold"] >= 1 and fallback["replicas"] >= 1, path.name
        assert spec["minReplicaCount"] <= fallback["replicas"] <= spec["maxReplicaCount"]
        for trigger in spec["triggers"]:
            # KEDA's fallback applies to AverageValue metrics only
            assert trigger["metricType"] == "AverageValue", path.name
            assert all(isinstance(v, str) for v in trigger["metadata"].values()), path.name


@pytest.fixture
def seeded(make_settings: Any) -> Any:
    settings = make_settings()
    names = set()
    for _path, _spec, trigger in _triggers("external"):
        names.add(trigger["metadata"]["series"])
    for _path, _spec, trigger in _triggers("metrics-api"):
        names.add(urllib.parse.urlsplit(trigger["metadata"]["url"]).path.rsplit("/", 1)[1])
    for _path, _spec, trigger in _triggers("prometheus"):
        names.update(re.findall(r'series="([^"]+)"', trigger["metadata"]["query"]))
    for name in sorted(names):
        seed(settings, name=name)
    return settings


@pytest.fixture
def scaler(seeded: Any) -> Iterator[Any]:
    from forecaster.scaler.server import start_scaler

    handle = start_scaler(seeded, host="127.0.0.1", port=0, refresh_seconds=0.2)
    deadline = time.monotonic() + 10
    while handle.view.state.refreshed_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    yield handle
    handle.stop()


def test_external_triggers_are_answered_by_the_scaler(scaler: Any) -> None:
    from forecaster.scaler import externalscaler_pb2 as pb2
    from forecaster.scaler import externalscaler_pb2_grpc as pb2_grpc

    triggers = _triggers("external")
    assert {t["type"] for _p, _s, t in triggers} == {"external", "external-push"}
    with grpc.insecure_channel(f"127.0.0.1:{scaler.port}") as channel:
        stub = pb2_grpc.ExternalScalerStub(channel)
        for path, spec, trigger in triggers:
            metadata = trigger["metadata"]
            ref = pb2.ScaledObjectRef(
                name=path.stem, namespace="shop", scalerMetadata=dict(metadata)
            )
            (metric_spec,) = stub.GetMetricSpec(ref, timeout=5).metricSpecs
            assert metric_spec.targetSizeFloat == float(metadata["targetPerReplica"])
            request = pb2.GetMetricsRequest(
                scaledObjectRef=ref, metricName=f"s0-{metric_spec.metricName}"
            )
            (value,) = stub.GetMetrics(request, timeout=5).metricValues
            assert math.isfinite(value.metricValueFloat) and value.metricValueFloat > 0
            assert stub.IsActive(ref, timeout=5).result is True, path.name
            if trigger["type"] == "external-push":
                assert spec["minReplicaCount"] == 0 and "activationThreshold" in metadata
                stream = stub.StreamIsActive(ref, timeout=5)
                assert next(stream).result is True
                stream.cancel()


def test_metrics_api_trigger_reads_a_value_from_the_scaling_endpoint(seeded: Any) -> None:
    from fastapi.testclient import TestClient

    from forecaster.api.app import create_app

    ((_path, _spec, trigger),) = _triggers("metrics-api")
    metadata = trigger["metadata"]
    url = urllib.parse.urlsplit(metadata["url"])
    assert url.path.startswith("/v1/scaling/")
    query = urllib.parse.parse_qs(url.query)
    assert float(query["target_per_replica"][0]) == float(metadata["targetValue"])
    with TestClient(create_app(seeded, refresh_seconds=0.2)) as client:
        answer = client.get(f"{url.path}?{url.query}")
    assert answer.status_code == 200, answer.text
    value = answer.json()
    for key in metadata["valueLocation"].split("."):  # a plain GJSON path
        value = value[key]
    assert isinstance(value, float) and value > 0


def test_prometheus_trigger_query_is_valid_and_uses_exported_metrics(
    seeded: Any, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from forecaster.api.app import create_app

    ((_path, _spec, trigger),) = _triggers("prometheus")
    query = trigger["metadata"]["query"]
    assert trigger["metadata"]["ignoreNullValues"] == "false"
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (Debian package 'prometheus', make system-deps)")
    rules = tmp_path / "rules.yml"
    rules.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "keda", "rules": [{"record": "keda:q", "expr": query}]}]}
        )
    )
    done = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with TestClient(create_app(seeded, refresh_seconds=0.2)) as client:
        exposition = client.get("/metrics").text
    samples = [s for f in text_string_to_metric_families(exposition) for s in f.samples]
    for selector in re.findall(r"(forecaster_[a-z_]+)\{([^}]*)\}", query):
        name, matchers = selector
        wanted = dict(re.findall(r'(\w+)="([^"]*)"', matchers))
        assert any(
            s.name == name and all(s.labels.get(k) == v for k, v in wanted.items()) for s in samples
        ), (name, wanted, json.dumps(sorted({s.name for s in samples})))
