"""A demo microservice that replays a real load trace as Prometheus metrics.

It serves no real traffic: it pretends to. Each second it "handles" as many requests
as a real request-count trace says (NAB ``elb_request_count_8c0756.csv``: ELB
requests per 5 minutes, spread evenly over the 5 minutes, times ``--scale``) and
observes each one's latency from a real latency trace (NAB
``ec2_request_latency_system_failure.csv``, milliseconds) with a little seeded
jitter. The trace position follows the wall clock (``--speed`` trace seconds per
second, wrapping around the trace), so every replica and restart agrees on where it is.

Exported on ``/metrics`` (any path, port ``--port``):

* ``http_requests_total{service, route, code}``: counter of handled requests, split
  over three routes (60/30/10 %); ``service`` is ``--service`` (default ``checkout``,
  the service ``pipelines/prometheus.example.yaml`` forecasts).
* ``http_request_duration_seconds{service, route}``: latency histogram.
* ``demo_trace_position_seconds``: where in the trace the replay is.

Only the standard library and ``prometheus_client`` are needed, so the image stays tiny:
``python app.py --trace-dir /data/nab --port 8080``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("demo_service")

LOAD_TRACE = "realAWSCloudwatch/elb_request_count_8c0756.csv"
LATENCY_TRACE = "realKnownCause/ec2_request_latency_system_failure.csv"
TRACE_STEP_SECONDS = 300.0
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
ROUTES = (("/cart", 0.6), ("/checkout", 0.3), ("/payment", 0.1))
"""Routes and their share of the requests."""


def read_values(path: Path) -> list[float]:
    """The ``value`` column of a NAB CSV (``timestamp,value``), in file order."""
    with path.open(newline="") as handle:
        values = [float(row["value"]) for row in csv.DictReader(handle)]
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"{path}: expected non-negative finite values")
    return values


@dataclass
class Replay:
    """Replays a request-count trace and a latency trace into Prometheus metrics.

    Args:
        load: Requests per trace step (5 minutes), in order.
        latency_ms: Latency per trace step in milliseconds (cycled if shorter).
        scale: Multiplier on the request rate.
        speed: Trace seconds replayed per wall-clock second.
        service: Value of the ``service`` label.
        seed: Seed of the route choice and latency jitter.
    """

    load: list[float]
    latency_ms: list[float]
    scale: float = 1.0
    speed: float = 1.0
    service: str = "checkout"
    seed: int = 7

    def __post_init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "Requests handled (replayed from a real trace)",
            ["service", "route", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Request latency in seconds (replayed from a real trace)",
            ["service", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.position = Gauge(
            "demo_trace_position_seconds",
            "Position of the replay in the trace, in trace seconds",
            registry=self.registry,
        )
        self._random = random.Random(self.seed)
        self._carry = 0.0

    def index_at(self, wall: float) -> int:
        """The trace step played at Unix time ``wall``."""
        trace_seconds = (wall * self.speed) % (len(self.load) * TRACE_STEP_SECONDS)
        self.position.set(trace_seconds)
        return int(trace_seconds // TRACE_STEP_SECONDS)

    def rate_at(self, wall: float) -> float:
        """Requests per second at Unix time ``wall``."""
        return self.load[self.index_at(wall)] / TRACE_STEP_SECONDS * self.scale * self.speed

    def tick(self, wall: float, seconds: float) -> int:
        """Handle the requests of ``seconds`` ending at ``wall``; returns how many."""
        index = self.index_at(wall)
        expected = self.rate_at(wall) * seconds + self._carry
        count = int(expected)
        self._carry = expected - count
        base = self.latency_ms[index % len(self.latency_ms)] / 1000.0
        for _ in range(count):
            route = self._route()
            errored = self._random.random() < 0.002
            self.requests.labels(self.service, route, "500" if errored else "200").inc()
            jitter = self._random.lognormvariate(0.0, 0.15)
            self.duration.labels(self.service, route).observe(base * jitter)
        return count

    def _route(self) -> str:
        draw = self._random.random()
        for route, share in ROUTES:
            if draw < share:
                return route
            draw -= share
        return ROUTES[-1][0]


def run(replay: Replay, *, host: str, port: int, interval: float, stop: threading.Event) -> None:
    """Serve ``/metrics`` on ``host:port`` and tick every ``interval`` seconds until ``stop``."""
    server, thread = start_http_server(port, addr=host, registry=replay.registry)
    log.info("demo service on http://%s:%d/metrics", host, port)
    for route, _share in ROUTES:  # exported from the first scrape on
        replay.requests.labels(replay.service, route, "200")
    last = time.time()
    try:
        while not stop.wait(interval):
            now = time.time()
            replay.tick(now, now - last)
            last = now
    finally:
        server.shutdown()
        thread.join(timeout=5)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace-dir", type=Path, default=Path("/data/nab"))
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--scale", type=float, default=1.0, help="request rate multiplier")
    parser.add_argument("--speed", type=float, default=1.0, help="trace seconds per second")
    parser.add_argument("--service", default="checkout", help="value of the service label")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between ticks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    replay = Replay(
        load=read_values(args.trace_dir / LOAD_TRACE),
        latency_ms=read_values(args.trace_dir / LATENCY_TRACE),
        scale=args.scale,
        speed=args.speed,
        service=args.service,
    )
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run(replay, host=args.host, port=args.port, interval=args.interval, stop=stop)


if __name__ == "__main__":
    main()
