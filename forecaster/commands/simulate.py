"""The ``forecaster simulate`` command: replay a load trace through the replica plans.

Answers "what would predictive scaling have done?" before a forecast drives
replicas (forecast-only mode). The last ``--days`` of the trace are replayed as
production would run: the estimator is retrained once per day on the data up to
that day's first decision, a forecast is published at every step from the data up
to that step (production republishes every minute; the band is stretched once an
hour by how the forecasts of the last day fared, as the publish job does, see
:mod:`forecaster.recalibration`), and the replicas ready at step
``t`` are decided at ``t - lead`` by

* **predictive**: the production replica planner (stateful, asked every ``--poll``
  like KEDA's polling interval) on max(forecast quantile over ``(t - lead, t]``,
  load observed at ``t - lead``), one replica per ``capacity``, plus the optional
  error headroom (``--error-headroom``: that many times the mean absolute error of
  the planner's recent lead-time forecasts);
* **reactive** (HPA-like): ``ceil(load observed at t - lead / (0.7 * capacity))``,
  scaled down only to the highest of these over the HPA's default 5-minute
  scale-down stabilisation window (``--reactive-stabilisation``; ``0`` for none);
* **oracle**: ``ceil(true load at t / capacity)``.

A step is under-provisioned when its load exceeds ``capacity x replicas``.

Equal cost: the reactive plan's one knob is its target utilisation (70%), the
predictive plan's is its error headroom on the median forecast (production
settings ``quantile=0.5``, ``errorHeadroom=k``). ``k`` is set to the largest value
whose replica-hours do not exceed the reactive plan's, and that plan's
under-provisioned steps are compared with the reactive plan's. The observed-load
floor and scale-down stabilisation are never relaxed, so when they alone cost
more than the reactive plan no same-cost predictive plan exists; the comparison
is then made the other way round, at the cheapest predictive plan's cost (the
reactive target utilisation lowered until the reactive plan costs at least as
much), and said so.
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

from forecaster.commands import StrictOption, finite_range
from forecaster.consumers.planner import (
    MAX_ERROR_HEADROOM,
    MAX_REPLICAS,
    ReplicaPlanner,
    ScalingPolicy,
    interval_quantile_steps,
)
from forecaster.errors import ForecasterError, InputDataError
from forecaster.outputs import check_outputs, replace_atomically
from forecaster.recalibration import (
    band_scale_from_frames,
    long_band_scale_from_frames,
    rescale_frame,
)

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
    """Per-decision inputs of the predictive plan, computed once.

    ``frames[i]`` is the forecast published at decision ``i`` for the steps after
    it up to the end of the lead window, as rows (yhat, yhat_lower, yhat_upper), or
    None without a forecast; ``peaks`` are its maxima at the replay's quantile.
    """

    peaks: list[float | None]
    observed: list[float | None]
    decision_times: list[float]
    notes: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    frames: list[FloatArray | None] = field(default_factory=list)
    #: time of the end of each decision's lead window (the step its replicas serve)
    target_times: list[float] = field(default_factory=list)
    #: load actually observed at each decision time (None if missing), for error scoring
    actual: list[float | None] = field(default_factory=list)
    step_seconds: float = 0.0

    def peaks_at(self, quantile: float) -> list[float | None]:
        """Max over each decision's lead window of the forecast ``quantile``."""
        if not self.frames:
            return list(self.peaks)
        return [None if f is None else _window_peak(f, quantile) for f in self.frames]


def _window_peak(frame: FloatArray, quantile: float) -> float | None:
    steps = list(zip(frame[0].tolist(), frame[1].tolist(), frame[2].tolist(), strict=True))
    peak = max(interval_quantile_steps(quantile, steps, level=LEVEL))
    return peak if math.isfinite(peak) else None


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


