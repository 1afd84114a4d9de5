"""docker-compose.yml is complete and wired (checked without a Docker engine)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def test_services_and_images() -> None:
    services = _compose()["services"]
    for name in (
        "prometheus",
        "postgres",
        "mlflow",
        "forecaster-api",
        "forecaster-scheduler",
        "forecaster-scaler",
    ):
        assert name in services, f"missing service {name}"
        assert "image" in services[name] or "build" in services[name]
    for name, service in services.items():
        if "build" in service:
            context = REPO / (
                service["build"]
                if isinstance(service["build"], str)
                else service["build"].get("context", ".")
            )
            assert (context / "Dockerfile").is_file(), name


def test_bind_mounts_exist_and_volumes_are_declared() -> None:
    compose = _compose()
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} not declared"


def test_forecaster_services_are_wired_by_environment() -> None:
    services = _compose()["services"]
    for name in ("forecaster-api", "forecaster-scheduler", "forecaster-scaler"):
        env = services[name]["environment"]
        assert env["FORECASTER_DATABASE__URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["FORECASTER_DATABASE__URL"]
        assert env["FORECASTER_MLFLOW__TRACKING_URI"] == "http://mlflow:5000"
        assert env["FORECASTER_PROMETHEUS__URL"] == "http://prometheus:9090"
        assert env["FORECASTER_ENVIRONMENT"] == "production"
    assert "8000:8000" in services["forecaster-api"]["ports"]
    assert "50051:50051" in services["forecaster-scaler"]["ports"]
    assert services["forecaster-scheduler"]["command"] == ["scheduler"]


def test_required_secrets_use_strict_interpolation() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    for var in ("POSTGRES_PASSWORD", "FORECASTER_API_TOKEN"):
        uses = re.findall(r"\$\{" + var + r"([^}]*)\}", text)
        assert uses, var
        assert all(u.startswith(":?") for u in uses), f"{var} must use ${{{var}:?...}}"


def test_mlflow_server_uses_postgres_and_an_artifact_volume() -> None:
    mlflow = _compose()["services"]["mlflow"]
    command = " ".join(mlflow["command"])
    assert "--backend-store-uri postgresql://" in command
    assert any(v.startswith("mlflow-artifacts:") for v in mlflow["volumes"])


def test_prometheus_config_scrapes_the_api() -> None:
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    targets = [
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    ]
    assert "forecaster-api:8000" in targets
