"""Train job: fit and select estimators per series, log to MLflow, gate the champion.

Training is split in two so fits can run on other processes or a Dask cluster:
:func:`fit_history` is pure (a history in, a fitted estimator document and its
backtest out) and :func:`record_fit` does the side effects in the calling process
(plot, MLflow run and registration, promotion gate, store).
"""

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
from forecaster.estimators.prophet import DEFAULT_FIT_TIMEOUT
from forecaster.jobs.ingest import history_frame
from forecaster.promotion import GATE_METRIC, GateDecision, gate
from forecaster.registry import CHALLENGER, CHAMPION, gate_tags
from forecaster.specs import TRAIN_MIN_POINTS

if TYPE_CHECKING:
    import pandas as pd

    from forecaster.jobs.context import JobContext
    from forecaster.specs import SeriesSpec
    from forecaster.store.repository import Champion, Store

log = logging.getLogger(__name__)

BASELINE = "seasonal_naive"
MIN_POINTS = TRAIN_MIN_POINTS  # the spec refuses a history shorter than this
LEVEL = 90.0


def stored_toward_training(store: Store, name: str) -> tuple[int, bool]:
    """How many observations of ``name`` are stored, and whether that is the
    :data:`MIN_POINTS` a training needs (the scheduler's first training of a new member
    waits for it; ``status`` says how far it is)."""
    have = store.count_observations(name)
    return have, have >= MIN_POINTS


@dataclass(frozen=True)
class FitTask:
    """Everything a worker needs to fit one series (picklable)."""

    series: str
    history: pd.Series
    candidates: tuple[str, ...]
    horizon: int
    n_jobs: int = 1
    prophet_fit_timeout: float | None = DEFAULT_FIT_TIMEOUT
    #: The serving champion's estimator name, scored on the same windows (see auto).
    incumbent: str | None = None


@dataclass(frozen=True)
class FitOutcome:
    """What a worker returns: the chosen estimator, its scores and its saved form."""

    series: str
    chosen: str
    scores: dict[str, dict[str, float]]
    flags: list[str]
    document: dict[str, Any]
    selection_backtest: pd.DataFrame | None
    observations: int
    seconds: float


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
    #: MLflow's error when the run could not be logged, registered or aliased
    #: (the training is then recorded in the store only).
    registry_error: str | None = None


def fit_history(task: FitTask) -> FitOutcome:
    """Fit ``auto`` on ``task.history``: backtest the candidates, pick, calibrate, refit.

    Pure and picklable, so it can run in a worker process or on Dask.
    """
    from forecaster.estimators.base import create_estimator, dump_estimator

    started = time.perf_counter()
    auto: Any = create_estimator(
        "auto",
        candidates=task.candidates,
        horizon=task.horizon,
        level=LEVEL,
        n_jobs=task.n_jobs,
        prophet_fit_timeout=task.prophet_fit_timeout,
        incumbent=task.incumbent,
    )
    auto.fit(task.history)
    return FitOutcome(
        series=task.series,
        chosen=str(auto.chosen),
        scores={k: {m: float(x) for m, x in v.items()} for k, v in auto.scores.items()},
        flags=list(auto.flags),
        document=dump_estimator(auto),
        selection_backtest=auto.selection_backtest,
        observations=int(task.history.notna().sum()),
        seconds=time.perf_counter() - started,
    )


def prepare_fit(
    ctx: JobContext, *, spec: SeriesSpec, name: str, now: datetime | None = None, n_jobs: int = 1
) -> FitTask:
    """Load ``name``'s training window from the store into a :class:`FitTask`.

    Raises:
        InputDataError: Too little history to train anything.
    """
    history = history_frame(ctx, name=name, step=spec.step, window=spec.history, now=now)
    observed = int(history.notna().sum())
    if observed < MIN_POINTS:
        raise InputDataError(
            f"series {name!r} has {observed} observations in the last "
            f"{spec.history}; at least {MIN_POINTS} are needed to train (run ingest first)"
        )
    candidates = tuple(dict.fromkeys((*spec.estimators, BASELINE)))
    champion = ctx.store.champion(name)
    return FitTask(
        series=name,
        history=history,
        candidates=candidates,
        horizon=spec.horizon_steps,
        n_jobs=n_jobs,
        prophet_fit_timeout=ctx.settings.training.prophet_fit_timeout_seconds,
        incumbent=None if champion is None else champion.estimator,
    )