def _replicas_from_loads(
    loads: list[float | None], per_replica: float, *, hold_steps: int = 0
) -> IntArray:
    """One replica per ``per_replica`` of each load; with ``hold_steps``, never below the
    highest count of the ``hold_steps`` steps before (scale-down stabilisation)."""
    import numpy as np

    out = np.ones(len(loads), dtype=np.int64)
    for i, load in enumerate(loads):
        if load is None:
            continue
        out[i] = max(1, math.ceil(max(load, 0.0) / per_replica - 1e-9))
    if hold_steps > 0:
        raw = out.copy()
        for i in range(1, len(out)):
            out[i] = raw[max(0, i - hold_steps) : i + 1].max()
    return out


def stabilisation_steps(window: timedelta, step: timedelta) -> int:
    """Earlier decisions an HPA-style scale-down window keeps in force at each decision.

    The HPA recomputes every 15 s and scales down only to the highest recommendation
    of the trailing window; a load seen at one decision is recommended until the
    next, so every decision that was still in force inside the window counts.
    """
    if window <= timedelta(0):
        return 0
    return math.ceil(window / step)


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
    """Forecasts for every decision ``b`` in ``[start - lead_steps, len - lead_steps)``.

    The estimator is fitted at each replay day's first decision on the data up to
    it; at decision ``b`` it forecasts steps ``b + 1 .. b + lead_steps`` from the data
    up to ``b`` (``predict(history=...)``, no refit), as production does when it
    republishes after each observation.
    """
    import numpy as np

    values = series.to_numpy(dtype=float)
    step = series.index[1] - series.index[0]
    per_day = max(1, int(DAY / step.to_pytimedelta()))
    first = start - lead_steps
    decisions = range(first, len(series) - lead_steps)
    observed = _carry_forward(values)
    step_seconds = step.total_seconds()
    replay = Replay(
        peaks=[],
        observed=[observed[b] for b in decisions],
        decision_times=[float(series.index[b].timestamp()) for b in decisions],
        target_times=[float(series.index[b + lead_steps].timestamp()) for b in decisions],
        actual=[float(values[b]) if math.isfinite(values[b]) else None for b in decisions],
        step_seconds=step_seconds,
    )
    estimator: Any = None
    hourly: list[pd.DataFrame] = []  # the publish job's hourly forecasts, for recalibration
    per_hour = max(1, int(timedelta(hours=1) / step.to_pytimedelta()))
    grid = step.to_pytimedelta()
    published = max(per_hour, lead_steps)  # the hourly forecasts reach the lead time
    scale = long_scale = 1.0
    ticker: Any = decisions
    if progress:
        from tqdm import tqdm

        ticker = tqdm(decisions, desc="replay", unit="step", file=sys.stderr)
    for b in ticker:
        history = series.iloc[: b + 1]
        if (b - first) % per_day == 0:
            day = str(series.index[b].date())
            if int(np.isfinite(history.to_numpy(dtype=float)).sum()) < per_day:
                estimator = None
                replay.notes.append(
                    f"{day}: cold start (less than one day of history), predictive = reactive"
                )
                replay.models.append(f"{day}: reactive")
            else:
                estimator = _fit(model, history, horizon=lead_steps, n_jobs=n_jobs, replay=replay)
                chosen = getattr(estimator, "chosen", None) or estimator.name
                replay.models.append(f"{day}: {chosen}")
        frame: FloatArray | None = None
        if estimator is not None:
            try:
                if (b - first) % per_hour == 0:  # as the publish job: recalibrate hourly
                    origin = series.index[b] + step
                    scale = band_scale_from_frames(hourly, origin, LEVEL)
                    long_scale = long_band_scale_from_frames(hourly, origin, LEVEL, grid)
                    ahead = estimator.predict(published, history=history, level=LEVEL)
                    later = values[b + 1 : b + 1 + published]  # judged only once observed
                    ahead["y"] = np.concatenate([later, np.full(published - len(later), np.nan)])
                    hourly = [*hourly[-30:], ahead]
                forecast = rescale_frame(
                    estimator.predict(lead_steps, history=history, level=LEVEL),
                    scale,
                    long_scale=long_scale,
                    step=grid,
                )
                frame = np.vstack(
                    [
                        forecast[c].to_numpy(dtype=float)
                        for c in ("yhat", "yhat_lower", "yhat_upper")
                    ]
                )
            except (ForecasterError, ValueError) as exc:
                replay.notes.append(f"{series.index[b].isoformat()}: forecast failed ({exc})")
        replay.frames.append(frame)
        replay.peaks.append(None if frame is None else _window_peak(frame, quantile))
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
    replay: Replay,
    capacity: float,
    *,
    quantile: float | None = None,
    error_headroom: float = 0.0,
    poll_seconds: float | None = None,
) -> IntArray:
    """Run the production planner over the replayed decisions.

    At each decision the planner is told the load observed then and the median
    forecast for the end of the lead window (for its error headroom), and decides;
    it is then asked again every ``poll_seconds`` until the next decision with the
    same inputs, as KEDA polls it (default: once per decision). ``quantile``
    defaults to the replay's. Decisions without a forecast (cold start) use the
    reactive rule.
    """
    import numpy as np

    planner = ReplicaPlanner(
        ScalingPolicy(target_per_replica=capacity, min_replicas=1, error_headroom=error_headroom)
    )
    peaks = replay.peaks if quantile is None else replay.peaks_at(quantile)
    polls, poll_step = 1, 0.0
    if poll_seconds and replay.step_seconds:
        polls = max(1, round(replay.step_seconds / poll_seconds))
        poll_step = replay.step_seconds / polls
    out = np.ones(len(peaks), dtype=np.int64)
    for i, (now, peak, observed) in enumerate(
        zip(replay.decision_times, peaks, replay.observed, strict=True)
    ):
        actual = replay.actual[i] if replay.actual else None
        if actual is not None:
            planner.observe(now, actual)
        frame = replay.frames[i] if replay.frames else None
        if frame is not None and replay.target_times:
            planner.expect(replay.target_times[i], float(frame[0][-1]))
        if peak is None and observed is not None:
            # no forecast: the reactive rule (observed load at 70% target utilisation)
            peak = observed / REACTIVE_UTILISATION
        if peak is None and observed is None:
            out[i] = planner.current or 1
            continue
        out[i] = planner.decide(now, forecast_peak=peak, observed=observed).replicas
        for poll in range(1, polls):
            planner.decide(now + poll * poll_step, forecast_peak=peak, observed=observed)
    return out


