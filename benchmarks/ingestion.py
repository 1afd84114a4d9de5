"""Ingestion benchmark: a large ``split_by`` family from a real Prometheus, peak RSS.

Builds ``--series`` series (default 1,000) of ``--days`` days (default 28) at a
``--step`` grid (default 1m: 40,320 points per series, 40M samples in all) from the
real NAB traces (``benchmarks.training.build_series``: offsets, scales, linear
interpolation to the finer grid), writes them as OpenMetrics text one series at a
time, backfills them with ``promtool tsdb create-blocks-from openmetrics`` and
serves them with ``/usr/bin/prometheus`` on loopback (the start/stop of
``tests.support.promserver``). Then a fresh child process ingests the family
(``run_ingest`` into a SQLite store) and the report gives its peak RSS (the child's
own ``ru_maxrss``, so the generator's memory does not count) and throughput.

``--one-shot`` also ingests through ``fetch()`` (whole range in memory, then write:
the behaviour before streaming) for comparison; use it at a small scale only.

    .venv/bin/python -m benchmarks.ingestion [--series 1000] [--days 28] [--step 1m]
        [--one-shot] [--output benchmarks/results/ingestion.md]

Run from the repository root. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.training import REPO, backfilled_prometheus, build_series
from forecaster.durations import parse_duration
from forecaster.outputs import write_report

METRIC = "bench_load_fine"
TARGET_MIB = 1024


@dataclass
class IngestRun:
    """One ingestion in a child process."""

    mode: str
    seconds: float
    points: int
    series: int
    errors: int
    peak_mib: float
    sampled_peak_mib: float
    store_mib: float


def _ingest_child(config: dict[str, Any], results: Any) -> None:
    """In a fresh process: ingest the family, report seconds, points and ru_maxrss."""
    from forecaster.config import load_settings
    from forecaster.jobs.context import JobContext
    from forecaster.jobs.runner import run_ingest

    settings = load_settings(**config["settings"])
    ctx = JobContext.create(settings)
    if config["one_shot"]:
        from forecaster.sources.prometheus import PrometheusSource

        inner = PrometheusSource(settings.prometheus)

        class FetchOnly:
            def fetch(self, spec: Any, start: Any, end: Any) -> Any:
                return inner.fetch(spec, start, end)

        ctx._sources["prometheus"] = FetchOnly()
    started = time.perf_counter()
    summary = run_ingest(ctx, ctx.select(None))
    seconds = time.perf_counter() - started
    points = sum(sum(r.written.values()) for r in summary.results)
    series = sum(len(r.written) for r in summary.results)
    ctx.store.engine.dispose()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results.put((seconds, points, series, len(summary.errors), peak_kib / 1024, summary.errors))


def ingest(home: Path, url: str, args: argparse.Namespace, *, one_shot: bool) -> IngestRun:
    import psutil  # type: ignore[import-untyped]

    mode = "one-shot fetch()" if one_shot else "streaming iter_chunks()"
    db = home / f"store-{'one-shot' if one_shot else 'streaming'}.db"
    spec = home / "spec.yaml"
    spec.write_text(
        "version: 1\n"
        "defaults:\n"
        f"  step: {args.step}\n"
        f"  history: {args.days}d\n"
        "  horizon: 1h\n"
        "  estimators: [seasonal_naive]\n"
        "series:\n"
        "  - name: load\n"
        f"    query: sum by (series) ({METRIC})\n"
        "    split_by: [series]\n"
    )
    config = {
        "one_shot": one_shot,
        "settings": {
            "database": {"url": f"sqlite:///{db}"},
            "mlflow": {"tracking_uri": f"sqlite:///{home / 'mlflow.db'}"},
            "prometheus": {"url": url, "timeout_seconds": 120},
            "pipelines": spec,
        },
    }
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_ingest_child, args=(config, results))
    child.start()
    watched = psutil.Process(child.pid)
    sampled = 0.0
    while child.is_alive():
        try:
            sampled = max(sampled, watched.memory_info().rss / 2**20)
        except psutil.Error:
            break
        if not results.empty():
            break
        time.sleep(0.05)
    seconds, points, series, errors, peak, messages = results.get(timeout=3600)
    child.join(timeout=60)
    if messages:
        print("errors:", messages)  # noqa: T201
    store = sum(p.stat().st_size for p in home.glob(f"{db.name}*")) / 2**20
    run = IngestRun(mode, seconds, points, series, errors, peak, sampled, store)
    print(  # noqa: T201
        f"{mode}: {seconds:.1f} s, {points:,} points, {series} series, "
        f"peak RSS {peak:.0f} MiB (sampled {sampled:.0f}), store {store:.0f} MiB",
        flush=True,
    )
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--step", default="1m")
    parser.add_argument("--one-shot", action="store_true")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/ingestion.md")
    args = parser.parse_args(argv)
    runs: list[IngestRun] = []
    step = parse_duration(args.step, what="--step")
    with tempfile.TemporaryDirectory(prefix="bench-ingestion-") as tmp:
        home = Path(tmp)
        series = build_series(args.series, days=args.days, step=step)
        with backfilled_prometheus(home / "prom", METRIC, series) as prom:
            print(  # noqa: T201
                f"{prom.samples:,} samples: OpenMetrics written in {prom.write_seconds:.1f} s, "
                f"promtool {prom.promtool_seconds:.1f} s",
                flush=True,
            )
            runs.append(ingest(home, prom.url, args, one_shot=False))
            if args.one_shot:
                runs.append(ingest(home, prom.url, args, one_shot=True))
            tsdb = home / "prom" / "tsdb"
            tsdb_mib = sum(p.stat().st_size for p in tsdb.rglob("*") if p.is_file()) / 2**20
        samples, write_s, promtool_s, ready_s = (
            prom.samples,
            prom.write_seconds,
            prom.promtool_seconds,
            prom.ready_seconds,
        )
    text = to_markdown(args, samples, write_s, promtool_s, ready_s, tsdb_mib, runs)
    write_report(args.output, text)
    return 0


def to_markdown(
    args: argparse.Namespace,
    samples: int,
    write_s: float,
    promtool_s: float,
    ready_s: float,
    tsdb_mib: float,
    runs: list[IngestRun],
) -> str:
    from forecaster.config import PrometheusSettings

    defaults = PrometheusSettings()
    lines = [
        f"# Ingestion benchmark: {args.series:,} series x {args.days} days at {args.step}",
        "",
        f"- {samples:,} samples in one `split_by` family, real Prometheus on loopback, "
        "SQLite store",
        f"- chunking: max_samples_per_request={defaults.max_samples_per_request:,}, "
        f"max_points_per_query={defaults.max_points_per_query:,} (defaults)",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPU(s), "
        f"Python {platform.python_version()}",
        f"- backfill (OpenMetrics per 2 h block + promtool): written in {write_s:.0f} s, promtool "
        f"{promtool_s:.0f} s, Prometheus ready in {ready_s:.0f} s, TSDB {tsdb_mib:.0f} MiB",
        "",
        "| mode | seconds | points written | points/s | series | peak RSS of the "
        "ingesting process (MiB) | < 1 GiB | store (MiB) | errors |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for run in runs:
        rate = run.points / run.seconds if run.seconds else float("nan")
        lines.append(
            f"| {run.mode} | {run.seconds:.0f} | {run.points:,} | {rate:,.0f} | {run.series} "
            f"| {run.peak_mib:.0f} | {'yes' if run.peak_mib < TARGET_MIB else 'NO'} "
            f"| {run.store_mib:.0f} | {run.errors} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