def _champion_step(champion: Champion) -> float | None:
    """The step (seconds) the champion's model forecasts in, if its stored model says."""
    try:
        step = json.loads(champion.artifact or "")["state"]["step_seconds"]
    except (ValueError, KeyError, TypeError):
        return None
    return float(step) if isinstance(step, int | float) else None


def record_fit(
    ctx: JobContext,
    *,
    spec: SeriesSpec,
    task: FitTask,
    outcome: FitOutcome,
    now: datetime | None = None,
) -> TrainResult:
    """Log the fit to MLflow, register it, apply the gate and record it in the store.

    When MLflow fails the training is still recorded, as not promoted with the
    reason; the current champion keeps serving. The series' promotion lock is held
    throughout, so the gate reads the champion another process (``forecaster train``
    beside the scheduler) may have just promoted, and MLflow's alias and the store
    end up naming the same version.

    Raises:
        StoreError: Another training held the series' promotion lock too long.
    """
    with ctx.store.promotion_lock(task.series):
        return _record_fit(ctx, spec=spec, task=task, outcome=outcome, now=now)


def _record_fit(
    ctx: JobContext,
    *,
    spec: SeriesSpec,
    task: FitTask,
    outcome: FitOutcome,
    now: datetime | None,
) -> TrainResult:
    from forecaster.evaluation import plot_backtest

    name = task.series
    chosen, scores = outcome.chosen, outcome.scores
    # The gate compares the statistic auto selected by (GATE_METRIC), so it refuses a
    # candidate only when it is truly no better than the baseline or the champion.
    chosen_mase = float(scores.get(chosen, {}).get(GATE_METRIC, float("nan")))
    baseline_mase = float(scores.get(BASELINE, {}).get(GATE_METRIC, float("nan")))
    current = ctx.store.champion(name)
    if current is not None and _champion_step(current) not in (None, spec.step.total_seconds()):
        # trained before the spec's step changed, it cannot be published; as the
        # incumbent it kept a baseline retrain from replacing it, for good
        log.info("the champion of %s forecasts on another step; any candidate replaces it", name)
        current = None
    champion_mase: float | None = None
    if current is not None:
        champion_mase = scores.get(current.estimator, {}).get(GATE_METRIC, current.mase)
    decision = gate(
        candidate=chosen,
        candidate_mase=chosen_mase,
        baseline=BASELINE,
        baseline_mase=baseline_mase,
        champion=None if current is None else current.estimator,
        champion_mase=champion_mase,
    )
    flat_metrics: dict[str, float] = {
        f"{estimator}.{metric}": float(value)
        for estimator, values in scores.items()
        for metric, value in values.items()
    }
    flat_metrics["chosen.mase"] = chosen_mase
    flat_metrics["fit_seconds_total"] = outcome.seconds
    params = {
        "series": name,
        "family": spec.name,
        "step": str(spec.step),
        "horizon_steps": spec.horizon_steps,
        "history": str(spec.history),
        "candidates": ",".join(task.candidates),
        "chosen": chosen,
        "observations": outcome.observations,
        "flags": "; ".join(outcome.flags) or "none",
    }
    run_id = f"local-{int(time.time() * 1000)}"
    version: str | None = None
    logged = False
    # visible in MLflow beside the champion/challenger alias: why this version is one
    verdict = gate_tags("promote" if decision.promote else "refuse", decision.reason)
    registry_error: str | None = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            plot: Path | None = None
            if outcome.selection_backtest is not None and len(outcome.selection_backtest):
                plot = Path(tmp) / "predicted_vs_actual.png"
                plot_backtest(
                    outcome.selection_backtest,
                    task.history,
                    plot,
                    title=f"{name}: rolling-origin backtest of {chosen}",
                    unit=spec.unit,
                )
            run_id = ctx.registry.log_training(
                series=name,
                params=params,
                metrics=flat_metrics,
                estimator_document=outcome.document,
                plot=plot,
                tags={"chosen": chosen, **verdict},
            )
            logged = True
        registered = ctx.registry.register(name, run_id, tags=verdict)
        version = registered.version
        ctx.registry.set_alias(name, CHAMPION if decision.promote else CHALLENGER, version)
    except RegistryError as exc:
        registry_error = str(exc)
        log.error("MLflow failed while training %s: %s", name, exc)
        step = (
            "the run could not be logged"
            if not logged
            else "the run could not be registered"
            if version is None
            else f"version {version} was registered but its alias could not be set"
        )
        decision = GateDecision(False, f"MLflow failed, {step} ({exc})")
    ctx.store.record_training(
        series=name,
        run_id=run_id,
        estimator=chosen,
        model_version=version,
        promoted=decision.promote,
        reason=decision.reason,
        metrics={"mase": chosen_mase, "scores": scores, "flags": outcome.flags},
        artifact=json.dumps(outcome.document),
        trained_at=now or datetime.now(UTC),
    )
    log.info("trained %s: chose %s, %s (%.1fs)", name, chosen, decision.reason, outcome.seconds)
    if current is None and not decision.promote:
        return _serve_baseline(
            ctx,
            task=task,
            refused=chosen,
            why=decision.reason,
            now=now,
            scores=scores,
            flags=outcome.flags,
            seconds=outcome.seconds,
        )
    return TrainResult(
        series=name,
        chosen=chosen,
        promoted=decision.promote,
        reason=decision.reason,
        run_id=run_id,
        model_version=version,
        scores=scores,
        flags=outcome.flags,
        seconds=outcome.seconds,
        registry_error=registry_error,
    )


