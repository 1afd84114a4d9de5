"""The training lifecycle against a real ``mlflow server``: runs, versions, aliases and
what the user sees of them (``forecaster train``, ``forecaster status``)."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forecaster.jobs.context import JobContext
from forecaster.jobs.runner import run_ingest, run_train
from forecaster.registry import CHAMPION
from tests.support.mlflowserver import running_mlflow_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real tracking server (SQLite backend) for the module's tests."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.fixture
def spec_path(tmp_path: Path, write_spec: Any, nab: Path) -> Path:
    path: Path = write_spec(
        tmp_path / "spec.yaml",
        [
            {
                "name": "elb",
                "file": str(nab / "realAWSCloudwatch" / "elb_request_count_8c0756.csv"),
                "unit": "requests/5min",
            }
        ],
        step="5m",
        history="4d",
        horizon="2h",
        estimators=["seasonal_naive", "lightgbm"],
    )
    return path


@pytest.fixture
def served(make_settings: Any, spec_path: Path, mlflow_url: str, tmp_path: Path) -> Any:
    """A job context whose registry is the tracking server, with the series ingested.

    Each test gets its own experiment and model prefix on the shared server."""
    prefix = f"t{abs(hash(str(tmp_path))) % 10**8}"
    settings = make_settings(
        spec=spec_path,
        mlflow={
            "tracking_uri": mlflow_url,
            "artifact_location": None,
            "experiment": prefix,
            "registered_model_prefix": prefix,
        },
    )
    ctx = JobContext.create(settings)
    assert run_ingest(ctx, ctx.select(None)).ok
    yield ctx
    ctx.store.engine.dispose()


def test_training_against_a_server_prints_nothing_and_survives_an_ascii_stdout(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow wrote "🏃 View run ... at: http://..." to stdout when each run finished:
    two lines per series in ``forecaster train``'s output, and under an ASCII stdout
    (``PYTHONIOENCODING=ascii``, a C-locale cron job) the write raised inside
    ``set_terminated``, so every training was recorded as "MLflow failed" and no
    champion ever changed."""
    raw = io.BytesIO()
    ascii_out = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stdout", ascii_out)
    summary = run_train(served, served.select(None))
    ascii_out.flush()
    monkeypatch.undo()
    assert summary.ok, summary.errors
    (result,) = summary.results
    assert result.registry_error is None, result.registry_error
    assert result.promoted, result.reason
    assert raw.getvalue() == b""
    champion = served.registry.alias("elb", CHAMPION)
    assert champion is not None and champion.run_id == result.run_id


def test_a_training_mlflow_failed_is_a_failing_train_job_until_one_registers(
    served: Any,
) -> None:
    """With the tracking server down (or its URI mistyped) every training was recorded
    as a successful job run: ``forecaster status`` said ``ok`` (and exited 0) and the
    pipeline-health metrics counted no error, while no training reached the registry
    and no champion changed, for as long as nobody read the scheduler's log."""
    from forecaster.commands.status import collect
    from forecaster.registry import Registry
    from tests.support.promserver import free_port

    specs = served.select(None)
    assert run_train(served, specs).ok
    before = served.store.champion("elb")
    registry = served._registry
    down = f"http://127.0.0.1:{free_port()}"
    served._registry = Registry(
        served.settings.mlflow.model_copy(update={"tracking_uri": down, "max_retries": 0})
    )
    summary = run_train(served, specs)
    (result,) = summary.results
    assert result.registry_error is not None and not result.promoted
    assert served.store.champion("elb") == before
    (row,) = collect(served, specs)
    assert row.state == "train failing", row
    assert down in row.problem and "champion did not change" in row.problem
    (run,) = [r for r in served.store.last_job_runs() if r["job"] == "train"][:1]
    assert not run["ok"]

    served._registry = registry  # the server is back: the next training clears it
    assert run_train(served, specs).ok
    (row,) = collect(served, specs)
    assert row.state != "train failing", row


