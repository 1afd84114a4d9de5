"""How much of each accuracy target the data allows: MASE of forecasts that peek.

For every series and task of ``benchmarks/accuracy.py`` this scores, on exactly the
accuracy benchmark's origins, steps and MASE scaling, a few *non-causal* smoothers:
the value at each forecast step is estimated from its neighbours on both sides
(the mean or median of the ``w`` points before and the ``w`` points after it, the
point itself left out). They see the future, so no forecaster can be expected to
do much better; where even the best of them is above the issue #3 target (0.9 x
the best reference's MASE), the target asks for less error than the series'
step-to-step noise leaves. It is an indication, not a proof: a smarter peeking
estimator might do better, but it would have to know more than both neighbours.

    .venv/bin/python -m benchmarks.noise_floor
        [--results benchmarks/results/accuracy_runs/*.jsonl]
        [--output benchmarks/results/noise_floor.md]

Reads auto's and the references' MASE from the accuracy result files (no model is
fitted here; about a minute). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.accuracy import (
    MASE_MARGIN,
    REPO,
    SERIES,
    TASKS,
    Result,
    best_reference,
    load_results,
    load_series,
    task_layout,
)
from forecaster.outputs import write_report

if TYPE_CHECKING:
    import pandas as pd

#: Neighbours on each side of a step for the peeking smoothers.
WIDTHS = (1, 2, 6)
RESULTS = REPO / "benchmarks" / "results"


def peeking_smoothers(history: pd.Series) -> dict[str, pd.Series]:
    """Mean and median of the ``w`` neighbours on each side (the point left out)."""
    import warnings

    import numpy as np
    import pandas as pd

    out: dict[str, pd.Series] = {}
    for w in WIDTHS:
        shifts = [history.shift(j) for j in range(-w, w + 1) if j != 0]
        stack = np.vstack([s.to_numpy(dtype=float) for s in shifts])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows stay NaN
            out[f"mean of {w}+{w}"] = pd.Series(np.nanmean(stack, axis=0), index=history.index)
            out[f"median of {w}+{w}"] = pd.Series(np.nanmedian(stack, axis=0), index=history.index)
    return out


def floor_scores(
    history: pd.Series, task: str, smoothers: dict[str, pd.Series]
) -> dict[str, float]:
    """MASE of each peeking smoother on the accuracy task's origins and steps."""
    import pandas as pd

    from forecaster.evaluation import backtest, score_backtest

    horizon, origins, stride, _ = task_layout(task, history)
    # The layout (origins, steps, actuals) of the accuracy backtest; last_value is free.
    layout = backtest(
        history, "last_value", horizon=horizon, origins=origins, stride=stride, level=90.0
    )
    scores = {}
    for name, smooth in smoothers.items():
        frame = layout.copy()
        frame["yhat"] = smooth.reindex(pd.DatetimeIndex(frame["ds"])).to_numpy()
        scores[name] = score_backtest(frame, history)["mase"]
    return scores


def render(rows: list[tuple[str, str, Result | None, Result | None, dict[str, float]]]) -> str:
    """The markdown table: auto, the target, the best peeking smoother, the verdict."""
    lines = [
        "# How much the noise leaves: peeking smoothers on the accuracy backtests",
        "",
        "Command: `python -m benchmarks.noise_floor` (reads `benchmarks/results/"
        "accuracy_runs/*.jsonl` for auto and the references; fits nothing). "
        "Floor: the lowest MASE of a forecast that knows the neighbours on both sides of "
        f"each step (mean or median of 1, 2 or 6 points before and after; the point "
        f"itself left out), on the accuracy benchmark's own origins and MASE scaling. "
        f"Target: {1 - MASE_MARGIN:.1f} x the best reference's MASE.",
        "",
        "| task | series | auto MASE | target MASE | floor MASE (smoother) | auto / floor "
        "| target vs floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, name, auto, best, scores in rows:
        floor_name = min(scores, key=lambda k: scores[k])
        floor = scores[floor_name]
        target = None if best is None else (1 - MASE_MARGIN) * best.mase
        verdict = "-"
        if target is not None:
            verdict = "**below the floor**" if target < floor else "above the floor"
        lines.append(
            f"| {task} | {name} | {'-' if auto is None else f'{auto.mase:.3f}'} | "
            f"{'-' if target is None else f'{target:.3f}'} | {floor:.3f} ({floor_name}) | "
            f"{'-' if auto is None else f'{auto.mase / floor:.2f}'} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results",
        type=Path,
        nargs="+",
        default=sorted((RESULTS / "accuracy_runs").glob("*.jsonl")),
        help="accuracy result files (JSON lines; a later line wins)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "noise_floor.md")
    args = parser.parse_args(argv)
    missing = [p for p in args.results if not p.is_file()]
    if missing or not args.results:
        print(f"no accuracy results to compare with: {missing or 'none given'}", file=sys.stderr)
        return 2
    results, _ = load_results(args.results)
    rows = []
    for name in SERIES:
        history = load_series(name)
        smoothers = peeking_smoothers(history)
        for task in TASKS:
            mine = {m: r for (s, t, m), r in results.items() if s == name and t == task}
            scores = floor_scores(history, task, smoothers)
            rows.append((task, name, mine.get("auto"), best_reference(mine), scores))
            print(f"{task:10s} {name:15s} floor {min(scores.values()):.3f}", flush=True)
    rows.sort(key=lambda row: list(TASKS).index(row[0]))  # one table section per task
    write_report(args.output, render(rows), show=False)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
