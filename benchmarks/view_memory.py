"""How many series fit in a 256 MB API pod: memory of the serving view per series.

For each series count, builds a store (a temporary SQLite file, or ``--database``,
e.g. the test PostgreSQL, in a scratch schema dropped afterwards) in which every
series has a published 24-hour forecast at 5 minutes (288 steps, as
``benchmarks/serving.py``), then

* starts the API (granian, 1 worker, as ``forecaster serve``) on it, waits until its
  view holds every forecast, and reads the server's RSS (``VmRSS`` of the process
  and its children);
* loads a ``ForecastView`` in this process under ``tracemalloc`` and reports what the
  view itself holds, per series.

    .venv/bin/python -m benchmarks.view_memory [--series 1000 5000] [--server granian]
        [--database postgresql+psycopg://postgres@127.0.0.1:5432/test]

Writes ``benchmarks/results/view_memory.md`` (``view_memory_postgres.md`` with a
PostgreSQL ``--database``), pasted into the README by ``benchmarks/update_readme.py``.
"""

from __future__ import annotations

import argparse
import gc
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

import httpx

from benchmarks.serving import REPO, build_store, free_port, rss_mb, scratch_schema, start_server
from forecaster.outputs import write_report

POD_MB = 256


def view_bytes(url: str) -> tuple[float, float]:
    """(bytes the loaded view holds, seconds its first refresh took) for the store ``url``."""
    from forecaster.api.view import ForecastView
    from forecaster.config import DatabaseSettings
    from forecaster.store.db import make_engine
    from forecaster.store.repository import Store

    engine = make_engine(DatabaseSettings(url=url))
    view = ForecastView(Store(engine))
    started = time.perf_counter()
    view.refresh()
    seconds = time.perf_counter() - started
    del view
    gc.collect()
    view = ForecastView(Store(engine))
    tracemalloc.start()
    view.refresh()
    gc.collect()
    held, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if view.state.error or len(view.state.forecasts) == 0:
        raise SystemExit(f"the view did not load: {view.state.error}")
    engine.dispose()
    return float(held), seconds


def server_rss(url: str, n: int, server: str) -> float:
    """RSS (MB) of the API serving the store ``url`` once its view holds all ``n`` forecasts."""
    port = free_port()
    env = {
        "FORECASTER_DATABASE__URL": url,
        "FORECASTER_SCHEDULE__STALE_AFTER_SECONDS": "86400",
    }
    proc = start_server("forecaster.api.asgi:app", port, env, server, 1)
    try:
        last = f"http://127.0.0.1:{port}/v1/series/svc{n - 1:04d}_rps/forecast?horizon=1h"
        deadline = time.monotonic() + 300
        while httpx.get(last, timeout=10).status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit(f"the API did not load {n} forecasts in 300 s")
            time.sleep(1)
        for _ in range(200):  # touch the read path as a client would
            httpx.get(last, timeout=10)
        time.sleep(2)
        return rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--server", choices=["granian", "uvicorn"], default="granian")
    parser.add_argument("--database", default=None, help="store URL (default: temp SQLite)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    backend = "sqlite" if args.database is None else args.database.split(":", 1)[0]
    postgres = backend.startswith("postgresql")
    output = args.output or REPO / "benchmarks/results" / (
        "view_memory_postgres.md" if postgres else "view_memory.md"
    )
    rows = []
    for n in args.series:
        with tempfile.TemporaryDirectory() as tmp, scratch_schema(args.database) as database:
            url = database or f"sqlite:///{tmp}/view.db"
            print(f"building a store with {n} series ...", flush=True)
            started = time.perf_counter()
            build_store(url, n)
            print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
            held, refresh = view_bytes(url)
            rss = server_rss(url, n, args.server)
            rows.append((n, held, refresh, rss))
            print(f"  view {held / 1e6:.1f} MB, refresh {refresh:.1f} s, API RSS {rss:.0f} MB")
    per_series = [held / n for n, held, _, _ in rows]
    if len(rows) >= 2 and rows[-1][0] > rows[0][0]:  # RSS growth per series, measured
        slope = (rows[-1][3] - rows[0][3]) / (rows[-1][0] - rows[0][0])
        how = "the API's RSS grows by"
    else:  # only one size: what the view holds
        slope = max(per_series) / 2**20
        how = "the view holds"
    base = rows[0][3] - slope * rows[0][0]
    fit = int((POD_MB - base) / slope)
    series_flag = " ".join(str(n) for n in args.series)
    lines = [
        f"Command: `python -m benchmarks.view_memory --series {series_flag}"
        + (f" --database {backend}://..." if args.database else "")
        + f"` ({platform.machine()}, store {'PostgreSQL' if postgres else backend}, "
        f"API on {args.server}, 1 worker; every series has a published 24-hour forecast "
        "at 5 minutes, 288 steps).",
        "",
        "| series | view holds (MB, tracemalloc) | per series (KB) | first refresh (s) "
        "| API RSS (MB) | within 256 MB |",
        "|---|---|---|---|---|---|",
    ]
    for (n, held, refresh, rss), each in zip(rows, per_series, strict=True):
        lines.append(
            f"| {n} | {held / 1e6:.1f} | {each / 1e3:.1f} | {refresh:.1f} | {rss:.0f} | "
            f"{'yes' if rss <= POD_MB else '**no**'} |"
        )
    lines += [
        "",
        f"Per series {how} {slope * 2**10:.1f} KB over {base:.0f} MB without any: one "
        f"API pod holds about {fit:,} such series within {POD_MB} MB.",
    ]
    text = "\n".join(lines) + "\n"
    write_report(output, text)


if __name__ == "__main__":
    main()