@pytest.mark.postgres
def test_a_member_with_a_long_name_is_logged_and_registered_on_a_postgres_backed_server(
    tmp_path: Path, pg_url: str, make_settings: Any
) -> None:
    """A split_by member's name holds its label values (a long route, a URL): the store
    keeps up to 300 characters, but MLflow's SQL backend keeps 250 for a run name and
    256 for a registered model. On a PostgreSQL-backed tracking server such a member
    could never be logged ("value too long for type character varying(250)"), so every
    training of it failed in MLflow; SQLite-backed stores took it silently."""
    from forecaster.registry import Registry

    member = 'http_rps{route="/search?q=' + "x" * 250 + '"}'
    assert len(member) <= 300  # what the store keeps
    with running_mlflow_server(tmp_path / "server", backend=pg_url) as url:
        settings = make_settings(mlflow={"tracking_uri": url, "artifact_location": None})
        registry = Registry(settings.mlflow)
        document = {"format": 1, "estimator": "seasonal_naive", "state": {"season": 288}}
        run_id = registry.log_training(
            series=member, params={"series": member}, metrics={}, estimator_document=document
        )
        version = registry.register(member, run_id)
        registry.set_alias(member, CHAMPION, version.version)
        champion = registry.alias(member, CHAMPION)
        assert champion is not None and champion.run_id == run_id
        assert len(version.model) <= 256
        other = registry.model_name(member.replace("x", "y", 1))
        assert other != version.model  # still one registered model per member
        run = registry.client.get_run(run_id)
        assert run.data.tags["series"] == member  # the full name stays findable


def test_a_cold_start_champion_is_replaced_by_a_retrain_on_more_history(
    make_settings: Any, spec_path: Path
) -> None:
    """A new series' first model, fitted on its first hours, is a last-value repeat
    (less than a season of history). A retrain on a day and a half had no backtest
    MASE either (a backtest needs two days), so the gate refused it ("has no finite
    backtest MASE") and the flat forecast of the first hours served, labelled
    ``seasonal_naive``, for up to two days while status said ``ok``."""
    from datetime import timedelta

    from forecaster.jobs.publish import publish_series
    from forecaster.jobs.train import train_series

    ctx = JobContext.create(make_settings(spec=spec_path))
    (spec,) = ctx.select(None)
    assert run_ingest(ctx, [spec]).ok
    first_seen = ctx.store.history("elb")[0][0]
    early = first_seen + timedelta(hours=3, minutes=20)  # 40 observations
    first = train_series(ctx, spec=spec, name="elb", now=early)
    assert first.promoted and any(f.startswith("cold_start") for f in first.flags)
    flat = publish_series(ctx, spec=spec, name="elb", now=early)
    assert len({p.yhat for p in ctx.store.publication("elb", flat.publication_id).points}) == 1

    later = first_seen + timedelta(days=1, hours=12)
    second = train_series(ctx, spec=spec, name="elb", now=later)
    assert any(f.startswith("cold_start") for f in second.flags)  # still no backtest
    assert second.promoted, second.reason
    assert "cold start" in second.reason
    champion = ctx.store.champion("elb")
    assert champion is not None and champion.run_id == second.run_id
    assert ctx.registry.alias("elb", CHAMPION).run_id == second.run_id  # type: ignore[union-attr]
    seasonal = publish_series(ctx, spec=spec, name="elb", now=later)
    points = ctx.store.publication("elb", seasonal.publication_id).points
    assert len({p.yhat for p in points}) > 1  # a repeat of the last day, not one value

    # two days on, a backtested model must beat it as any candidate beats a champion
    third = train_series(ctx, spec=spec, name="elb", now=first_seen + timedelta(days=3))
    assert not any(f.startswith("cold_start") for f in third.flags)
    ctx.store.engine.dispose()


def test_the_gate_decision_and_its_reason_are_on_the_run_and_the_version(
    served: Any,
) -> None:
    """MLflow showed a version as ``challenger`` (or an unaliased one) with nothing
    saying why the gate refused it; the reason was only in the scheduler's log and the
    store."""
    specs = served.select(None)
    first = run_train(served, specs).results[0]
    with served.store.engine.begin() as conn:  # a champion far better on these windows
        conn.exec_driver_sql("UPDATE champions SET mase = 0.0001, estimator = 'prophet'")
    refused = run_train(served, specs).results[0]
    assert not refused.promoted and "worse than the champion prophet" in refused.reason
    client = served.registry.client
    name = served.registry.model_name("elb")
    for result, decision in ((first, {"promote", "fallback"}), (refused, {"refuse"})):
        tags = client.get_run(result.run_id).data.tags
        assert tags["gate.decision"] in decision and tags["gate.reason"] == result.reason
        version = client.get_model_version(name, result.model_version)
        assert version.tags["gate.decision"] == tags["gate.decision"]
        assert version.tags["gate.reason"] == result.reason
