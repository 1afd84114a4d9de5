"""The ``forecaster simulate`` command: replay a load trace through the replica plans.

Answers "what would predictive scaling have done?" before a forecast drives
replicas (forecast-only mode). The last ``--days`` of the trace are replayed as
production would run: the estimator is retrained once per day on the data before
that day, a forecast is published at every step from the data before it, and the
replicas ready at step ``t`` are decided at ``t - lead`` by

* **predictive**: the replica planner on max(forecast quantile over
  ``[t - lead, t]``, load observed at ``t - lead``), one replica per ``capacity``;
* **reactive** (HPA-like): ``ceil(load observed at t - lead / (0.7 * capacity))``;
* **oracle**: ``ceil(true load at t / capacity)``.

A step is under-provisioned when its load exceeds ``capacity x replicas``. To
compare at equal cost the predictive plan is also re-run with its forecast scaled
so that its replica-hours match the reactive plan's (the observed-load floor is
not scaled, so it still never plans below current need).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from forecaster.commands import StrictOption
from forecaster.consumers.planner import ReplicaPlanner, ScalingPolicy, interval_quantile
from forecaster.errors import ForecasterError, InputDataError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    FloatArray = npt.NDArray[np.float64]
    IntArray = npt.NDArray[np.int64]

REACTIVE_UTILISATION = 0.7
LEVEL = 90.0
AUTO_CANDIDATES = ("seasonal_naive", "prophet", "lightgbm")
DAY = timedelta(days=1)


@dataclass
class PlanOutcome:
    """Replicas of one plan over the replayed steps and what they cost."""

    name: str
    replicas: IntArray
    under: npt.NDArray[np.bool_]
    under_share: float
    under_steps: int
    replica_hours: float
    scaling_actions: int
    note: str = ""

    def row(self) -> dict[str, Any]:
        """JSON-ready summary (no per-step arrays)."""
        return {
            "plan": self.name,
            "under_provisioned_share": self.under_share,
            "under_provisioned_steps": self.under_steps,
            "replica_hours": self.replica_hours,
            "scaling_actions": self.scaling_actions,
            "note": self.note,
        }


@dataclass
class Replay:
    """Per-decision inputs of the predictive plan, computed once."""

    peaks: list[float | None]
    observed: list[float | None]
    decision_times: list[float]
    notes: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)


def _outcome(
    name: str, replicas: IntArray, load: FloatArray, capacity: float, step_hours: float, note: str
) -> PlanOutcome:
    import numpy as np

    finite = np.isfinite(load)
    under = finite & (load > capacity * replicas + 1e-9)
    return PlanOutcome(
        name=name,
        replicas=replicas,
        under=under,
        under_share=float(under.sum() / max(1, int(finite.sum()))),
        under_steps=int(under.sum()),
        replica_hours=float(replicas.sum() * step_hours),
        scaling_actions=int((np.diff(replicas) != 0).sum()),
        note=note,
    )


def _carry_forward(values: FloatArray) -> list[float | None]:
    """Each value, or the last finite one before it (None before the first)."""
    out: list[float | None] = []
    last: float | None = None
    for v in values:
        if math.isfinite(v):
            last = float(v)
        out.append(last)
    return out


def _replicas_from_loads(loads: list[float | None], per_replica: float) -> IntArray:
    import numpy as np

    out = np.ones(len(loads), dtype=np.int64)
    for i, load in enumerate(loads):
        if load is None:
            continue
        out[i] = max(1, math.ceil(max(load, 0.0) / per_replica - 1e-9))
    return out


def replay_forecasts(
    series: pd.Series,
    *,
    start: int,
    lead_steps: int,
    model: str,
    quantile: float,
    n_jobs: int,
    progress: bool,
) -> Replay:
    """Forecast peaks for every decision ``b`` in ``[start - lead_steps, len - lead_steps)``.

    The estimator is fitted at each replay day's first decision on the data before
    it; at decision ``b`` it forecasts steps ``b .. b + lead_steps`` from the data
    before ``b`` (``predict(history=...)``, no refit).
    """
    import numpy as np

    values = series.to_numpy(dtype=float)
    step = series.index[1] - series.index[0]
    per_day = max(1, int(DAY / step.to_pytimedelta()))
    horizon = lead_steps + 1
    first = start - lead_steps
    decisions = range(first, len(series) - lead_steps)
    observed = _carry_forward(values)
    replay = Replay(
        peaks=[],
        observed=[observed[b] for b in decisions],
        decision_times=[float(series.index[b].timestamp()) for b in decisions],
    )
    estimator: Any = None
    ticker: Any = decisions
    if progress:
        from tqdm import tqdm

        ticker = tqdm(decisions, desc="replay", unit="step", file=sys.stderr)
    for b in ticker:
        if (b - first) % per_day == 0:
            history = series.iloc[:b]
            day = str(series.index[b].date())
            if int(np.isfinite(history.to_numpy(dtype=float)).sum()) < per_day:
                estimator = None
                replay.notes.append(
                    f"{day}: cold start (less than one day of history), predictive = reactive"
                )
                replay.models.append(f"{day}: reactive")
            else:
                estimator = _fit(model, history, horizon=horizon, n_jobs=n_jobs, replay=replay)
                chosen = getattr(estimator, "chosen", None) or estimator.name
                replay.models.append(f"{day}: {chosen}")
        if estimator is None:
            replay.peaks.append(None)
            continue
        try:
            frame = estimator.predict(horizon, history=series.iloc[:b], level=LEVEL)
        except (ForecasterError, ValueError) as exc:
            replay.notes.append(f"{series.index[b].isoformat()}: forecast failed ({exc})")
            replay.peaks.append(None)
            continue
        peak = max(
            interval_quantile(
                quantile, yhat=float(y), yhat_lower=float(lo), yhat_upper=float(hi), level=LEVEL
            )
            for y, lo, hi in zip(
                frame["yhat"], frame["yhat_lower"], frame["yhat_upper"], strict=True
            )
        )
        replay.peaks.append(peak if math.isfinite(peak) else None)
    return replay


def _fit(model: str, history: pd.Series, *, horizon: int, n_jobs: int, replay: Replay) -> Any:
    from forecaster.estimators.base import create_estimator

    params: dict[str, Any] = {}
    if model == "auto":
        params = {
            "candidates": AUTO_CANDIDATES,
            "horizon": horizon,
            "level": LEVEL,
            "n_jobs": n_jobs,
        }
    try:
        return create_estimator(model, **params).fit(history)
    except ForecasterError as exc:
        if model == "seasonal_naive":
            raise
        replay.notes.append(
            f"{history.index[-1].date()}: {model} failed to fit ({exc}); seasonal_naive used"
        )
        return create_estimator("seasonal_naive").fit(history)


def predictive_replicas(
    replay: Replay, capacity: float, *, forecast_scale: float = 1.0
) -> IntArray:
    """Run the stateful planner over the replayed decisions.

    ``forecast_scale`` multiplies the forecast peak only (the observed-load floor
    stays at full capacity); decisions without a forecast (cold start) use the
    reactive rule.
    """
    import numpy as np

    planner = ReplicaPlanner(ScalingPolicy(target_per_replica=capacity, min_replicas=1))
    out = np.ones(len(replay.peaks), dtype=np.int64)
    for i, (now, peak, observed) in enumerate(
        zip(replay.decision_times, replay.peaks, replay.observed, strict=True)
    ):
        if peak is not None:
            peak *= forecast_scale
        elif observed is not None:
            # no forecast: the reactive rule (observed load at 70% target utilisation)
            peak = observed / REACTIVE_UTILISATION
        if peak is None and observed is None:
            out[i] = planner.current or 1
            continue
        out[i] = planner.decide(now, forecast_peak=peak, observed=observed).replicas
    return out


def matched_scale(replay: Replay, *, capacity: float, budget_steps: int) -> float:
    """Largest forecast scale whose total replica count stays within ``budget_steps``."""
    lo, hi = 0.01, 10.0
    if int(predictive_replicas(replay, capacity, forecast_scale=lo).sum()) > budget_steps:
        return lo
    if int(predictive_replicas(replay, capacity, forecast_scale=hi).sum()) <= budget_steps:
        return hi
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        if int(predictive_replicas(replay, capacity, forecast_scale=mid).sum()) > budget_steps:
            hi = mid
        else:
            lo = mid
    return lo


def simulate(
    series: pd.Series,
    *,
    capacity: float,
    lead: timedelta,
    days: int,
    model: str,
    quantile: float,
    n_jobs: int = 1,
    progress: bool = False,
) -> tuple[dict[str, Any], dict[str, PlanOutcome], pd.DatetimeIndex]:
    """Replay the last ``days`` of ``series`` (regular grid) and score the plans.

    Returns:
        The JSON report, the plan outcomes by key, and the replayed timestamps.

    Raises:
        InputDataError: When the trace is too short or the parameters do not fit it.
    """
    import pandas as pd

    if len(series) < 3:
        raise InputDataError("the trace has fewer than three points")
    step = (series.index[1] - series.index[0]).to_pytimedelta()
    per_day = int(DAY / step)
    lead_steps = max(1, math.ceil(lead / step))
    n_steps = days * per_day
    start = len(series) - n_steps
    if start - lead_steps < 1:
        have = len(series) * step / DAY
        raise InputDataError(
            f"the trace covers {have:.1f} days; --days {days} with --lead "
            f"{lead} needs more (or a smaller --days)"
        )
    replay = replay_forecasts(
        series,
        start=start,
        lead_steps=lead_steps,
        model=model,
        quantile=quantile,
        n_jobs=n_jobs,
        progress=progress,
    )
    load = series.to_numpy(dtype=float)[start:]
    step_hours = step.total_seconds() / 3600.0
    observed = _carry_forward(series.to_numpy(dtype=float))
    reactive = _replicas_from_loads(
        [observed[t - lead_steps] for t in range(start, len(series))],
        REACTIVE_UTILISATION * capacity,
    )
    oracle = _replicas_from_loads(_carry_forward(load), capacity)
    predictive = predictive_replicas(replay, capacity)
    scale = matched_scale(replay, capacity=capacity, budget_steps=int(reactive.sum()))
    matched = predictive_replicas(replay, capacity, forecast_scale=scale)
    outcomes = {
        "predictive": _outcome(
            "predictive",
            predictive,
            load,
            capacity,
            step_hours,
            f"forecast q{quantile:g} over the lead time, {capacity:g} per replica",
        ),
        "predictive_same_cost": _outcome(
            "predictive (reactive's cost)",
            matched,
            load,
            capacity,
            step_hours,
            (
                f"forecast scaled by {scale:.3g} to match the reactive replica-hours "
                "(observed-load floor unchanged)"
                if int(matched.sum()) <= int(reactive.sum())
                else "cannot match the reactive cost: the observed-load floor and the "
                "scale-down stabilisation alone cost more; this row is the cheapest plan"
            ),
        ),
        "reactive": _outcome(
            "reactive (HPA-like)",
            reactive,
            load,
            capacity,
            step_hours,
            f"load observed {lead} earlier at {100 * REACTIVE_UTILISATION:.0f}% target",
        ),
        "oracle": _outcome(
            "oracle", oracle, load, capacity, step_hours, "true load, 100% utilisation"
        ),
    }
    index = pd.DatetimeIndex(series.index[start:])
    reactive_under = outcomes["reactive"].under_steps
    same_cost_under = outcomes["predictive_same_cost"].under_steps
    report: dict[str, Any] = {
        "replay": {
            "start": index[0].isoformat(),
            "end": index[-1].isoformat(),
            "steps": len(index),
            "step_seconds": step.total_seconds(),
            "days": days,
        },
        "capacity": capacity,
        "lead_seconds": lead.total_seconds(),
        "lead_steps": lead_steps,
        "model": model,
        "quantile": quantile,
        "level": LEVEL,
        "plans": {key: o.row() for key, o in outcomes.items()},
        "same_cost_under_provisioned_ratio": (
            same_cost_under / reactive_under if reactive_under else None
        ),
        "models_by_day": replay.models,
        "notes": replay.notes,
        "forecast_decisions": sum(p is not None for p in replay.peaks),
        "decisions": len(replay.peaks),
        "generated_with": "forecaster simulate",
    }
    return report, outcomes, index


def format_table(report: dict[str, Any]) -> str:
    """The plans as a fixed-width text table."""
    lines = [f"{'plan':32} {'under-provisioned':>22} {'replica-hours':>14} {'actions':>8}"]
    for row in report["plans"].values():
        under = f"{100 * row['under_provisioned_share']:.2f}% ({row['under_provisioned_steps']})"
        lines.append(
            f"{row['plan']:32} {under:>22} {row['replica_hours']:>14.1f} "
            f"{row['scaling_actions']:>8d}"
        )
    return "\n".join(lines)


def plot_simulation(
    path: Path,
    index: pd.DatetimeIndex,
    load: FloatArray,
    outcomes: dict[str, PlanOutcome],
    *,
    capacity: float,
    title: str,
) -> None:
    """PNG of the load, each plan's capacity and the under-provisioned moments."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(14, 5), dpi=110)
    times = index.tz_convert("UTC").tz_localize(None)
    ax.plot(times, load, color="black", linewidth=0.8, label="load")
    styles = {
        "predictive": ("tab:blue", "-"),
        "reactive": ("tab:orange", "-"),
        "oracle": ("tab:green", ":"),
    }
    for key, (color, dash) in styles.items():
        outcome = outcomes[key]
        ax.step(
            times,
            capacity * outcome.replicas,
            where="post",
            color=color,
            linestyle=dash,
            linewidth=1.0,
            label=f"{outcome.name} capacity",
        )
    for key, marker in (("predictive", "x"), ("reactive", "v")):
        outcome = outcomes[key]
        color = styles[key][0]
        ax.scatter(
            times[outcome.under],
            load[outcome.under],
            marker=marker,
            color=color,
            s=18,
            zorder=3,
            label=f"{outcome.name} under-provisioned ({outcome.under_steps})",
        )
    ax.set_title(title)
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("load")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


