"""Recalibration benchmark: what the publish job's band-scale reads cost per series.

Before it stretches a band, the publish job reads a day of past forecasts for each
series, once an hour: the latest hourly publication before each observation (the
short scale) and every hourly forecast made more than an hour before it (the long
scale; ``forecaster.recalibration``). This builds ``--series`` series (default 100)
in a store (a temporary SQLite file, or ``--database`` e.g. the test PostgreSQL),
each with 48 hourly publications of a 24-hour forecast at 5 minutes (what the store
keeps) and the real ELB request trace (``data/nab``) as its history, then times
``forecaster.jobs.publish._band_scale`` for every series with an empty cache, as
one hour's recomputation.

    .venv/bin/python -m benchmarks.recalibration [--series 100]
        [--database postgresql+psycopg://postgres@127.0.0.1:5432/test]
        [--output benchmarks/results/recalibration.md]

Run from the repository root. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from benchmarks.serving import scratch_schema
from forecaster.config import DatabaseSettings
from forecaster.jobs.publish import _band_scale
from forecaster.outputs import write_report
from forecaster.store.db import make_engine, upgrade
from forecaster.store.repository import ForecastPoint, Store
from forecaster.timeseries import read_series_csv, to_grid

REPO = Path(__file__).resolve().parents[1]
TRACE = REPO / "data/nab/realAWSCloudwatch/elb_request_count_8c0756.csv"
STEP = timedelta(minutes=5)
HORIZON = 288
HOURS = 48


@dataclass
class _Ctx:
    store: Store
    band_scales: dict[str, tuple[datetime, tuple[float, float]]] = field(default_factory=dict)


def _history(end: datetime) -> pd.Series:
    """The real trace on a 5-minute grid, shifted so that it ends at ``end``."""
    series = to_grid(read_series_csv(TRACE), STEP).ffill()
    series.index = series.index + (pd.Timestamp(end) - series.index[-1])
    return series


def _fill(store: Store, name: str, history: pd.Series, end: datetime) -> None:
    """48 hourly publications before ``end``: the trace's values one day earlier as
    yhat, a +-20 % band, stretched by 1.5 (short) and 2 (long) as published."""
    store.ensure_series(name=name, family=name, step_seconds=300, horizon_steps=HORIZON)
    values = history.to_numpy(dtype=float)
    index = history.index
    for hour in range(HOURS, 0, -1):
        generated = end - timedelta(hours=hour)
        start = int(index.searchsorted(pd.Timestamp(generated)))
        points = []
        for step in range(1, HORIZON + 1):
            ds = generated + step * STEP
            source = min(len(values) - 1, max(0, start + step - 288))
            yhat = float(values[source])
            scale = 1.5 if step <= 12 else 2.0
            half = 0.2 * abs(yhat) * scale
            points.append(
                ForecastPoint(
                    step=step, ds=ds, yhat=yhat, yhat_lower=yhat - half, yhat_upper=yhat + half
                )
            )
        store.publish_forecast(
            series=name,
            generated_at=generated,
            origin=generated + STEP,
            step_seconds=300,
            level=90.0,
            model_name="bench",
            model_version="1",
            run_id="bench",
            points=points,
            band_scale=1.5,
            band_scale_long=2.0,
            keep_hourly=timedelta(days=3),
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--database", default=None, help="store URL (default: temp SQLite)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/recalibration.md")
    args = parser.parse_args()
    if args.series < 1:
        parser.error("--series must be at least 1")
    with tempfile.TemporaryDirectory() as tmp, scratch_schema(args.database) as database:
        url = database or f"sqlite:///{tmp}/bench.db"
        engine = make_engine(DatabaseSettings(url=url))
        upgrade(engine)
        store = Store(engine)
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        history = _history(end)
        names = [f"series_{i}" for i in range(args.series)]
        began = time.perf_counter()
        for name in names:
            _fill(store, name, history, end)
        setup = time.perf_counter() - began
        ctx = _Ctx(store)
        seconds = []
        scales = []
        for name in names:
            t = time.perf_counter()
            scales.append(_band_scale(ctx, name, history, end))  # type: ignore[arg-type]
            seconds.append(time.perf_counter() - t)
        day_ago = end - timedelta(days=1)
        short_rows = len(store.hourly_forecast_points(names[0], since=day_ago, until=end))
        long_rows = len(store.long_lead_forecast_points(names[0], since=day_ago, until=end))
        engine.dispose()
    total = sum(seconds)
    ms = sorted(1000 * s for s in seconds)
    backend = url.split(":", 1)[0]
    lines = [
        f"Command: `python -m benchmarks.recalibration --series {args.series}"
        + (f" --database {backend}://..." if args.database else "")
        + f"` ({platform.machine()}, store {backend}; setup {setup:.0f} s).",
        "",
        f"{args.series} series, each with {HOURS} hourly publications of a 24-hour "
        f"forecast at 5 minutes; per series the short read judges {short_rows} past "
        f"forecast steps and the long read {long_rows}.",
        "",
        "| series | all at once (s) | per series p50 ms | p95 ms | max ms "
        "| per minute when spread over the hour (s) | scales (short, long) of the first |",
        "|---|---|---|---|---|---|---|",
        f"| {args.series} | {total:.1f} | {statistics.median(ms):.1f} | "
        f"{ms[int(0.95 * (len(ms) - 1))]:.1f} | {ms[-1]:.1f} | {total / 60:.2f} | "
        f"{scales[0][0]:.2f}, {scales[0][1]:.2f} |",
    ]
    report = "\n".join(lines) + "\n"
    write_report(args.output, report)


if __name__ == "__main__":
    main()
