"""Soak benchmark: mixed reads at a steady rate while the scheduler ingests and publishes.

Starts the real scheduler (the demo's replayed NAB traces, publishing every 10 s)
and the real API on loopback, then drives a mix of forecast, scaling, history,
series-list and metrics reads with wrk at a fixed rate for ``--minutes`` (default
10). Samples the API's RSS every 10 s and reports errors, latency percentiles and
RSS drift (first vs last minute).

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--rate 500] [--server granian|uvicorn]

Needs Debian's `wrk`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks.serving import free_port, rss_mb, start_server
from forecaster.outputs import write_report

REPO = Path(__file__).resolve().parents[1]
LUA = """
local paths = {
  "/v1/series/tweets_aapl/forecast?horizon=15m",
  "/v1/series/elb_requests/forecast?horizon=1h",
  "/v1/scaling/tweets_aapl?target_per_replica=10&lead_time=10m",
  "/v1/series/ec2_latency/history?since=-1h",
  "/v1/series",
  "/metrics",
}
local i = 0
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "0")
function delay() return delay_ms end
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
local non2xx = 0
response = function(status, headers, body)
  if status ~= 200 then non2xx = non2xx + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"errors\\": %d, "
    .. "\\"status_errors\\": %d, \\"p50\\": %d, \\"p95\\": %d, \\"p99\\": %d, \\"max\\": %d}\\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout, summary.errors.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""
SPEC = """
version: 1
defaults: {{step: 5m, history: 14d, horizon: 6h, estimators: [seasonal_naive, lightgbm],
           schedule: {{publish: 10s, ingest: 30s}}}}
series:
  - {{name: elb_requests, file: {repo}/data/nab/realAWSCloudwatch/elb_request_count_8c0756.csv}}
  - {{name: tweets_aapl, file: {repo}/data/nab/realTweets/Twitter_volume_AAPL.csv}}
  - {{name: ec2_latency, file: {repo}/data/nab/realKnownCause/ec2_request_latency_system_failure.csv, kind: latency, unit: ms}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=500.0, help="target requests per second")
    parser.add_argument(
        "--server",
        choices=["granian", "uvicorn"],
        default="granian",
        help="ASGI server for the API (default granian, as forecaster serve)",
    )
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/soak.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        spec = tmp / "soak.yaml"
        spec.write_text(SPEC.format(repo=REPO))
        env = {
            **os.environ,
            "FORECASTER_PIPELINES": str(spec),
            "FORECASTER_DATABASE__URL": f"sqlite:///{tmp}/soak.db",
            "FORECASTER_MLFLOW__TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
            "FORECASTER_MLFLOW__ARTIFACT_LOCATION": str(tmp / "artifacts"),
        }
        cli = [sys.executable, "-m", "forecaster"]
        print("preparing: ingest, train, publish ...", flush=True)
        for step in ("ingest", "train", "publish"):
            subprocess.run([*cli, step], env=env, cwd=tmp, check=True, capture_output=True)
        port = free_port()
        with (tmp / "scheduler.log").open("wb") as log:
            scheduler = subprocess.Popen(
                [*cli, "scheduler"], env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            with (tmp / "api.log").open("wb") as log:
                api = start_server("forecaster.api.asgi:app", port, env, args.server, 1, log=log)
        except BaseException:
            scheduler.terminate()
            raise
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            lua = tmp / "mix.lua"
            lua.write_text(LUA)
            samples: list[tuple[float, float]] = []
            stop = threading.Event()

            def sample() -> None:
                start = time.monotonic()
                while not stop.wait(10):
                    samples.append((time.monotonic() - start, rss_mb(api.pid)))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            publications_before = _publications(tmp / "soak.db")
            connections = 8
            delay = int(1000 * connections / args.rate)
            seconds = int(args.minutes * 60)
            print(f"soaking for {seconds}s at ~{args.rate:.0f} req/s ...", flush=True)
            out = subprocess.run(
                [
                    "wrk",
                    "-t1",
                    f"-c{connections}",
                    f"-d{seconds}s",
                    "--timeout",
                    "5s",
                    "-s",
                    str(lua),
                    base,
                ],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "WRK_DELAY_MS": str(delay)},
            ).stdout
            stop.set()
            sampler.join()
            publications = _publications(tmp / "soak.db") - publications_before
        finally:
            api.send_signal(signal.SIGTERM)
            scheduler.send_signal(signal.SIGTERM)
            api.wait(timeout=30)
            scheduler.wait(timeout=30)
    data = json.loads(next(x for x in out.splitlines() if x.startswith("JSON "))[5:])
    duration = data["duration_us"] / 1e6
    first = [r for t, r in samples if t <= 60] or [samples[0][1]]
    last = [r for t, r in samples if t >= samples[-1][0] - 60]
    drift = 100 * (sum(last) / len(last) - sum(first) / len(first)) / (sum(first) / len(first))
    text = (
        f"Soak: {args.minutes:g} min of mixed reads (forecast, scaling, history, series list, /metrics) "
        f"at ~{args.rate:.0f} req/s on loopback (API on {args.server}, 1 worker) while the scheduler ingested every 30 s and published "
        f"every 10 s ({publications} publications during the run); 2 cores shared by everything.\n\n"
        "| requests | achieved req/s | errors (socket + non-2xx) | p50 ms | p95 ms | p99 ms | max ms | API RSS first min MB | API RSS last min MB | drift |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
        f"| {data['requests']} | {data['requests'] / duration:.0f} | {data['errors']} | {data['p50'] / 1000:.2f} | "
        f"{data['p95'] / 1000:.2f} | {data['p99'] / 1000:.2f} | {data['max'] / 1000:.1f} | "
        f"{sum(first) / len(first):.0f} | {sum(last) / len(last):.0f} | {drift:+.1f}% |\n"
    )
    write_report(args.output, text)


def _publications(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT coalesce(max(id), 0) FROM publications").fetchone()[0])


if __name__ == "__main__":
    main()
