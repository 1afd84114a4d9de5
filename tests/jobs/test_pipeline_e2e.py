"""The whole path on real services: replayed trace -> store -> train (MLflow) -> publish -> API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from forecaster.api.app import create_app
from forecaster.errors import SeriesNotFound
from forecaster.jobs.context import JobContext
from forecaster.jobs.runner import run_ingest, run_publish, run_train
from forecaster.registry import CHALLENGER, CHAMPION

pytestmark = pytest.mark.integration


@pytest.fixture
def ctx(make_settings: Any, db_url: str, write_spec: Any, nab: Path, tmp_path: Path) -> Any:
    spec = write_spec(
        tmp_path / "spec.yaml",
        [
            {
                "name": "elb",
                "file": str(nab / "realAWSCloudwatch" / "elb_request_count_8c0756.csv"),
                "unit": "requests/5min",
            }
        ],
        step="5m",
        history="7d",
        horizon="2h",
        estimators=["seasonal_naive", "lightgbm"],
    )
    context = JobContext.create(make_settings(db=db_url, spec=spec))
    yield context
    context.store.engine.dispose()


def test_ingest_train_publish_serve(ctx: Any) -> None:
    specs = ctx.select(None)
    first = run_ingest(ctx, specs)
    assert first.ok, first.errors
    written = first.results[0].written["elb"]
    assert 7 * 288 - 12 <= written <= 7 * 288 + 1
    again = run_ingest(ctx, specs)
    assert again.ok
    count = ctx.store.count_observations("elb")
    assert count <= written + 3  # re-ingesting the overlap does not duplicate

    trained = run_train(ctx, specs)
    assert trained.ok, trained.errors
    result = trained.results[0]
    assert {"seasonal_naive", "lightgbm"} <= set(result.scores)
    assert result.promoted, result.reason
    # the recorded run covers the fit done in the pool, not just the registration
    (run,) = [r for r in ctx.store.last_job_runs() if r["job"] == "train"]
    recorded = (run["finished_at"] - run["started_at"]).total_seconds()
    assert recorded >= result.seconds > 0
    champion = ctx.registry.alias("elb", CHAMPION)
    assert champion is not None and champion.run_id == result.run_id
    metrics = ctx.registry.run_metrics(result.run_id)
    assert "seasonal_naive.mase" in metrics and "lightgbm.mase" in metrics
    artifacts = {a.path for a in ctx.registry.client.list_artifacts(result.run_id, "plots")}
    assert artifacts == {"plots/predicted_vs_actual.png"}

    published = run_publish(ctx, specs)
    assert published.ok, published.errors
    forecast = ctx.store.latest_forecast("elb")
    assert len(forecast.points) == 24
    assert forecast.run_id == result.run_id and forecast.model_version == champion.version
    assert all(p.yhat_lower <= p.yhat <= p.yhat_upper for p in forecast.points)
    assert all(p.reference is None for p in forecast.points)  # not watched: no reference band

    with TestClient(create_app(ctx.settings)) as client:
        body = client.get("/v1/series/elb/forecast", params={"horizon": "2h"}).json()
        assert body["model"]["run_id"] == result.run_id
        assert len(body["points"]) >= 20
        listed = client.get("/v1/series").json()
        assert listed[0]["champion"] == result.chosen


def test_publisher_keeps_one_loaded_model_per_series_across_trainings(ctx: Any) -> None:
    """Memory stays flat over training cycles: a new champion replaces the cached one."""
    specs = ctx.select(None)
    assert run_ingest(ctx, specs).ok
    trainings = []
    for _ in range(3):
        assert run_train(ctx, specs).ok
        assert run_publish(ctx, specs).ok
        champion = ctx.store.champion("elb")
        trainings.append(champion.training_id)
        assert list(ctx.estimator_cache) == ["elb"]
        assert ctx.estimator_cache["elb"][0] == champion.training_id
    assert len(set(trainings)) > 1  # at least one retraining produced a new champion


def test_gate_refuses_a_worse_model_and_keeps_the_champion(ctx: Any) -> None:
    specs = ctx.select(None)
    assert run_ingest(ctx, specs).ok
    assert run_train(ctx, specs).ok
    first = ctx.registry.alias("elb", CHAMPION)
    assert first is not None
    # Pretend the current champion was far better on these windows than anything now.
    with ctx.store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE champions SET mase = 0.0001, estimator = 'prophet'")
    second = run_train(ctx, specs)
    assert second.ok
    outcome = second.results[0]
    assert not outcome.promoted
    assert "worse than the champion prophet" in outcome.reason
    assert ctx.registry.alias("elb", CHAMPION).version == first.version
    challenger = ctx.registry.alias("elb", CHALLENGER)
    assert challenger is not None and challenger.run_id == outcome.run_id
    assert ctx.store.champion("elb").model_version == first.version


def test_a_blended_champion_is_rescored_on_the_same_windows(ctx: Any) -> None:
    """A champion that is a blend of candidates is judged on the new fit's windows with
    its own weights, not by the MASE recorded on the windows it was trained on."""
    from forecaster.promotion import GATE_METRIC

    specs = ctx.select(None)
    assert run_ingest(ctx, specs).ok
    assert run_train(ctx, specs).ok
    serving = "blend(seasonal_naive:0.3+lightgbm:0.7)"
    with ctx.store.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE champions SET mase = 0.0001, estimator = '{serving}'")
    outcome = run_train(ctx, specs).results[0]
    assert serving in outcome.scores and outcome.chosen != serving
    rescored = outcome.scores[serving][GATE_METRIC]
    assert 0.0001 < rescored < float("inf")
    chosen = outcome.scores[outcome.chosen][GATE_METRIC]
    assert outcome.promoted == (chosen <= rescored)
    if not outcome.promoted:
        assert f"worse than the champion {serving} ({rescored:.3f})" in outcome.reason


def test_train_and_publish_need_history_first(ctx: Any) -> None:
    specs = ctx.select(None)
    summary = run_train(ctx, specs)
    assert not summary.ok and "run ingest first" in summary.errors["elb"]
    assert run_publish(ctx, specs).results == []
    with pytest.raises(SeriesNotFound, match="not in the pipeline spec"):
        ctx.select(["nope"])


def test_mlflow_down_training_completes_and_champion_keeps_serving(ctx: Any) -> None:
    specs = ctx.select(None)
    assert run_ingest(ctx, specs).ok
    assert run_train(ctx, specs).ok
    assert run_publish(ctx, specs).ok
    before = ctx.store.champion("elb")
    from forecaster.registry import Registry

    down = ctx.settings.mlflow.model_copy(
        update={"tracking_uri": "http://127.0.0.1:9", "request_timeout_seconds": 1}
    )
    ctx._registry = Registry(down)
    summary = run_train(ctx, specs)
    assert summary.ok
    outcome = summary.results[0]
    assert not outcome.promoted
    assert "MLflow failed, the run could not be logged" in outcome.reason
    assert outcome.registry_error is not None  # for the CLI's exit status
    # printed after the verdict: "(not promoted; not promoted: MLflow failed, ...)"
    assert not outcome.reason.startswith("not promoted")
    assert ctx.store.champion("elb") == before
    assert run_publish(ctx, specs).ok
    assert ctx.store.latest_forecast("elb").run_id == before.run_id


def test_an_alias_mlflow_could_not_set_is_named_as_such(
    ctx: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version was registered (MLflow cut off after model-versions/create) but the
    reason said the run could not be registered."""
    from forecaster.errors import RegistryError

    specs = ctx.select(None)
    assert run_ingest(ctx, specs).ok

    def refused(*_args: Any) -> None:  # the unit-test seam: MLflow gone mid-call
        raise RegistryError("MLflow at http://x failed to set alias 'champion': timeout")

    monkeypatch.setattr(ctx.registry, "set_alias", refused)
    summary = run_train(ctx, specs)
    (outcome,) = [r for r in summary.results if r.series == "elb"]
    # the first model: its version 1 registered, no alias; the fallback then serves
    assert "MLflow failed, version 1 was registered but its alias could not be set" in (
        outcome.reason
    )


