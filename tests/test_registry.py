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


def test_a_hung_tracking_server_costs_one_timeout_not_one_per_retry(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's own HTTP retries inside each of ours held one call for 9 minutes."""
    import socket
    import time

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # accepts connections (the backlog), never answers
    port = hung.getsockname()[1]
    settings = make_settings(
        mlflow={
            "tracking_uri": f"http://127.0.0.1:{port}",
            "max_retries": 3,
            "request_timeout_seconds": 1,
        }
    )
    registry = Registry(settings.mlflow)
    started = time.monotonic()
    try:
        with pytest.raises(RegistryError, match=f"127.0.0.1:{port} failed to open the experiment"):
            registry.experiment_id()
    finally:
        hung.close()
    assert time.monotonic() - started < 10


def test_a_tracking_uri_mlflow_cannot_open_is_a_registry_error(make_settings: Any) -> None:
    """Past the settings check (a plugin scheme, say): a RegistryError, which training
    handles as "MLflow failed", not a crash after the fit."""
    settings = make_settings()
    registry = Registry(settings.mlflow.model_copy(update={"tracking_uri": "nosuch://x"}))
    with pytest.raises(RegistryError, match="cannot open MLflow at nosuch://x"):
        registry.experiment_id()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("htp://127.0.0.1:5000", "did you mean 'http://127.0.0.1:5000'"),
        ("mlflow-host:5000", "did you mean 'http://mlflow-host:5000'"),
        ("", "is empty"),
    ],
)
def test_bad_tracking_uris_are_refused_with_the_setting(
    make_settings: Any, uri: str, message: str
) -> None:
    from forecaster.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        make_settings(mlflow={"tracking_uri": uri})


@pytest.mark.integration
def test_a_tracking_server_keeps_its_artifacts_and_a_local_store_uses_models(
    make_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real ``mlflow server``: with the default setting the artifacts went to the
    training pod's own disk (``models/artifacts``), not the server's root."""
    from tests.support.mlflowserver import running_mlflow_server

    monkeypatch.chdir(tmp_path)  # where a local default would put them
    folder = tmp_path / "server"
    with running_mlflow_server(folder) as url:
        settings = make_settings(mlflow={"tracking_uri": url, "artifact_location": None})
        registry = Registry(settings.mlflow)
        assert registry.remote
        doc = {"format": 1, "estimator": "seasonal_naive", "state": {"season": 288}}
        run_id = registry.log_training(
            series="rps", params={}, metrics={"x.mase": 1.0}, estimator_document=doc
        )
        assert registry.load_document(run_id) == doc
        root = folder / "server-artifacts"
        assert list(root.rglob("estimator*")), "the server's root holds the estimator"
        assert not (tmp_path / "models" / "artifacts").exists()

    local = Registry(make_settings(mlflow={"artifact_location": None}).mlflow)
    assert not local.remote
    local_run = local.log_training(
        series="rps", params={}, metrics={}, estimator_document={"format": 1}
    )
    assert local_run and list((tmp_path / "models" / "artifacts").rglob("estimator*"))


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("team/forecaster", "contains '/', which MLflow refuses"),
        ("team:forecaster", "contains ':', which MLflow refuses"),
        (".", "names starting with '..'"),
        ("   ", "is empty"),
        ("p" * 101, "at most 100"),
    ],
)
def test_a_model_prefix_mlflow_refuses_is_a_settings_error(
    make_settings: Any, prefix: str, message: str
) -> None:
    """``FORECASTER_MLFLOW__REGISTERED_MODEL_PREFIX=team/forecaster`` started; each
    series then trained in full and MLflow refused to register it ("Names cannot contain
    '/' or ':'"), for every series, every day."""
    from forecaster.errors import ConfigError

    with pytest.raises(ConfigError, match="registered_model_prefix") as info:
        make_settings(mlflow={"registered_model_prefix": prefix})
    assert message in str(info.value)


@pytest.mark.parametrize("prefix", ["team.forecaster", "p" * 100, "fc-1", ".x"])
def test_every_accepted_prefix_registers_the_longest_names(make_settings: Any, prefix: str) -> None:
    """What the settings accept, a real MLflow store registers, for the longest plain
    series name and a member name (real local store)."""
    registry = Registry(make_settings(mlflow={"registered_model_prefix": prefix}).mlflow)
    for series in ("s" * 128, 'fam{route="/' + "r" * 280 + '"}'):
        run_id = registry.log_training(
            series=series, params={}, metrics={}, estimator_document={"format": 1}
        )
        version = registry.register(series, run_id)
        registry.set_alias(series, CHAMPION, version.version)
        assert version.model.startswith(f"{prefix}.") and len(version.model) <= 256


def test_a_changed_artifact_location_for_an_existing_experiment_is_warned_about(
    make_settings: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MLflow keeps the artifact location an experiment was created with; changing the
    setting afterwards was silently ignored (artifacts kept going to the old place)."""
    import logging

    first = Registry(make_settings().mlflow)
    first.experiment_id()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="forecaster.registry"):
        Registry(make_settings().mlflow).experiment_id()  # the same: nothing to say
        assert not caplog.records
        moved = make_settings(mlflow={"artifact_location": str(tmp_path / "elsewhere")}).mlflow
        Registry(moved).experiment_id()
    [record] = caplog.records
    said = record.getMessage()
    assert f"ARTIFACT_LOCATION={tmp_path / 'elsewhere'} is not used" in said
    assert (tmp_path / "artifacts").resolve().as_uri() in said
    assert "FORECASTER_MLFLOW__EXPERIMENT" in said


@pytest.mark.parametrize("code", ["EROFS", "ENOSPC", "EACCES"])
def test_a_file_error_a_retry_cannot_fix_is_not_retried(make_settings: Any, code: str) -> None:
    """A read-only or full artifact folder was retried with backoff (seconds lost per
    series) before the same error."""
    import errno

    registry = Registry(make_settings(mlflow={"max_retries": 3}).mlflow)
    calls: list[int] = []

    def fail() -> None:
        calls.append(1)
        raise OSError(getattr(errno, code), "cannot write", "/models/artifacts/x")

    with pytest.raises(RegistryError, match="cannot write"):
        registry._call("log the run", fail)
    assert len(calls) == 1

    def flaky() -> str:  # a passing network error is still retried
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset")
        return "ok"

    calls.clear()
    assert registry._call("log the run", flaky) == "ok" and len(calls) == 3
