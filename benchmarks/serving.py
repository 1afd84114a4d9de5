"""Serving benchmark: wrk on loopback against the forecast and scaling endpoints vs a hello app.

Builds a store with N series (default 1,000) each with a published 24 h forecast,
starts the API and a minimal FastAPI app with the same server flags, and drives
each with wrk for a fixed duration at fixed concurrency. Then a throttled run
measures latency under a given load: about half the FastAPI hello max rate, or
``--rate`` requests per second (e.g. ``--rate 5000``, the auth mesh's bar). Reports
RPS, p50/p95/p99 and the server's RSS, as a markdown table.

    .venv/bin/python benchmarks/serving.py [--series 1000] [--duration 30] [--connections 32]
        [--server uvicorn|granian] [--workers 1] [--rate RPS]

Needs Debian's `wrk`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx

from forecaster.outputs import write_report

REPO = Path(__file__).resolve().parents[1]
LUA = """
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "0")
-- a pause drawn from 0..2x the mean, so connections do not stay in lockstep
function delay()
  if delay_ms == 0 then return 0 end
  return math.random(0, 2 * delay_ms)
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"errors\\": %d, "
    .. "\\"p50\\": %d, \\"p95\\": %d, \\"p99\\": %d}\\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


@contextmanager
def scratch_schema(url: str | None) -> Iterator[str | None]:
    """For a PostgreSQL ``url``, the same database in a fresh schema dropped afterwards
    (a benchmark leaves nothing behind); other URLs unchanged."""
    if url is None or not url.startswith("postgresql"):
        yield url
        return
    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        joiner = "&" if "?" in url else "?"
        yield f"{url}{joiner}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_store(url: str, n: int) -> None:
    """A store at ``url`` with ``n`` series, each with a published 24-hour forecast at 5 min."""
    from forecaster.config import DatabaseSettings
    from forecaster.store.db import make_engine, upgrade
    from forecaster.store.repository import ForecastPoint, Store

    engine = make_engine(DatabaseSettings(url=url))
    upgrade(engine)
    store = Store(engine)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    step = timedelta(minutes=5)
    origin = now - timedelta(minutes=now.minute % 5)
    for i in range(n):
        name = f"svc{i:04d}_rps"
        store.ensure_series(name=name, family=name, step_seconds=300, horizon_steps=288)
        store.record_training(
            series=name,
            run_id=f"run{i}",
            estimator="lightgbm",
            model_version="1",
            promoted=True,
            reason="bench",
            metrics={"mase": 0.5},
            artifact=None,
        )
        store.publish_forecast(
            series=name,
            generated_at=now,
            origin=origin,
            step_seconds=300,
            level=90.0,
            model_name="lightgbm",
            model_version="1",
            run_id=f"run{i}",
            points=[
                ForecastPoint(
                    step=s,
                    ds=origin + s * step,
                    yhat=100.0 + s,
                    yhat_lower=80.0 + s,
                    yhat_upper=130.0 + s,
                )
                for s in range(1, 289)
            ],
        )
    engine.dispose()


