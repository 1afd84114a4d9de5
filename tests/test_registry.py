"""MLflow registry: runs are logged, versions registered, aliases set (real MLflow store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from forecaster.errors import RegistryError
from forecaster.registry import CHAMPION, Registry, registered_model_name


@pytest.fixture
def registry(make_settings: Any) -> Registry:
    return Registry(make_settings().mlflow)


def test_log_register_alias_roundtrip(registry: Registry, tmp_path: Path) -> None:
    plot = tmp_path / "p.png"
    plot.write_bytes(b"\x89PNG\r\n\x1a\n")
    doc = {"format": 1, "estimator": "seasonal_naive", "state": {"season": 288}}
    run_id = registry.log_training(
        series="rps",
        params={"horizon_steps": 288},
        metrics={"prophet.mase": 0.8},
        estimator_document=doc,
        plot=plot,
    )
    assert registry.run_metrics(run_id) == {"prophet.mase": 0.8}
    assert registry.alias("rps", CHAMPION) is None
    v1 = registry.register("rps", run_id)
    assert v1.version == "1" and v1.model == "forecaster.rps"
    registry.set_alias("rps", CHAMPION, v1.version)
    champ = registry.alias("rps", CHAMPION)
    assert champ is not None and champ.version == "1" and champ.run_id == run_id
    assert registry.load_document(run_id) == doc
    client = registry.client
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"estimator", "plots"} <= artifacts


def test_member_names_are_safe_and_distinct() -> None:
    a = registered_model_name("forecaster", 'rps{route="/a"}')
    b = registered_model_name("forecaster", 'rps{route="_a"}')
    assert a != b and "/" not in a and '"' not in a


def test_unreachable_tracking_server_is_a_clear_error(make_settings: Any) -> None:
    settings = make_settings(
        mlflow={
            "tracking_uri": "http://127.0.0.1:9",
            "max_retries": 0,
            "request_timeout_seconds": 2,
        }
    )
    registry = Registry(settings.mlflow)
    with pytest.raises(RegistryError, match="127.0.0.1:9"):
        registry.log_training(series="rps", params={}, metrics={}, estimator_document={})