def test_first_model_refused_by_the_gate_still_leaves_a_forecast(
    ctx: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no champion, a refused candidate must not leave the series unserved."""
    from forecaster.jobs import train as train_module
    from forecaster.promotion import GateDecision

    monkeypatch.setattr(
        train_module, "gate", lambda **_: GateDecision(False, "forced refusal for the test")
    )
    specs = ctx.select(None)
    assert run_ingest(ctx, specs).ok
    summary = run_train(ctx, specs)
    assert summary.ok, summary.errors
    result = summary.results[0]
    assert result.promoted and result.chosen == "seasonal_naive"
    assert "forced refusal for the test" in result.reason and "fallback" in result.reason
    champion = ctx.store.champion("elb")
    assert champion is not None and champion.estimator == "seasonal_naive"
    alias = ctx.registry.alias("elb", CHAMPION)
    assert alias is not None and alias.run_id == champion.run_id
    assert run_publish(ctx, specs).ok
    assert ctx.store.latest_forecast("elb").model_name == "seasonal_naive"


def test_a_watched_series_publishes_the_reference_band_beside_the_served_one(
    make_settings: Any, db_url: str, write_spec: Any, nab: Path, tmp_path: Path
) -> None:
    """The served forecast starts from the current level; the reference the regression
    detector judges against (``follow_level=False``) does not, so they differ."""
    from forecaster.estimators.base import load_estimator

    spec = write_spec(
        tmp_path / "spec.yaml",
        [
            {
                "name": "elb",
                "file": str(nab / "realAWSCloudwatch" / "elb_request_count_8c0756.csv"),
                "watch": {"direction": "up"},
            }
        ],
        step="5m",
        history="7d",
        horizon="1h",
        estimators=["seasonal_naive"],
    )
    ctx = JobContext.create(make_settings(db=db_url, spec=spec))
    specs = ctx.select(None)
    assert run_ingest(ctx, specs).ok
    assert run_train(ctx, specs).ok
    assert run_publish(ctx, specs).ok
    forecast = ctx.store.latest_forecast("elb")
    references = [p.reference for p in forecast.points]
    assert all(r is not None for r in references)
    champion = load_estimator(json.loads(ctx.store.champion("elb").artifact))
    assert champion.members_[0].recent_bias_halflife == 12.0
    served = [p.yhat for p in forecast.points]
    plain = [r[0] for r in references if r is not None]
    assert served != pytest.approx(plain)  # the level correction is in the served one only
    # the gap decays with the lead (one-hour half-life), the reference has none of it;
    # compared between steps where the served forecast was not clipped at 0 (the replay
    # ends now, so at some times of day ELB's level is near 0 and the correction negative)
    gaps = [abs(a - b) for a, b in zip(served, plain, strict=True)]
    open_steps = [i for i, value in enumerate(served) if value > 0]
    assert len(open_steps) >= 2, served
    first, last = open_steps[0], open_steps[-1]
    assert gaps[last] == pytest.approx(gaps[first] * 0.5 ** ((last - first) / 12), rel=1e-6)
    ctx.store.engine.dispose()
