"""Training benchmark: N series from a real Prometheus through ingest, train, publish.

Builds ``--series`` load series (default 200) from the real NAB traces in
``data/nab`` (different traces, time offsets and scales) with 28 days of 5-minute
history, backfills them into a real Prometheus (``tests.support.promserver``:
promtool + ``/usr/bin/prometheus`` on loopback), then runs the jobs the scheduler
runs, in one long-lived process, ``--cycles`` times:

* ingest: ``run_ingest`` (one ``split_by`` family, chunked ``query_range``);
* train: ``run_train`` (fits fan out over ``--workers`` local processes; the
  estimator selection backtest, the MLflow logging and registration in a local
  SQLite MLflow store, and the promotion gate are part of it);
* publish: ``run_publish`` (forecasts from the champions into the store).

It reports series per minute and peak RSS per stage (this process plus its worker
processes, sampled every 50 ms), RSS after every cycle (is memory flat?), and a
cProfile of training a few series serially in-process: the share of time per
estimator and the hottest functions. ``--with-prophet`` adds Prophet to the
candidates. Writes markdown to ``--output``.

    .venv/bin/python -m benchmarks.training [--series 200] [--workers 2] [--cycles 5]
        [--with-prophet] [--profile-series 10] [--output benchmarks/results/training.md]

Run from the repository root (``tests.support`` is imported as a package). Not part
of the test suite.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import logging
import os
import platform
import pstats
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecaster.outputs import write_report

if TYPE_CHECKING:
    import pandas as pd

REPO = Path(__file__).resolve().parents[1]
NAB = REPO / "data" / "nab"
#: Load-like NAB traces on a 5-minute grid (tweets: 55 days; AWS: 14 days, tiled).
TRACES = (
    "realTweets/Twitter_volume_AAPL.csv",
    "realTweets/Twitter_volume_AMZN.csv",
    "realTweets/Twitter_volume_CRM.csv",
    "realTweets/Twitter_volume_CVS.csv",
    "realTweets/Twitter_volume_FB.csv",
    "realTweets/Twitter_volume_GOOG.csv",
    "realTweets/Twitter_volume_IBM.csv",
    "realTweets/Twitter_volume_KO.csv",
    "realTweets/Twitter_volume_PFE.csv",
    "realTweets/Twitter_volume_UPS.csv",
    "realAWSCloudwatch/elb_request_count_8c0756.csv",
    "realAWSCloudwatch/ec2_network_in_257a54.csv",
    "realAWSCloudwatch/rds_cpu_utilization_cc0c53.csv",
)
METRIC = "bench_load"
FAMILY = "load"


# -- synthetic-from-real series ------------------------------------------------------


def build_series(
    count: int, *, days: int, step: timedelta, seed: int = 7
) -> Iterator[tuple[str, pd.Series]]:
    """``count`` series of ``days`` days on a ``step`` grid, ending one step before now.

    Series ``i`` is NAB trace ``i mod 13``, gaps interpolated, tiled to cover the
    window, started at a seeded random offset and multiplied by a seeded scale in
    [0.2, 5]; a finer ``step`` than 5 minutes interpolates linearly. Yields
    ``(label value, values on a tz-aware UTC index)`` one series at a time.
    """
    import numpy as np
    import pandas as pd

    from forecaster.timeseries import read_series_csv, to_grid
    from tests.support.promserver import utc_now_floor

    rng = np.random.default_rng(seed)
    step_seconds = int(step.total_seconds())
    points = int(timedelta(days=days) / step)
    end = utc_now_floor(max(step_seconds, 300)) - step
    index = pd.date_range(end=end, periods=points, freq=pd.Timedelta(step))
    bases: dict[str, np.ndarray[Any, Any]] = {}
    for i in range(count):
        path = TRACES[i % len(TRACES)]
        if path not in bases:
            trace = to_grid(read_series_csv(NAB / path), timedelta(minutes=5))
            trace = trace.interpolate(limit_direction="both")
            if step != timedelta(minutes=5):
                fine = pd.date_range(trace.index[0], trace.index[-1], freq=pd.Timedelta(step))
                trace = trace.reindex(trace.index.union(fine)).interpolate("time").reindex(fine)
            bases[path] = trace.to_numpy(dtype=float)
        base = bases[path]
        offset = int(rng.integers(0, len(base)))
        reps = -(-(points + offset) // len(base))
        values = np.tile(base, reps)[offset : offset + points]
        scale = float(np.exp(rng.uniform(np.log(0.2), np.log(5.0))))
        yield f"s{i:04d}", pd.Series(np.round(values * scale, 3), index=index)


# -- a real Prometheus, backfilled in linear time -----------------------------------

#: promtool writes 2-hour blocks aligned on the epoch.
BLOCK_SECONDS = 7200


@dataclass
class Backfill:
    """A running, backfilled Prometheus and what the backfill cost."""

    url: str
    samples: int
    write_seconds: float
    promtool_seconds: float
    ready_seconds: float


@contextmanager
def backfilled_prometheus(
    home: Path, metric: str, series: Iterator[tuple[str, pd.Series]]
) -> Iterator[Backfill]:
    """Backfill ``metric{series="<label>"}`` for every yielded series and serve it.

    ``promtool tsdb create-blocks-from openmetrics`` (2.42) re-reads its whole input
    once per 2-hour block, so one file of 28 days costs 336 passes (the test harness'
    ``running_prometheus`` took over its 120 s limit for 200 x 28 days). Here the
    samples go to one OpenMetrics file per 2-hour block window, written one series at
    a time, and promtool runs once per file: linear in the samples. The server is
    started and stopped with the harness' own lifecycle (``tests.support.promserver``).
    """
    import numpy as np

    from tests.support.promserver import PROMTOOL, _start, _stop

    parts = home / "openmetrics"
    parts.mkdir(parents=True)
    tsdb = home / "tsdb"
    tsdb.mkdir()
    files: dict[int, Any] = {}
    samples = 0
    started = time.perf_counter()
    try:
        for label, values in series:
            prefix = f'{metric}{{series="{label}"}} '
            stamps = values.index.to_numpy(dtype="datetime64[s]").astype("int64")
            windows = stamps // BLOCK_SECONDS
            cuts = np.flatnonzero(np.diff(windows)) + 1
            for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), len(stamps)], strict=True):
                window = int(windows[lo])
                out = files.get(window)
                if out is None:
                    out = files[window] = (parts / f"{window}.om").open("w", encoding="utf-8")
                    out.write(f"# TYPE {metric} unknown\n")
                chunk_values = values.iloc[lo:hi].tolist()
                chunk_stamps = stamps[lo:hi].tolist()
                out.write(
                    "".join(
                        f"{prefix}{v} {t}\n"
                        for v, t in zip(chunk_values, chunk_stamps, strict=True)
                    )
                )
            samples += len(values)
    finally:
        for out in files.values():
            out.write("# EOF\n")
            out.close()
    write_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for path in sorted(parts.glob("*.om")):
        subprocess.run(
            [
                PROMTOOL,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--quiet",
                str(path),
                str(tsdb),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        path.unlink()
    promtool_seconds = time.perf_counter() - started
    config = home / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\n")
    started = time.perf_counter()
    process, port = _start(config, tsdb, home / "prometheus.log", 300.0)
    try:
        yield Backfill(
            url=f"http://127.0.0.1:{port}",
            samples=samples,
            write_seconds=write_seconds,
            promtool_seconds=promtool_seconds,
            ready_seconds=time.perf_counter() - started,
        )
    finally:
        _stop(process)


# -- memory sampling -----------------------------------------------------------------


class RssSampler:
    """Samples the RSS of this process and its children (MiB) in a background thread."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil  # type: ignore[import-untyped]

        self._process = psutil.Process()
        self._interval = interval
        self._peak = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def current(self) -> float:
        """RSS of this process plus its live children, in MiB."""
        import psutil

        total: int = self._process.memory_info().rss
        for child in self._process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                continue
        return total / 2**20

    def own(self) -> float:
        """RSS of this process alone, in MiB."""
        return float(self._process.memory_info().rss) / 2**20

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            value = self.current()
            with self._lock:
                self._peak = max(self._peak, value)

    def reset_peak(self) -> None:
        with self._lock:
            self._peak = self.current()

    def peak(self) -> float:
        with self._lock:
            return max(self._peak, self.current())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


