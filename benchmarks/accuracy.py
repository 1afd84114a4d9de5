"""Accuracy benchmark: EVALUATION.md's standard backtests on real NAB traces.

Runs the day-ahead and hour-ahead tasks (rolling origin, refit every day) for
``auto`` and the reference estimators on several NAB series, through the same
engine as ``forecaster backtest`` (:func:`forecaster.evaluation.backtest`), and
writes a markdown report (MASE, sMAPE, 90% coverage, relative width, seconds per
fit) to ``benchmarks/results/accuracy.md`` (``--set held_out``: 8 series no setting
was chosen on, to ``accuracy_held_out.md``).

    .venv/bin/python benchmarks/accuracy.py [--set benchmark|held_out]
        [--series elb,nyc_taxi] [--tasks day_ahead]
        [--models auto,prophet] [--jobs 2] [--output benchmarks/results/accuracy.md]
        [--results run.jsonl] [--from-results run.jsonl ...]

References: last value, seasonal naive (daily, weekly), Prophet as shipped, our own
LightGBM (for context), and two outside ones from benchmarks/references.py (needs the
``bench`` extra: ``pip install -e '.[dev,bench]'``): statsforecast's MSTL(AutoETS)
for day-ahead and mlforecast's LightGBM for both tasks. The report ends with a
per-series table of the targets of issue #3, computed from the results.

Tasks are defined for 5-minute data; a series on another grid (nyc_taxi, 30 min)
gets the same durations in its own steps (day-ahead = 48 steps, hour-ahead = 2).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecaster.outputs import write_report

if TYPE_CHECKING:
    import pandas as pd

REPO = Path(__file__).resolve().parents[1]
NAB = REPO / "data" / "nab"

#: name -> (path under data/nab, grid step)
SERIES: dict[str, tuple[str, str]] = {
    "tweets_aapl": ("realTweets/Twitter_volume_AAPL.csv", "5min"),
    "tweets_amzn": ("realTweets/Twitter_volume_AMZN.csv", "5min"),
    "tweets_goog": ("realTweets/Twitter_volume_GOOG.csv", "5min"),
    "tweets_ko": ("realTweets/Twitter_volume_KO.csv", "5min"),
    "tweets_ups": ("realTweets/Twitter_volume_UPS.csv", "5min"),
    "elb_requests": ("realAWSCloudwatch/elb_request_count_8c0756.csv", "5min"),
    "ec2_network_in": ("realAWSCloudwatch/ec2_network_in_257a54.csv", "5min"),
    "rds_cpu": ("realAWSCloudwatch/rds_cpu_utilization_cc0c53.csv", "5min"),
    "nyc_taxi": ("realKnownCause/nyc_taxi.csv", "30min"),
}
#: Series no setting was chosen on (``--set held_out``): every pooled choice in auto
#: (inflations, candidate lists, blend grid, selection statistic) was measured on
#: :data:`SERIES`; these show whether those choices carry over to traces of the same
#: kinds that they were not tuned on.
HELD_OUT: dict[str, tuple[str, str]] = {
    "tweets_crm": ("realTweets/Twitter_volume_CRM.csv", "5min"),
    "tweets_cvs": ("realTweets/Twitter_volume_CVS.csv", "5min"),
    "tweets_fb": ("realTweets/Twitter_volume_FB.csv", "5min"),
    "tweets_ibm": ("realTweets/Twitter_volume_IBM.csv", "5min"),
    "tweets_pfe": ("realTweets/Twitter_volume_PFE.csv", "5min"),
    "asg_cpu": ("realKnownCause/cpu_utilization_asg_misconfiguration.csv", "5min"),
    "ec2_network_in_5abac7": ("realAWSCloudwatch/ec2_network_in_5abac7.csv", "5min"),
    "rds_cpu_e47b3b": ("realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv", "5min"),
}
#: Every series ``--series`` may name.
ALL_SERIES = SERIES | HELD_OUT
#: ``--set`` -> its series and the default report file.
SETS: dict[str, tuple[dict[str, tuple[str, str]], str]] = {
    "benchmark": (SERIES, "accuracy.md"),
    "held_out": (HELD_OUT, "accuracy_held_out.md"),
}

#: name -> (horizon, origins, stride, refit-every) as durations / counts on 5-minute data.
TASKS: dict[str, tuple[timedelta, int, timedelta, timedelta]] = {
    "day_ahead": (timedelta(hours=24), 4, timedelta(hours=24), timedelta(hours=24)),
    "hour_ahead": (timedelta(hours=1), 168, timedelta(hours=1), timedelta(hours=24)),
}

MODELS = (
    "auto",
    "lightgbm",
    "prophet",
    "seasonal_naive",
    "seasonal_naive_weekly",
    "last_value",
    "mstl_autoets",
    "mlforecast_lgbm",
)
#: What ``auto`` is measured against for the targets (issue #3): the references a user
#: would otherwise pick. ``lightgbm`` is one of auto's own candidates, shown for context.
TARGET_REFERENCES = tuple(m for m in MODELS if m not in ("auto", "lightgbm"))
#: Targets: auto MASE at least this much below the best reference, coverage band of the
#: 90% interval, and wall seconds for one series' whole day-ahead backtest.
MASE_MARGIN = 0.10
COVERAGE_BAND = (0.85, 0.95)
DAY_AHEAD_SECONDS = 60.0
#: Outside references (benchmarks/references.py, ``bench`` extra) -> the tasks they run.
#: MSTL forecasts only from its fit origin, so it runs where every origin is a refit.
REFERENCE_TASKS: dict[str, tuple[str, ...]] = {
    "mstl_autoets": ("day_ahead",),
    "mlforecast_lgbm": ("day_ahead", "hour_ahead"),
}


@dataclass
class Result:
    """Scores of one backtest."""

    series: str
    task: str
    model: str
    mase: float
    smape: float
    coverage: float
    width: float
    fit_seconds: float
    chosen: str
    seconds: float = float("nan")


def _steps(duration: timedelta, step: timedelta) -> int:
    return max(1, round(duration / step))


def _references() -> Any:
    """benchmarks/references.py, loaded by path: works for ``python benchmarks/accuracy.py``
    and for ``python -m benchmarks.accuracy`` alike, without touching ``sys.path``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "benchmark_references", Path(__file__).with_name("references.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_series(name: str) -> pd.Series:
    """The bundled NAB series ``name`` (:data:`SERIES` or :data:`HELD_OUT`) on its grid."""
    import pandas as pd

    from forecaster.timeseries import read_series_csv, to_grid

    relpath, freq = ALL_SERIES[name]
    return to_grid(read_series_csv(NAB / relpath), pd.Timedelta(freq).to_pytimedelta())


def task_layout(task: str, history: pd.Series) -> tuple[int, int, int, int]:
    """(horizon, origins, stride, refit-every) of ``task`` in ``history``'s own steps."""
    from forecaster.estimators import history_step

    step = history_step(history)
    horizon_d, origins, stride_d, refit_d = TASKS[task]
    return _steps(horizon_d, step), origins, _steps(stride_d, step), _steps(refit_d, step)


def run_one(series_name: str, task: str, model: str) -> Result:
    """Backtest ``model`` on ``series_name`` for ``task``."""
    import pandas as pd

    from forecaster.evaluation import backtest, score_backtest

    history = load_series(series_name)
    horizon, origins, stride, refit = task_layout(task, history)
    built: list[Any] = []
    if model in REFERENCE_TASKS:
        factory = _references().reference_factory(model, horizon=horizon, level=90.0)

        def engine() -> Any:
            built.append(factory())
            return built[-1]

    began = time.perf_counter()
    frame = backtest(
        history,
        engine if model in REFERENCE_TASKS else model,
        horizon=horizon,
        origins=origins,
        stride=stride,
        refit_every=refit,
        level=90.0,
        model_name=model,
    )
    seconds = time.perf_counter() - began
    fits = len(range(0, (origins - 1) * stride + 1, max(refit, stride))) if refit else origins
    scores = score_backtest(frame, history)
    if built:  # a reference: name the set-up each refit used (e.g. MSTL's seasons)
        described = pd.Series([getattr(est, "description", model) for est in built])
        chosen = ", ".join(
            f"{name} x{count} fits" for name, count in described.value_counts().items()
        )
    else:
        from forecaster.commands.backtest import models_used

        chosen = models_used(frame, shown=None)
    return Result(
        series=series_name,
        task=task,
        model=model,
        mase=scores["mase"],
        smape=scores["smape"],
        coverage=scores["coverage"],
        width=scores["width"],
        fit_seconds=seconds / max(fits, 1),
        chosen=chosen,
        seconds=seconds,
    )


def _fmt(value: float, pattern: str) -> str:
    return "n/a" if value != value else format(value, pattern)


def render(results: list[Result], *, tasks: list[str], models: list[str], wall: float) -> str:
    """The markdown report: one summary table per task, then per-series detail."""
    import statistics

    lines = [
        "# Forecast accuracy on NAB traces",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/accuracy.py` on "
        f"{platform.machine()} with {os.cpu_count()} CPUs, in {wall / 60:.1f} min. "
        "Rolling-origin backtests as in docs/EVALUATION.md (history window 28 days, "
        "90% intervals, refit every 24 h, `predict(history=...)` between refits).",
        "",
        "MASE: mean over origins of MAE / in-sample MAE of the daily seasonal naive "
        "(lower is better). sMAPE in percent. Coverage: share of actuals inside the "
        "90% interval (target 85-95%). Width: mean interval width / mean actual. "
        "Fit s: wall seconds per refit (fit plus the forecasts until the next refit).",
        "",
    ]
    series_names = sorted({r.series for r in results})
    for task in tasks:
        rows = [r for r in results if r.task == task]
        if not rows:
            continue
        lines += [
            f"## {task} ({len(series_names)} series)",
            "",
            "| model | mean MASE | median MASE | wins | mean sMAPE | mean coverage | "
            "mean width | fit s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        best_by_series = {}
        for name in series_names:
            candidates = [r for r in rows if r.series == name and r.mase == r.mase]
            if candidates:
                best_by_series[name] = min(candidates, key=lambda r: r.mase).model
        for model in models:
            mine = [r for r in rows if r.model == model]
            if not mine:
                continue
            mases = [r.mase for r in mine if r.mase == r.mase]
            wins = sum(1 for m in best_by_series.values() if m == model)
            lines.append(
                f"| {model} | {_fmt(statistics.mean(mases), '.3f')} | "
                f"{_fmt(statistics.median(mases), '.3f')} | {wins} | "
                f"{_fmt(statistics.mean(r.smape for r in mine), '.1f')} | "
                f"{_fmt(100 * statistics.mean(r.coverage for r in mine), '.1f')}% | "
                f"{_fmt(statistics.mean(r.width for r in mine), '.2f')} | "
                f"{_fmt(statistics.mean(r.fit_seconds for r in mine), '.2f')} |"
            )
        lines += ["", f"### {task}: per series", ""]
        lines += [
            "| series | model | MASE | sMAPE | coverage | width | fit s | produced by |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name in series_names:
            for model in models:
                for r in rows:
                    if r.series == name and r.model == model:
                        lines.append(
                            f"| {name} | {model} | {_fmt(r.mase, '.3f')} | "
                            f"{_fmt(r.smape, '.1f')} | {_fmt(100 * r.coverage, '.1f')}% | "
                            f"{_fmt(r.width, '.2f')} | {_fmt(r.fit_seconds, '.2f')} | "
                            f"{r.chosen} |"
                        )
        lines.append("")
    lines += _targets(results, tasks=tasks)
    return "\n".join(lines) + "\n"


def _targets(results: list[Result], *, tasks: list[str]) -> list[str]:
    """Per series and task: is each target of issue #3 met? Computed, never typed in."""
    lines = [
        "## Targets per series",
        "",
        f"MASE: auto at least {100 * MASE_MARGIN:.0f}% below the best reference "
        f"({', '.join(TARGET_REFERENCES)}); ratio = auto / best. Coverage of the 90% "
        f"interval in {100 * COVERAGE_BAND[0]:.0f}-{100 * COVERAGE_BAND[1]:.0f}%. Time: the "
        f"whole day-ahead backtest of one series under {DAY_AHEAD_SECONDS:.0f} s (wall "
        "seconds on the shared machine above).",
        "",
        "| task | series | auto MASE | best reference | its MASE | ratio | MASE target "
        "| coverage | coverage target | backtest s | time target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        for name in sorted({r.series for r in results if r.task == task}):
            mine = {r.model: r for r in results if r.task == task and r.series == name}
            auto = mine.get("auto")
            best = best_reference(mine)
            if auto is None or best is None:
                continue
            ratio = auto.mase / best.mase if best.mase > 0 else float("nan")
            mase_ok = ratio <= 1.0 - MASE_MARGIN
            cov_ok = COVERAGE_BAND[0] <= auto.coverage <= COVERAGE_BAND[1]
            time_cell = "-"
            if task == "day_ahead":
                time_cell = "met" if auto.seconds < DAY_AHEAD_SECONDS else "**missed**"
            lines.append(
                f"| {task} | {name} | {_fmt(auto.mase, '.3f')} | {best.model} | "
                f"{_fmt(best.mase, '.3f')} | {_fmt(ratio, '.2f')} | "
                f"{'met' if mase_ok else '**missed**'} | {_fmt(100 * auto.coverage, '.1f')}% | "
                f"{'met' if cov_ok else '**missed**'} | {_fmt(auto.seconds, '.0f')} | {time_cell} |"
            )
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the backtests (in parallel processes), write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--set",
        choices=list(SETS),
        default="benchmark",
        help="benchmark: the 9 series the targets and settings refer to; held_out: 8 "
        "series no setting was chosen on (default report accuracy_held_out.md)",
    )
    parser.add_argument("--series", default=None, help="comma-separated names (default: the set)")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--output", type=Path, default=None, help="default: by --set")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="append each finished backtest to this JSON-lines file (a long run that is "
        "cut short keeps what it measured)",
    )
    parser.add_argument(
        "--from-results",
        type=Path,
        nargs="+",
        default=None,
        help="write the report from these JSON-lines files instead of running backtests "
        "(the last line wins for a repeated series/task/model)",
    )
    args = parser.parse_args(argv)
    known, report_name = SETS[args.set]
    series = [s for s in (args.series or ",".join(known)).split(",") if s]
    output = args.output or REPO / "benchmarks" / "results" / report_name
    tasks = [t for t in args.tasks.split(",") if t]
    models = [m for m in args.models.split(",") if m]
    unknown = [s for s in series if s not in ALL_SERIES]
    unknown += [t for t in tasks if t not in TASKS]
    if unknown:
        print(
            f"unknown series or task: {unknown}; series: {list(SERIES)} and (held out) "
            f"{list(HELD_OUT)}; tasks: {list(TASKS)}"
        )
        return 2
    jobs = [
        (s, t, m)
        for t in tasks
        for s in series
        for m in models
        if t in REFERENCE_TASKS.get(m, tuple(TASKS))
    ]
    if args.from_results:
        return _report_from_results(args.from_results, output, series, tasks, models)
    began = time.perf_counter()
    results: list[Result] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_one, *job): job for job in jobs}
        for future in futures:
            s, t, m = futures[future]
            try:
                r = future.result()
            except Exception as exc:  # noqa: BLE001 - report and continue
                print(f"FAILED {s} {t} {m}: {exc}", file=sys.stderr)
                continue
            results.append(r)
            if args.results is not None:
                with args.results.open("a") as log:
                    log.write(json.dumps(asdict(r) | {"wall": time.perf_counter() - began}) + "\n")
            print(
                f"{t:10s} {s:15s} {m:22s} MASE {r.mase:6.3f} sMAPE {r.smape:6.1f} "
                f"cov {100 * r.coverage:5.1f}% width {r.width:5.2f} fit {r.fit_seconds:6.2f}s "
                f"[{r.chosen}]",
                flush=True,
            )
    report = render(results, tasks=tasks, models=models, wall=time.perf_counter() - began)
    write_report(output, report, show=False)
    print(f"wrote {output}")
    return 0


def load_results(paths: list[Path]) -> tuple[dict[tuple[str, str, str], Result], float]:
    """Results of ``--results`` files by (series, task, model), a later line winning, and
    the sum of the runs' wall seconds."""
    kept: dict[tuple[str, str, str], Result] = {}
    wall = 0.0
    for path in paths:
        run_wall = 0.0
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            run_wall = max(run_wall, float(row.pop("wall", 0.0)))
            r = Result(**row)
            kept[(r.series, r.task, r.model)] = r
        wall += run_wall
    return kept, wall


def best_reference(mine: dict[str, Result]) -> Result | None:
    """The target reference (:data:`TARGET_REFERENCES`) with the lowest MASE, by model."""
    refs = [mine[m] for m in TARGET_REFERENCES if m in mine and mine[m].mase == mine[m].mase]
    return min(refs, key=lambda r: r.mase) if refs else None


def _report_from_results(
    paths: list[Path], output: Path, series: list[str], tasks: list[str], models: list[str]
) -> int:
    """Render the report from ``--results`` files of earlier (possibly cut-short) runs."""
    loaded, wall = load_results(paths)
    kept = {
        key: r
        for key, r in loaded.items()
        if r.series in series and r.task in tasks and r.model in models
    }
    missing = [
        (s, t, m)
        for t in tasks
        for s in series
        for m in models
        if t in REFERENCE_TASKS.get(m, tuple(TASKS)) and (s, t, m) not in kept
    ]
    report = render(list(kept.values()), tasks=tasks, models=models, wall=wall)
    title, _, rest = report.partition("\n\n")
    report = (
        f"{title}\n\nAssembled with `--from-results` from {len(paths)} result file(s) of "
        f"separate runs ({len(kept)} backtests); the minutes below are the sum of the "
        f"runs' wall times where recorded.\n\n{rest}"
    )
    if missing:
        report += (
            f"\nNot measured ({len(missing)} backtests; the run was cut short): "
            + ", ".join(f"{t}/{s}/{m}" for s, t, m in missing)
            + "\n"
        )
    write_report(output, report, show=False)
    print(f"wrote {output} from {len(kept)} results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