def start_server(
    app: str,
    port: int,
    env: dict[str, str],
    server: str,
    workers: int,
    log: IO[bytes] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``app`` under ``server`` on loopback (output to ``log`` if given); wait for it."""
    if server == "uvicorn":
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            app,
        ]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **env},
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT if log else None,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"{app} did not start on port {port}")


def rss_mb(pid: int) -> float:
    total = 0.0
    pids = [pid] + [
        int(p)
        for p in subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True
        ).stdout.split()
    ]
    for p in pids:
        try:
            text = Path(f"/proc/{p}/status").read_text()
        except FileNotFoundError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", text)
        if match:
            total += int(match.group(1)) / 1024
    return total


def wrk(
    url: str, duration: int, connections: int, lua: Path, delay_ms: int = 0
) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "WRK_DELAY_MS": str(delay_ms)},
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("JSON "))
    data = json.loads(line[5:])
    seconds = data["duration_us"] / 1e6
    return {
        "rps": data["requests"] / seconds,
        "p50_ms": data["p50"] / 1000,
        "p95_ms": data["p95"] / 1000,
        "p99_ms": data["p99"] / 1000,
        "errors": data["errors"],
    }


def throttled(url: str, duration: int, lua: Path, rate: float) -> dict[str, float]:
    """wrk at about ``rate`` requests per second: connections that each pause between requests.

    Each connection sends one request every pause + latency, the pause drawn
    uniformly from 0-20 ms (mean 10 ms) so the connections spread over time
    instead of arriving together; a 3 s probe measures the rate one connection
    really achieves and the run uses as many connections as ``rate`` needs. The
    achieved rate is what gets reported.
    """
    delay = 10  # mean ms between a connection's response and its next request
    conns = max(1, round(rate * delay / 1000))
    probe = wrk(url, 3, conns, lua, delay_ms=delay)
    conns = max(1, round(conns * rate / max(probe["rps"], 1.0)))
    return wrk(url, duration, conns, lua, delay_ms=delay)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="requests per second for the throttled run (default: half the FastAPI hello max rate)",
    )
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/serving.md")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        print(f"building a store with {args.series} series ...", flush=True)
        build_store(f"sqlite:///{db}", args.series)
        lua = Path(tmp) / "report.lua"
        lua.write_text(LUA)
        # Staleness is not what this measures: keep the seeded forecasts fresh enough.
        env = {
            "FORECASTER_DATABASE__URL": f"sqlite:///{db}",
            "FORECASTER_SCHEDULE__STALE_AFTER_SECONDS": "86400",
        }
        rows = []
        targets = [
            ("FastAPI hello", "benchmarks.hello_app:app", "/hello"),
            (
                "forecast ?horizon=15m",
                "forecaster.api.asgi:app",
                "/v1/series/svc0042_rps/forecast?horizon=15m",
            ),
        ]
        if _has_scaling():
            targets.append(
                (
                    "scaling",
                    "forecaster.api.asgi:app",
                    "/v1/scaling/svc0042_rps?target_per_replica=50&lead_time=10m",
                )
            )
        hello_rps = None
        for label, app, path in targets:
            port = free_port()
            proc = start_server(app, port, env, args.server, args.workers)
            try:
                url = f"http://127.0.0.1:{port}{path}"
                r = httpx.get(url, timeout=5)
                if r.status_code != 200:
                    raise SystemExit(f"{url} answered {r.status_code}: {r.text[:200]}")
                wrk(url, 3, args.connections, lua)  # warm-up
                full = wrk(url, args.duration, args.connections, lua)
                if hello_rps is None:
                    hello_rps = full["rps"]
                target_rate = args.rate or hello_rps / 2
                half = throttled(url, args.duration, lua, target_rate)
                rows.append((label, full, half, rss_mb(proc.pid)))
                print(label, full, half, flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=20)
    load = f"{args.rate:.0f}/s target" if args.rate else "~50% load"
    lines = [
        f"Server: {args.server}, workers={args.workers}; wrk -t1 -c{args.connections} -d{args.duration}s on loopback, "
        f"{args.series} series loaded; 2 cores shared by server and load generator.",
        "",
        f"| endpoint | max RPS | vs FastAPI hello | p50 ms | p95 ms | p99 ms | errors | RPS at {load} | p95 ms at {load} | p99 ms at {load} | server RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, full, half, rss in rows:
        share = 100 * full["rps"] / hello_rps if hello_rps else float("nan")
        lines.append(
            f"| {label} | {full['rps']:.0f} | {share:.0f}% | {full['p50_ms']:.2f} | {full['p95_ms']:.2f} | "
            f"{full['p99_ms']:.2f} | {full['errors']:.0f} | {half['rps']:.0f} | {half['p95_ms']:.2f} | "
            f"{half['p99_ms']:.2f} | {rss:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    write_report(args.output, text)


def _has_scaling() -> bool:
    return (REPO / "forecaster/api/routes/scaling.py").is_file()


if __name__ == "__main__":
    main()