def simulate_command(
    input_csv: Annotated[
        Path,
        typer.Argument(metavar="INPUT.csv", help="Two columns (timestamp, value) with a header."),
    ],
    capacity: Annotated[float, typer.Option(help="Load one replica handles (the trace's unit).")],
    lead: Annotated[str, typer.Option(help="Time a new replica needs to be ready.")] = "10m",
    freq: Annotated[str, typer.Option(help="Grid step; the trace is resampled by mean.")] = (
        "5min"
    ),
    days: Annotated[int, typer.Option(min=1, help="Replay the last this many days.")] = 7,
    output: Annotated[Path | None, typer.Option(help="Write the report as JSON.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of the replay.")] = None,
    model: Annotated[
        str, typer.Option(help="Estimator: 'auto' (production) or a registered name.")
    ] = "auto",
    quantile: Annotated[
        float, typer.Option(help="Forecast quantile to provision for (0.5 .. 0.95).")
    ] = 0.9,
    n_jobs: Annotated[int, typer.Option(min=1, help="Threads for LightGBM.")] = 1,
    strict: StrictOption = False,
) -> None:
    """Replay INPUT.csv and compare predictive, reactive (HPA-like) and oracle replica plans."""
    from forecaster.commands.backtest import parse_freq
    from forecaster.durations import parse_duration
    from forecaster.estimators.base import estimator_names
    from forecaster.timeseries import read_series_csv, to_grid

    began = time.perf_counter()
    try:
        if not (math.isfinite(capacity) and capacity > 0):
            raise InputDataError(f"--capacity must be a positive number, got {capacity!r}")
        if not 0.5 <= quantile <= 1 - (100 - LEVEL) / 200:
            raise InputDataError(
                f"--quantile {quantile:g} is not available: forecasts have a {LEVEL:g}% "
                "interval, so use 0.5 .. 0.95"
            )
        if model not in estimator_names():
            raise InputDataError(
                f"unknown --model {model!r}; choose from {', '.join(estimator_names())}"
            )
        try:
            lead_delta = parse_duration(lead, what="--lead")
        except ValueError as exc:
            raise InputDataError(str(exc)) from exc
        step = parse_freq(freq)
        series = to_grid(read_series_csv(input_csv, strict=strict), step)
        report, outcomes, index = simulate(
            series,
            capacity=capacity,
            lead=lead_delta,
            days=days,
            model=model,
            quantile=quantile,
            n_jobs=n_jobs,
            progress=sys.stderr.isatty(),
        )
        report["input"] = str(input_csv)
        report["seconds"] = round(time.perf_counter() - began, 1)
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps(report, indent=2) + "\n")
        if plot is not None:
            plot_simulation(
                plot,
                index,
                series.to_numpy(dtype=float)[-len(index) :],
                outcomes,
                capacity=capacity,
                title=(
                    f"{input_csv.name}: {days}-day replay, capacity {capacity:g}/replica, "
                    f"lead {lead}, {model} q{quantile:g}"
                ),
            )
    except ForecasterError as exc:
        raise _fail(str(exc)) from exc
    except OSError as exc:
        raise _fail(f"cannot write output: {exc}") from exc
    typer.echo(
        f"{input_csv.name}: replayed {report['replay']['steps']} steps "
        f"({report['replay']['start']} .. {report['replay']['end']}), capacity {capacity:g}, "
        f"lead {lead}, model {model}, quantile {quantile:g}"
    )
    typer.echo(format_table(report))
    ratio = report["same_cost_under_provisioned_ratio"]
    if ratio is not None:
        typer.echo(
            f"at the reactive plan's replica-hours, predictive has {100 * ratio:.0f}% of its "
            "under-provisioned steps"
        )
    for note in report["notes"]:
        typer.echo(f"note: {note}")


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command to ``app``."""
    app.command("simulate")(simulate_command)
