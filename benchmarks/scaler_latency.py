"""GetMetrics latency of the KEDA external scaler with 500 ScaledObjects polling concurrently.

Seeds a SQLite store with 50 series and fresh forecasts, starts ``forecaster scaler``
in its own process on loopback, then runs 500 distinct ScaledObjects (different
names, series, lead times and quantiles) from one asyncio gRPC client:

* ``steady``: every object polls GetMetrics every ``--interval`` seconds (KEDA's
  default is 30 s; 1 s is 30x that load) with a random phase;
* ``burst``: all 500 objects call at the same instant, ``--bursts`` times.

Reports p50/p90/p99/max client-observed latency in milliseconds. Not part of the
test suite; run ``python benchmarks/scaler_latency.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from grpc import aio

from forecaster.scaler import externalscaler_pb2 as pb2
from forecaster.scaler import externalscaler_pb2_grpc as pb2_grpc
from forecaster.store.db import make_engine, upgrade
from forecaster.store.repository import ForecastPoint, Store

SERIES = 50
OBJECTS = 500
STEP = timedelta(minutes=1)


def seed(url: str) -> None:
    from forecaster.config import load_settings

    engine = make_engine(load_settings(database={"url": url}).database)
    upgrade(engine)
    store = Store(engine)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    for s in range(SERIES):
        name = f"svc{s:02d}_rps"
        sid = store.ensure_series(
            name=name, family="rps", unit="req/s", step_seconds=60, horizon_steps=180
        )
        store.upsert_observations(sid, [(now - i * STEP, 100.0 + s) for i in range(10)])
        store.publish_forecast(
            series=name,
            generated_at=datetime.now(UTC),
            origin=now,
            step_seconds=60,
            level=90.0,
            model_name="bench",
            model_version="1",
            run_id="bench",
            points=[
                ForecastPoint(
                    step=i,
                    ds=now + i * STEP,
                    yhat=100.0 + s + i,
                    yhat_lower=80.0 + s + i,
                    yhat_upper=130.0 + s + i,
                )
                for i in range(1, 181)
            ],
        )
    engine.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(i: int) -> pb2.GetMetricsRequest:
    ref = pb2.ScaledObjectRef(
        name=f"obj-{i}",
        namespace=f"ns-{i % 7}",
        scalerMetadata={
            "scalerAddress": "forecaster:50051",
            "series": f"svc{i % SERIES:02d}_rps",
            "targetPerReplica": str(10 + i % 13),
            "leadTime": random.choice(["2m", "5m", "10m", "30m"]),
            "quantile": random.choice(["0.5", "0.9", "0.95"]),
        },
    )
    return pb2.GetMetricsRequest(scaledObjectRef=ref, metricName=f"s0-obj-{i}")


async def steady(address: str, interval: float, duration: float) -> list[float]:
    latencies: list[float] = []
    async with aio.insecure_channel(address) as channel:
        stub = pb2_grpc.ExternalScalerStub(channel)
        await stub.GetMetrics(request(0), timeout=5)  # warm up the connection
        deadline = time.perf_counter() + duration

        async def poller(i: int) -> None:
            req = request(i)
            await asyncio.sleep(random.uniform(0, interval))
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                await stub.GetMetrics(req, timeout=5)
                latencies.append(time.perf_counter() - began)
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - began)))

        await asyncio.gather(*(poller(i) for i in range(OBJECTS)))
    return latencies


async def burst(address: str, rounds: int) -> list[float]:
    latencies: list[float] = []
    async with aio.insecure_channel(address) as channel:
        stub = pb2_grpc.ExternalScalerStub(channel)
        await stub.GetMetrics(request(0), timeout=5)
        requests = [request(i) for i in range(OBJECTS)]

        async def one(req: pb2.GetMetricsRequest) -> None:
            began = time.perf_counter()
            await stub.GetMetrics(req, timeout=10)
            latencies.append(time.perf_counter() - began)

        for _ in range(rounds):
            await asyncio.gather(*(one(r) for r in requests))
            await asyncio.sleep(0.5)
    return latencies


def summary(name: str, latencies: list[float]) -> str:
    ms = sorted(1000 * v for v in latencies)
    q = statistics.quantiles(ms, n=100)
    return (
        f"{name:7} n={len(ms):6d}  p50={q[49]:6.2f} ms  p90={q[89]:6.2f} ms  "
        f"p99={q[98]:6.2f} ms  max={ms[-1]:7.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=1.0, help="steady poll interval (s)")
    parser.add_argument("--duration", type=float, default=20.0, help="steady run length (s)")
    parser.add_argument("--bursts", type=int, default=10, help="burst rounds of 500 calls")
    args = parser.parse_args()
    random.seed(1)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        seed(url)
        port = free_port()
        env = {**os.environ, "FORECASTER_DATABASE__URL": url, "FORECASTER_LOG_LEVEL": "WARNING"}
        server = subprocess.Popen(
            [sys.executable, "-m", "forecaster", "scaler", "--port", str(port)],
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
        )
        try:
            address = f"127.0.0.1:{port}"
            with grpc.insecure_channel(address) as channel:
                grpc.channel_ready_future(channel).result(timeout=30)
                stub = pb2_grpc.ExternalScalerStub(channel)
                for _ in range(100):  # wait for the view's first load
                    try:
                        stub.GetMetrics(request(0), timeout=5)
                        break
                    except grpc.RpcError:
                        time.sleep(0.1)
            print(
                f"scaler pid {server.pid} on {address}; {os.cpu_count()} CPUs; "
                f"{OBJECTS} ScaledObjects over {SERIES} series"
            )
            print(summary("steady", asyncio.run(steady(address, args.interval, args.duration))))
            print(summary("burst", asyncio.run(burst(address, args.bursts))))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