#: Largest error headroom tried when matching the reactive plan's cost.
MAX_HEADROOM = 50.0


def matched_headroom(
    replay: Replay, *, capacity: float, budget_steps: int, poll_seconds: float | None
) -> float | None:
    """Largest error headroom on the median whose replica count stays within ``budget_steps``.

    None when even no headroom costs more (the observed-load floor and the
    scale-down stabilisation alone exceed the budget).
    """

    def cost(k: float) -> int:
        return int(
            predictive_replicas(
                replay, capacity, quantile=0.5, error_headroom=k, poll_seconds=poll_seconds
            ).sum()
        )

    lo, hi = 0.0, MAX_HEADROOM
    if cost(lo) > budget_steps:
        return None
    if cost(hi) <= budget_steps:
        return hi
    for _ in range(30):
        mid = (lo + hi) / 2
        if cost(mid) > budget_steps:
            hi = mid
        else:
            lo = mid
    return lo


def matched_utilisation(
    load_observed: list[float | None], capacity: float, cost_steps: int, *, hold_steps: int = 0
) -> float:
    """Highest reactive target utilisation whose replica count is at least ``cost_steps``."""
    lo, hi = 0.01, 1.0

    def cost(u: float) -> int:
        return int(_replicas_from_loads(load_observed, u * capacity, hold_steps=hold_steps).sum())

    if cost(hi) >= cost_steps:
        return hi
    for _ in range(40):
        mid = (lo + hi) / 2
        if cost(mid) >= cost_steps:
            lo = mid
        else:
            hi = mid
    return lo