def train_series(
    ctx: JobContext,
    *,
    spec: SeriesSpec,
    name: str,
    now: datetime | None = None,
    n_jobs: int = 1,
) -> TrainResult:
    """Train ``name`` (a stored series of ``spec``) in this process: fit, log, gate, record.

    Raises:
        InputDataError: Too little history to train anything.
    """
    task = prepare_fit(ctx, spec=spec, name=name, now=now, n_jobs=n_jobs)
    outcome = fit_history(task)
    return record_fit(ctx, spec=spec, task=task, outcome=outcome, now=now)


def _serve_baseline(
    ctx: JobContext,
    *,
    task: FitTask,
    refused: str,
    why: str,
    now: datetime | None,
    scores: dict[str, dict[str, float]],
    flags: list[str],
    seconds: float,
) -> TrainResult:
    """No champion yet and the candidate was refused: serve the seasonal-naive baseline.

    A series must never be left without a forecast; the baseline is the reference
    every candidate is gated against, so it is the one model that needs no gate.
    """
    from forecaster.estimators.base import create_estimator, dump_estimator

    name = task.series
    document = dump_estimator(create_estimator(BASELINE).fit(task.history))
    baseline_mase = scores.get(BASELINE, {}).get("mase")
    reason = (
        f"no champion yet and {refused} was not promoted ({why}); serving the "
        f"{BASELINE} baseline as the fallback"
    )
    run_id = f"local-{int(time.time() * 1000)}"
    version = "local"
    verdict = gate_tags("fallback", reason)  # on the run and on its version
    registry_error: str | None = None
    try:
        run_id = ctx.registry.log_training(
            series=name,
            params={"series": name, "chosen": BASELINE, "fallback_for": refused},
            metrics={} if baseline_mase is None else {f"{BASELINE}.mase": baseline_mase},
            estimator_document=document,
            tags={"chosen": BASELINE, "fallback": "true", **verdict},
        )
        version = ctx.registry.register(name, run_id, tags=verdict).version
        ctx.registry.set_alias(name, CHAMPION, version)
    except RegistryError as exc:
        registry_error = str(exc)
        log.error("MLflow failed while registering the fallback of %s: %s", name, exc)
        reason += "; MLflow failed, recorded locally only"
    ctx.store.record_training(
        series=name,
        run_id=run_id,
        estimator=BASELINE,
        model_version=version,
        promoted=True,
        reason=reason,
        metrics={"mase": baseline_mase, "scores": scores, "flags": flags},
        artifact=json.dumps(document),
        trained_at=now or datetime.now(UTC),
    )
    log.warning("%s: %s", name, reason)
    return TrainResult(
        series=name,
        chosen=BASELINE,
        promoted=True,
        reason=reason,
        run_id=run_id,
        model_version=version,
        scores=scores,
        flags=[*flags, f"fallback: {refused} refused by the gate"],
        seconds=seconds,
        registry_error=registry_error,
    )