@dataclass
class Stage:
    """One stage of one cycle."""

    cycle: int
    name: str
    seconds: float
    series: int
    errors: int
    peak_mib: float
    points: int = 0

    @property
    def per_minute(self) -> float:
        return self.series / self.seconds * 60 if self.seconds else float("nan")


@dataclass
class Report:
    """Everything the markdown report shows."""

    args: argparse.Namespace
    backfill_seconds: float = 0.0
    samples: int = 0
    stages: list[Stage] = field(default_factory=list)
    rss_after_cycle: list[tuple[float, float]] = field(default_factory=list)
    chosen: dict[str, int] = field(default_factory=dict)
    estimator_share: list[tuple[str, float, float]] = field(default_factory=list)
    hot: list[tuple[str, int, float, float]] = field(default_factory=list)
    profiled_seconds: float = 0.0
    #: 1-minute load average at the end of each stage (other work on the machine).
    load: list[float] = field(default_factory=list)


@contextmanager
def measured(
    report: Report, sampler: RssSampler, cycle: int, name: str, series: int
) -> Iterator[dict[str, Any]]:
    gc.collect()
    sampler.reset_peak()
    out: dict[str, Any] = {}
    started = time.perf_counter()
    yield out
    seconds = time.perf_counter() - started
    stage = Stage(
        cycle=cycle,
        name=name,
        seconds=seconds,
        series=series,
        errors=int(out.get("errors", 0)),
        peak_mib=sampler.peak(),
        points=int(out.get("points", 0)),
    )
    report.stages.append(stage)
    report.load.append(os.getloadavg()[0])
    print(  # noqa: T201 - progress of a command-line benchmark
        f"cycle {cycle} {name:8s} {seconds:8.1f} s  {stage.per_minute:8.1f} series/min  "
        f"peak {stage.peak_mib:7.0f} MiB  errors {stage.errors}",
        flush=True,
    )


