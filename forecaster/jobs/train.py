"""Train job: fit and select estimators per series, log to MLflow, gate the champion."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecaster.errors import InputDataError, RegistryError
from forecaster.jobs.ingest import history_frame
from forecaster.promotion import GateDecision, gate
from forecaster.registry import CHALLENGER, CHAMPION

if TYPE_CHECKING:
    from forecaster.jobs.context import JobContext
    from forecaster.specs import SeriesSpec

log = logging.getLogger(__name__)

BASELINE = "seasonal_naive"
MIN_POINTS = 12


@dataclass(frozen=True)
class TrainResult:
    """Outcome of training one stored series."""

    series: str
    chosen: str
    promoted: bool
    reason: str
    run_id: str
    model_version: str | None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    seconds: float = 0.0


def train_series(
    ctx: JobContext,
    *,
    spec: SeriesSpec,
    name: str,
    now: datetime | None = None,
    n_jobs: int = 1,
) -> TrainResult:
    """Train ``name`` (a stored series of ``spec``), log the run and apply the gate.

    When MLflow is unreachable the training still completes and is recorded in the
    store as not promoted, with the reason; the current champion keeps serving.

    Raises:
        InputDataError: Too little history to train anything.
    """
    from forecaster.estimators.base import create_estimator, dump_estimator
    from forecaster.evaluation import plot_backtest

    started = time.perf_counter()
    history = history_frame(ctx, name=name, step=spec.step, window=spec.history, now=now)
    observed = int(history.notna().sum())
    if observed < MIN_POINTS:
        raise InputDataError(
            f"series {name!r} has {observed} observations in the last "
            f"{spec.history}; at least {MIN_POINTS} are needed to train (run ingest first)"
        )
    candidates = tuple(dict.fromkeys((*spec.estimators, BASELINE)))
    auto: Any = create_estimator(
        "auto", candidates=candidates, horizon=spec.horizon_steps, level=90.0, n_jobs=n_jobs
    )
    auto.fit(history)
    chosen: str = auto.chosen
    scores: dict[str, dict[str, float]] = {k: dict(v) for k, v in auto.scores.items()}
    flags: list[str] = list(auto.flags)
    document = dump_estimator(auto)
    chosen_mase = float(scores.get(chosen, {}).get("mase", float("nan")))
    baseline_mase = float(scores.get(BASELINE, {}).get("mase", float("nan")))

    current = ctx.store.champion(name)
    champion_mase: float | None = None
    if current is not None:
        champion_mase = scores.get(current.estimator, {}).get("mase", current.mase)
    decision = gate(
        candidate=chosen,
        candidate_mase=chosen_mase,
        baseline=BASELINE,
        baseline_mase=baseline_mase,
        champion=None if current is None else current.estimator,
        champion_mase=champion_mase,
    )

    flat_metrics: dict[str, float] = {}
    for estimator, values in scores.items():
        for metric, value in values.items():
            flat_metrics[f"{estimator}.{metric}"] = float(value)
    flat_metrics["chosen.mase"] = chosen_mase
    params = {
        "series": name,
        "family": spec.name,
        "step": str(spec.step),
        "horizon_steps": spec.horizon_steps,
        "history": str(spec.history),
        "candidates": ",".join(candidates),
        "chosen": chosen,
        "observations": observed,
        "flags": "; ".join(flags) or "none",
    }

    run_id = f"local-{int(time.time() * 1000)}"
    version: str | None = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            plot = Path(tmp) / "predicted_vs_actual.png"
            plot_backtest(
                auto.selection_backtest,
                history,
                plot,
                title=f"{name}: rolling-origin backtest of {chosen}",
                unit=spec.unit,
            )
            run_id = ctx.registry.log_training(
                series=name,
                params=params,
                metrics=flat_metrics,
                estimator_document=document,
                plot=plot,
                tags={"chosen": chosen},
            )
        registered = ctx.registry.register(name, run_id)
        version = registered.version
        ctx.registry.set_alias(name, CHAMPION if decision.promote else CHALLENGER, version)
    except RegistryError as exc:
        log.error("MLflow failed while training %s: %s", name, exc)
        decision = GateDecision(
            False, f"not promoted: MLflow failed, the run could not be registered ({exc})"
        )
    ctx.store.record_training(
        series=name,
        run_id=run_id,
        estimator=chosen,
        model_version=version,
        promoted=decision.promote,
        reason=decision.reason,
        metrics={"mase": chosen_mase, "scores": scores, "flags": flags},
        artifact=json.dumps(document),
        trained_at=now or datetime.now(UTC),
    )
    seconds = time.perf_counter() - started
    log.info("trained %s: chose %s, %s (%.1fs)", name, chosen, decision.reason, seconds)
    return TrainResult(
        series=name,
        chosen=chosen,
        promoted=decision.promote,
        reason=decision.reason,
        run_id=run_id,
        model_version=version,
        scores=scores,
        flags=flags,
        seconds=seconds,
    )