def _input_notes(
    lead: timedelta, lead_steps: int, step: timedelta, missing: int, steps: int
) -> list[str]:
    """What the replay made of its inputs that a reader of the table should know."""
    from forecaster.durations import format_duration

    notes = []
    if lead_steps * step != lead:
        notes.append(
            f"--lead {format_duration(lead)} is not a whole number of "
            f"{format_duration(step)} steps: replicas are decided {lead_steps} step(s) "
            f"({format_duration(lead_steps * step)}) ahead"
        )
    if missing:
        notes.append(
            f"{missing} of the {steps} replayed steps have no observation "
            f"({100 * missing / steps:.0f}%); they count for cost but cannot be under-provisioned"
        )
    return notes


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
    error_headroom: float = 0.0,
    poll_seconds: float | None = 30.0,
    reactive_stabilisation: timedelta = timedelta(minutes=5),
) -> tuple[dict[str, Any], dict[str, PlanOutcome], pd.DatetimeIndex]:
    """Replay the last ``days`` of ``series`` (regular grid) and score the plans.

    Returns:
        The JSON report, the plan outcomes by key, and the replayed timestamps.

    Raises:
        InputDataError: When the trace is too short or the parameters do not fit it.
    """
    import numpy as np
    import pandas as pd

    from forecaster.durations import format_duration

    if len(series) < 3:
        raise InputDataError("the trace has fewer than three points")
    step = (series.index[1] - series.index[0]).to_pytimedelta()
    if step > DAY:
        raise InputDataError(
            f"--freq {format_duration(step)} is longer than a day: the replay refits and "
            "decides day by day"
        )
    peak = float(np.nanmax(np.abs(series.to_numpy(dtype=float))))
    if peak / capacity >= MAX_REPLICAS:
        raise InputDataError(
            f"--capacity {capacity:g} is too small for the trace: its peak load {peak:g} "
            f"would need more than {MAX_REPLICAS} replicas"
        )
    if poll_seconds is not None and poll_seconds > step.total_seconds():
        raise InputDataError(
            f"--poll {format_duration(timedelta(seconds=poll_seconds))} is longer than the "
            f"replay's step ({format_duration(step)}): the replay decides at every step; "
            "use a --poll of at most one step (KEDA polls every 30s by default)"
        )
    per_day = int(DAY / step)
    lead_steps = max(1, math.ceil(lead / step))
    n_steps = days * per_day
    start = len(series) - n_steps
    if start - lead_steps < 1:
        have = len(series) * step / DAY
        raise InputDataError(
            f"the trace covers {have:.1f} days; --days {days} with --lead "
            f"{format_duration(lead)} needs more (or a smaller --days)"
        )
    replayed = series.to_numpy(dtype=float)[start:]
    missing = int(np.isnan(replayed).sum())
    if missing == len(replayed):
        raise InputDataError(
            f"the last {days} day(s) of the trace ({series.index[start].isoformat()} .. "
            f"{series.index[-1].isoformat()}) have no observations: nothing to replay"
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
    hold = stabilisation_steps(reactive_stabilisation, step)
    decided_loads = [observed[t - lead_steps] for t in range(start, len(series))]

    def reactive_at(utilisation: float) -> IntArray:
        return _replicas_from_loads(decided_loads, utilisation * capacity, hold_steps=hold)

    reactive = reactive_at(REACTIVE_UTILISATION)
    oracle = _replicas_from_loads(_carry_forward(load), capacity)
    predictive = predictive_replicas(
        replay, capacity, error_headroom=error_headroom, poll_seconds=poll_seconds
    )
    budget = int(reactive.sum())
    headroom = matched_headroom(
        replay, capacity=capacity, budget_steps=budget, poll_seconds=poll_seconds
    )
    matched = predictive_replicas(
        replay, capacity, quantile=0.5, error_headroom=headroom or 0.0, poll_seconds=poll_seconds
    )
    reactive_matched = None
    utilisation = REACTIVE_UTILISATION
    # the other way round too: the reactive plan given the default predictive plan's cost
    default_utilisation = matched_utilisation(
        decided_loads, capacity, int(predictive.sum()), hold_steps=hold
    )
    reactive_at_default = reactive_at(default_utilisation)
    if headroom is None:
        # even the cheapest predictive plan costs more: compare at its cost instead
        utilisation = matched_utilisation(
            decided_loads, capacity, int(matched.sum()), hold_steps=hold
        )
        reactive_matched = reactive_at(utilisation)
    headroom_note = f", error headroom {error_headroom:g}" if error_headroom else ""
    outcomes = {
        "predictive": _outcome(
            "predictive",
            predictive,
            load,
            capacity,
            step_hours,
            f"forecast q{quantile:g} over the lead time{headroom_note}, {capacity:g} per replica",
        ),
        "predictive_same_cost": _outcome(
            "predictive (reactive's cost)" if headroom is not None else "predictive (cheapest)",
            matched,
            load,
            capacity,
            step_hours,
            (
                f"median forecast + error headroom {headroom:.3g}, the largest within the "
                "reactive replica-hours"
                if headroom is not None
                else "cannot match the reactive cost: the observed-load floor and the "
                "scale-down stabilisation alone cost more; this is the cheapest plan "
                "(median forecast, no headroom)"
            ),
        ),
        "reactive": _outcome(
            "reactive (HPA-like)",
            reactive,
            load,
            capacity,
            step_hours,
            f"load observed {format_duration(lead)} earlier at "
            f"{100 * REACTIVE_UTILISATION:.0f}% target, "
            f"{reactive_stabilisation.total_seconds():g}s scale-down stabilisation",
        ),
        "oracle": _outcome(
            "oracle", oracle, load, capacity, step_hours, "true load, 100% utilisation"
        ),
    }
    if reactive_matched is not None:
        outcomes["reactive_same_cost"] = _outcome(
            "reactive (predictive's cost)",
            reactive_matched,
            load,
            capacity,
            step_hours,
            f"target utilisation lowered to {100 * utilisation:.1f}% to cost at least the "
            "cheapest predictive plan",
        )
    index = pd.DatetimeIndex(series.index[start:])
    reference = outcomes["reactive_same_cost" if reactive_matched is not None else "reactive"]
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
        "error_headroom": error_headroom,
        "poll_seconds": poll_seconds,
        "reactive_stabilisation_seconds": reactive_stabilisation.total_seconds(),
        "level": LEVEL,
        "plans": {key: o.row() for key, o in outcomes.items()},
        "same_cost": {
            "basis": "reactive plan's cost"
            if headroom is not None
            else "cheapest predictive plan's cost",
            "predictive_error_headroom": headroom,
            "reactive_utilisation": utilisation,
            "predictive_under_provisioned_steps": same_cost_under,
            "reactive_under_provisioned_steps": reference.under_steps,
        },
        "at_predictive_cost": {
            "reactive_utilisation": default_utilisation,
            "reactive_under_provisioned_steps": _outcome(
                "", reactive_at_default, load, capacity, step_hours, ""
            ).under_steps,
            "reactive_replica_hours": float(reactive_at_default.sum() * step_hours),
            "predictive_under_provisioned_steps": outcomes["predictive"].under_steps,
        },
        "same_cost_under_provisioned_ratio": (
            same_cost_under / reference.under_steps if reference.under_steps else None
        ),
        "models_by_day": replay.models,
        "notes": _input_notes(lead, lead_steps, step, missing, len(index)) + replay.notes,
        "forecast_decisions": sum(f is not None for f in replay.frames),
        "decisions": len(replay.frames),
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
    from forecaster.plotting import agg_figure, save_figure

    fig = agg_figure(14, 5)
    ax = fig.add_subplot(1, 1, 1)
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
    save_figure(fig, path)


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
    error_headroom: Annotated[
        float,
        typer.Option(
            parser=finite_range(0, MAX_ERROR_HEADROOM),
            help="Predictive plan: add this many times the recent mean absolute forecast "
            f"error (the scaler's errorHeadroom; 0 .. {MAX_ERROR_HEADROOM:g}).",
        ),
    ] = 0.0,
    poll: Annotated[
        str, typer.Option(help="How often the planner is asked (KEDA's pollingInterval).")
    ] = "30s",
    reactive_stabilisation: Annotated[
        str,
        typer.Option(
            help="Reactive plan: scale down only to the highest recommendation of this "
            "trailing window (the HPA's default 5m; 0 for none)."
        ),
    ] = "5m",
    strict: StrictOption = False,
) -> None:
    """Replay INPUT.csv and compare predictive, reactive (HPA-like) and oracle replica plans."""
    from forecaster.commands.backtest import parse_freq
    from forecaster.durations import parse_duration
    from forecaster.estimators.base import estimator_names
    from forecaster.timeseries import read_grid_csv

    began = time.perf_counter()
    try:
        check_outputs(input_csv, {"--output": output, "--plot": plot})
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
        try:
            poll_delta = parse_duration(poll, what="--poll")
            stabilisation = parse_duration(
                reactive_stabilisation, what="--reactive-stabilisation", allow_zero=True
            )
        except ValueError as exc:
            raise InputDataError(str(exc)) from exc
        if poll_delta < timedelta(seconds=1):
            # KEDA polls in whole seconds; finer polls only multiplied the run time
            raise InputDataError(f"--poll: must be at least 1s, got {poll!r}")
        step = parse_freq(freq)
        series = read_grid_csv(input_csv, step, strict=strict)
        _refuse_negative_load(series, input_csv)
        report, outcomes, index = simulate(
            series,
            capacity=capacity,
            lead=lead_delta,
            days=days,
            model=model,
            quantile=quantile,
            n_jobs=n_jobs,
            progress=sys.stderr.isatty(),
            error_headroom=error_headroom,
            poll_seconds=poll_delta.total_seconds(),
            reactive_stabilisation=stabilisation,
        )
        report["input"] = str(input_csv)
        report["seconds"] = round(time.perf_counter() - began, 1)
        if output is not None:
            text = json.dumps(report, indent=2) + "\n"
            replace_atomically(output, lambda path: path.write_text(text, encoding="utf-8"))
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
        f"lead {lead}, model {model}, quantile {quantile:g}, poll {poll}, "
        f"reactive stabilisation {reactive_stabilisation}"
    )
    typer.echo(format_table(report))
    ratio = report["same_cost_under_provisioned_ratio"]
    if ratio is not None:
        typer.echo(
            f"at the {report['same_cost']['basis']}, predictive has {100 * ratio:.0f}% of "
            "the reactive plan's under-provisioned steps"
        )
    for note in report["notes"]:
        typer.echo(f"note: {note}")


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command to ``app``."""
    app.command("simulate")(simulate_command)


def _refuse_negative_load(series: pd.Series, path: Path) -> None:
    """Refuse a trace with values below zero: the replay provisions replicas for load,
    and a negative load planned far above the oracle without a word.

    Raises:
        InputDataError: With how many values, the first one and its time.
    """
    below = series[series < 0]
    if len(below):
        raise InputDataError(
            f"{path}: {len(below)} value(s) below zero (the first {below.iloc[0]:g} at "
            f"{below.index[0].isoformat()}); simulate replays load (requests, RPS), which "
            "is never negative: is this the right column or series?"
        )