# -- the run -------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Report:
    from forecaster.config import load_settings
    from forecaster.jobs.context import JobContext
    from forecaster.jobs.runner import run_ingest, run_publish, run_train

    report = Report(args)
    step = timedelta(minutes=5)
    estimators = ["seasonal_naive", "lightgbm"] + (["prophet"] if args.with_prophet else [])
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        home = Path(tmp)
        series = build_series(args.series, days=28, step=step)
        with backfilled_prometheus(home / "prom", METRIC, series) as prom:
            report.samples = prom.samples
            report.backfill_seconds = prom.write_seconds + prom.promtool_seconds
            print(  # noqa: T201
                f"backfilled {report.samples:,} samples in {report.backfill_seconds:.1f} s",
                flush=True,
            )
            spec_path = home / "spec.yaml"
            spec_path.write_text(_spec_yaml(estimators, args.horizon))
            settings = load_settings(
                database={"url": f"sqlite:///{home / 'store.db'}"},
                mlflow={
                    "tracking_uri": f"sqlite:///{home / 'mlflow.db'}",
                    "artifact_location": str(home / "artifacts"),
                    "cache_dir": home / "cache",
                },
                prometheus={"url": prom.url, "timeout_seconds": 60},
                training={"workers": args.workers, "threads_per_fit": 1},
                pipelines=spec_path,
            )
            ctx = JobContext.create(settings)
            sampler = RssSampler()
            try:
                specs = ctx.select(None)
                for cycle in range(1, args.cycles + 1):
                    with measured(report, sampler, cycle, "ingest", args.series) as out:
                        summary = run_ingest(ctx, specs)
                        out["errors"] = len(summary.errors)
                        out["points"] = sum(sum(r.written.values()) for r in summary.results)
                    with measured(report, sampler, cycle, "train", args.series) as out:
                        summary = run_train(ctx, specs)
                        out["errors"] = len(summary.errors)
                        if cycle == 1:
                            for result in summary.results:
                                report.chosen[result.chosen] = (
                                    report.chosen.get(result.chosen, 0) + 1
                                )
                    with measured(report, sampler, cycle, "publish", args.series) as out:
                        summary = run_publish(ctx, specs)
                        out["errors"] = len(summary.errors)
                    gc.collect()
                    report.rss_after_cycle.append((sampler.own(), sampler.current()))
                if args.profile_series:
                    _profile(ctx, report, args.profile_series)
            finally:
                sampler.close()
                ctx.store.engine.dispose()
    return report


def _spec_yaml(estimators: list[str], horizon: str) -> str:
    return (
        "version: 1\n"
        "defaults:\n"
        "  step: 5m\n"
        "  history: 28d\n"
        f"  horizon: {horizon}\n"
        f"  estimators: [{', '.join(estimators)}]\n"
        "series:\n"
        f"  - name: {FAMILY}\n"
        f"    query: sum by (series) ({METRIC})\n"
        "    split_by: [series]\n"
        "    kind: load\n"
    )


#: Estimator class -> the name reported; matched against profiled function paths.
_ESTIMATOR_FILES = {
    "naive.py": "seasonal_naive / last_value",
    "gbm.py": "lightgbm",
    "prophet.py": "prophet",
}


