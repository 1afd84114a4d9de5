"""The compose stack's demo service: replay logic, and a real Prometheus scraping it."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.promscrape import scraping_prometheus, wait_for_query
from tests.support.promserver import free_port

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "deploy" / "demo_service" / "app.py"


def _load_app() -> ModuleType:
    """Import deploy/demo_service/app.py (not part of the package) by its path."""
    name = "demo_service_app"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _replay(nab: Path, **kwargs: Any) -> Any:
    app = _load_app()
    return app.Replay(
        load=app.read_values(nab / app.LOAD_TRACE),
        latency_ms=app.read_values(nab / app.LATENCY_TRACE),
        **kwargs,
    )


def test_replay_follows_the_trace_and_the_clock(nab: Path) -> None:
    replay = _replay(nab, scale=2.0)
    step = 300.0
    t0 = 1_700_000_000.0 - 1_700_000_000.0 % (len(replay.load) * step)  # trace start
    assert replay.index_at(t0) == 0
    assert replay.index_at(t0 + 3 * step + 10) == 3
    assert replay.index_at(t0 + len(replay.load) * step) == 0  # wraps around
    assert replay.rate_at(t0 + 3 * step) == pytest.approx(replay.load[3] / step * 2.0)
    # Over one trace step the handled requests match the trace's count (times scale).
    handled = sum(replay.tick(t0 + 3 * step + s, 1.0) for s in range(300))
    assert abs(handled - replay.load[3] * 2.0) <= 1


def test_replay_exports_counter_and_latency_histogram(nab: Path) -> None:
    replay = _replay(nab, scale=50.0)
    wall = 1_700_000_000.0
    count = replay.tick(wall, 60.0)
    assert count > 0
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(replay.registry).decode())
    }
    assert families["http_requests"].type == "counter"
    total = sum(s.value for s in families["http_requests"].samples if s.name.endswith("_total"))
    assert total == count
    hist = families["http_request_duration_seconds"]
    assert hist.type == "histogram"
    counts = {s.labels["route"]: s.value for s in hist.samples if s.name.endswith("_count")}
    assert set(counts) == {"/cart", "/checkout", "/payment"}
    assert sum(counts.values()) == count and counts["/cart"] > counts["/payment"]
    base = replay.latency_ms[replay.index_at(wall)] / 1000.0
    mean = sum(s.value for s in hist.samples if s.name.endswith("_sum")) / count
    assert 0.7 * base < mean < 1.4 * base


@pytest.fixture
def demo_service(tmp_path: Path, nab: Path) -> Iterator[str]:
    """The demo service as a real process on a free loopback port; yields ``host:port``."""
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [
                sys.executable,
                str(APP),
                "--trace-dir",
                str(nab),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--scale",
                "500",
                "--interval",
                "0.2",
            ],
            env={**os.environ},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    target = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://{target}/metrics", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"demo service not up:\n{log.read_text()}"
            time.sleep(0.1)
        yield target
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.returncode == 0, log.read_text()


@pytest.mark.integration
def test_real_prometheus_scrapes_the_demo_service(
    demo_service: str, tmp_path: Path, nab: Path
) -> None:
    with scraping_prometheus(tmp_path, {"demo": [demo_service]}) as prom:
        wait_for_query(prom.url, 'up{job="demo"}', lambda r: bool(r) and r[0]["value"][1] == "1")
        result = wait_for_query(
            prom.url,
            # the query pipelines/prometheus.example.yaml forecasts (window shortened)
            'sum(rate(http_requests_total{service="checkout"}[1m]))',
            lambda r: bool(r) and float(r[0]["value"][1]) > 0,
        )
        assert float(result[0]["value"][1]) > 0
        # The counter's first minute makes rate(...[1m]) ramp up; a short window settles
        # within seconds on the trace's rate (flat within a 5-minute trace step).
        expected = _replay(nab, scale=500.0).rate_at(time.time())
        wait_for_query(
            prom.url,
            "sum(rate(http_requests_total[5s]))",
            lambda r: bool(r) and expected / 2 <= float(r[0]["value"][1]) <= expected * 2,
            timeout=30,
        )
        p90 = wait_for_query(
            prom.url,
            "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[1m])))",
            lambda r: bool(r) and r[0]["value"][1] not in ("NaN", "+Inf"),
        )
        assert 0.005 < float(p90[0]["value"][1]) < 2.5


@pytest.mark.integration
def test_grafana_queries_run_on_prometheus_scraping_the_stack(
    demo_service: str, tmp_path: Path
) -> None:
    """The compose wiring on loopback: Prometheus scrapes the API and the demo service,
    and every Grafana panel query evaluates without error."""
    from tests.support.dashboard_seed import SERIES, running_api
    from tests.support.promscrape import instant_query
    from tests.test_compose import _panel_queries

    api = tmp_path / "api"
    api.mkdir()
    with running_api(api, free_port()) as base:
        target = base.removeprefix("http://")
        jobs = {"forecaster": [target], "selected": [target], "demo": [demo_service]}
        params = {"selected": {"series": [SERIES, "typo"]}}
        with scraping_prometheus(tmp_path, jobs, params=params) as prom:
            wait_for_query(
                prom.url,
                f'forecaster_forecast{{series="{SERIES}", quantile="0.5", horizon="1h"}}',
                bool,
            )
            wait_for_query(
                prom.url, 'forecaster_job_runs_total{stage="publish", outcome="ok"}', bool
            )
            wait_for_query(prom.url, "sum(rate(http_requests_total[1m])) > 0", bool)
            # a scrape job asking for some series (/metrics?series=...)
            unknown = wait_for_query(
                prom.url, 'forecaster_metrics_unknown_series{job="selected"}', bool
            )
            assert [r["metric"]["series"] for r in unknown] == ["typo"]
            selected = instant_query(
                prom.url, 'count by (series) (forecaster_forecast{job="selected"})'
            )
            assert [r["metric"]["series"] for r in selected] == [SERIES]
            assert not instant_query(
                prom.url, 'forecaster_metrics_unknown_series{job="forecaster"}'
            )
            for title, expr in _panel_queries():
                expr = expr.replace("checkout_rps", SERIES)
                instant_query(prom.url, expr)  # raises on a query error
                assert title


def _only_job(expr: str, job: str) -> str:
    """``expr`` with every ``forecaster_*`` selector restricted to scrape job ``job``."""
    return re.sub(
        r"\b(forecaster_[a-z_]+)(\{)?",
        lambda m: f'{m.group(1)}{{job="{job}"' + (", " if m.group(2) else "}"),
        expr,
    )


@pytest.mark.integration
def test_grafana_panels_count_an_api_scraped_twice_once(tmp_path: Path) -> None:
    """Each API replica, and each scrape job reading its /metrics (the KEDA README's
    ``forecaster-scaling`` job), exports the same forecasts and pipeline totals: a
    panel that summed the targets showed twice the prediction (outside its own band),
    twice the errors and the points ingested."""
    from forecaster.store.repository import Store
    from tests.support.dashboard_seed import SERIES, make_engine_for, running_api
    from tests.support.promscrape import instant_query
    from tests.test_compose import _panel_queries

    api = tmp_path / "api"
    api.mkdir()
    with running_api(api, free_port()) as base:
        target = base.removeprefix("http://")
        jobs = {"forecaster": [target], "forecaster-scaling": [target]}
        params = {"forecaster-scaling": {"series": [SERIES]}}
        with scraping_prometheus(tmp_path, jobs, params=params) as prom:
            # runs recorded after the API's first read of them move its counters
            wait_for_query(prom.url, "forecaster_job_stats_ok == 1", bool)
            engine = make_engine_for(f"sqlite:///{api / 'store.db'}")
            store = Store(engine)
            now = datetime.now(UTC)
            for job, ok, detail in (
                ("ingest", True, json.dumps({"points": 12})),
                ("publish", False, "boom"),
            ):
                store.record_job_run(
                    job=job, series=SERIES, started_at=now, finished_at=now, ok=ok, detail=detail
                )
            engine.dispose()
            for job in jobs:
                for counter in ("points_ingested_total", "job_errors_total"):
                    wait_for_query(prom.url, f'forecaster_{counter}{{job="{job}"}} > 0', bool)
            time.sleep(2)  # a few more scrapes of the new totals by both jobs
            at = time.time()
            compared = 0
            for title, expr in _panel_queries(SERIES):
                if "forecaster_" not in expr or title == "API health":
                    continue  # API health is per target on purpose
                expr = expr.replace(" offset 1h", "")  # Prometheus has minutes of data
                got = _values(instant_query(prom.url, expr, at=at))
                one = _values(instant_query(prom.url, _only_job(expr, "forecaster"), at=at))
                assert got.keys() == one.keys(), (title, expr, got, one)
                for key, value in one.items():
                    if math.isnan(value):  # a histogram of a stage without runs
                        assert math.isnan(got[key]), (title, expr)
                        continue
                    assert got[key] == pytest.approx(value, rel=0.25, abs=1e-6), (title, expr)
                    compared += 1
            assert compared >= 8


def _values(result: list[dict[str, Any]]) -> dict[tuple[tuple[str, str], ...], float]:
    """An instant query's samples by label set (``job`` and ``instance`` left out)."""
    return {
        tuple(
            sorted((k, v) for k, v in r["metric"].items() if k not in ("job", "instance"))
        ): float(r["value"][1])
        for r in result
    }