def _profile(ctx: Any, report: Report, count: int) -> None:
    """cProfile ``count`` series trained serially in this process (fit + record)."""
    from forecaster.executors import SerialExecutor
    from forecaster.jobs.runner import run_train

    spec = ctx.select(None)[0]
    names = ctx.members(spec)[:count]
    original = ctx.members
    ctx.members = lambda _spec: names
    profiler = cProfile.Profile()
    started = time.perf_counter()
    try:
        profiler.enable()
        run_train(ctx, [spec], executor=SerialExecutor())
        profiler.disable()
    finally:
        ctx.members = original
    report.profiled_seconds = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    raw: Any = stats.stats  # type: ignore[attr-defined]
    total = report.profiled_seconds
    # Share per estimator: cumulative time of the estimators' own fit/predict methods.
    share: dict[str, float] = {}
    for (path, _line, func), (_cc, _nc, _tt, cumulative, _callers) in raw.items():
        if func not in ("fit", "predict"):
            continue
        for suffix, label in _ESTIMATOR_FILES.items():
            if path.endswith(f"estimators/{suffix}"):
                share[label] = share.get(label, 0.0) + cumulative
    buckets = {
        "auto: backtest + selection (all candidates)": ("estimators/auto.py", "fit"),
        "MLflow log + register + alias": ("forecaster/registry.py", None),
        "backtest plot (matplotlib)": ("forecaster/evaluation.py", "plot_backtest"),
        "store (SQLAlchemy)": ("forecaster/store/repository.py", None),
    }
    for label, (suffix, func_name) in buckets.items():
        best = 0.0
        for (path, _line, func), (_cc, _nc, _tt, cumulative, _callers) in raw.items():
            if path.endswith(suffix) and (func_name is None or func == func_name):
                best = max(best, cumulative)
        share[label] = best
    report.estimator_share = [
        (label, seconds, seconds / total * 100 if total else 0.0)
        for label, seconds in sorted(share.items(), key=lambda kv: -kv[1])
    ]
    by_own = sorted(raw.items(), key=lambda kv: -kv[1][2])[:15]
    report.hot = [
        (f"{Path(path).name}:{line} {func}", nc, tt, cumulative)
        for (path, line, func), (_cc, nc, tt, cumulative, _callers) in by_own
    ]


# -- report --------------------------------------------------------------------------


def to_markdown(report: Report) -> str:
    args = report.args
    variant = "seasonal_naive + lightgbm" + (" + prophet" if args.with_prophet else "")
    command = (
        f"python -m benchmarks.training --series {args.series} --workers {args.workers} "
        f"--cycles {args.cycles} --horizon {args.horizon} "
        f"--profile-series {args.profile_series}" + (" --with-prophet" if args.with_prophet else "")
    )
    lines = [
        f"# Training benchmark ({variant})",
        "",
        f"Command: `{command}`",
        "",
        f"- {args.series} series x 28 days at 5 minutes ({report.samples:,} samples), "
        f"horizon {args.horizon}, {args.workers} worker process(es), {args.cycles} cycle(s)",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPU(s), "
        f"Python {platform.python_version()}",
        f"- backfill (OpenMetrics per 2 h block + promtool): {report.backfill_seconds:.1f} s",
        f"- 1-minute load average at the end of each stage: "
        f"{min(report.load, default=0):.1f}-{max(report.load, default=0):.1f} "
        "(2 = both cores busy with this benchmark alone)",
        "",
        "| cycle | stage | seconds | series/min | peak RSS (MiB, incl. workers) | errors |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for s in report.stages:
        lines.append(
            f"| {s.cycle} | {s.name} | {s.seconds:.1f} | {s.per_minute:.1f} | "
            f"{s.peak_mib:.0f} | {s.errors} |"
        )
    first = [s for s in report.stages if s.cycle == 1]
    end_to_end = sum(s.seconds for s in first)
    lines += [
        "",
        f"End to end, cycle 1 (ingest 28 days + train + publish): **{end_to_end:.1f} s** "
        f"({args.series / end_to_end * 60:.1f} series/min).",
        "",
        "Chosen estimators (cycle 1): "
        + ", ".join(f"{k}: {v}" for k, v in sorted(report.chosen.items())),
        "",
        "## Memory across cycles",
        "",
        "| after cycle | RSS of this process (MiB) | incl. workers (MiB) |",
        "|---:|---:|---:|",
    ]
    for i, (own, total) in enumerate(report.rss_after_cycle, start=1):
        lines.append(f"| {i} | {own:.0f} | {total:.0f} |")
    if report.estimator_share:
        lines += [
            "",
            f"## Where training time goes (cProfile, {args.profile_series} series trained "
            f"serially in-process, {report.profiled_seconds:.1f} s)",
            "",
            "Buckets overlap (the auto selection backtest contains the estimator fits).",
            "",
            "| part | seconds | share |",
            "|---|---:|---:|",
        ]
        for label, seconds, pct in report.estimator_share:
            lines.append(f"| {label} | {seconds:.1f} | {pct:.0f}% |")
        lines += [
            "",
            "Hottest functions by own time:",
            "",
            "| function | calls | own s | cumulative s |",
            "|---|---:|---:|---:|",
        ]
        for name, calls, own_s, cumulative in report.hot:
            lines.append(f"| `{name}` | {calls} | {own_s:.2f} | {cumulative:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cycles", type=int, default=1)
    parser.add_argument("--horizon", default="24h")
    parser.add_argument("--with-prophet", action="store_true")
    parser.add_argument("--profile-series", type=int, default=10)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/training.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report = run(args)
    text = to_markdown(report)
    write_report(args.output, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
