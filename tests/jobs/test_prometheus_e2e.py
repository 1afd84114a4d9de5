"""End to end on real services: a real Prometheus (backfilled from a real trace), the
store on SQLite and PostgreSQL, MLflow, and the API over HTTP on loopback.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import uvicorn

from forecaster.api.app import create_app
from forecaster.jobs.context import JobContext
from forecaster.jobs.runner import run_ingest, run_publish, run_train
from forecaster.timeseries import read_series_csv, to_grid
from tests.support.promserver import free_port, running_prometheus, shift_to_end_at, utc_now_floor

pytestmark = pytest.mark.integration
STEP = timedelta(minutes=5)


def _trace(nab: Path, name: str, scale: float = 1.0) -> pd.Series:
    series = to_grid(read_series_csv(nab / name), STEP).dropna() * scale
    return shift_to_end_at(series, utc_now_floor(300) - STEP)


@pytest.fixture
def prometheus(tmp_path: Path, nab: Path) -> Any:
    elb = _trace(nab, "realAWSCloudwatch/elb_request_count_8c0756.csv")
    series = {
        'http_requests_rate{service="checkout"}': elb,
        'route_rate{service="shop",route="/cart"}': elb * 0.3,
        'route_rate{service="shop",route="/pay"}': elb * 0.7,
    }
    with running_prometheus(tmp_path / "prom", series) as server:
        yield server


class _Server(threading.Thread):
    def __init__(self, app: Any, port: int) -> None:
        super().__init__(daemon=True)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )

    def run(self) -> None:
        self.server.run()


def test_prometheus_to_forecast_over_http(
    prometheus: Any, make_settings: Any, db_url: str, write_spec: Any, tmp_path: Path
) -> None:
    spec = write_spec(
        tmp_path / "spec.yaml",
        [
            {"name": "checkout_rps", "query": 'sum(http_requests_rate{service="checkout"})'},
            {
                "name": "shop_by_route",
                "query": 'sum by (route) (route_rate{service="shop"})',
                "split_by": ["route"],
            },
        ],
        step="5m",
        history="7d",
        horizon="2h",
        estimators=["seasonal_naive", "lightgbm"],
    )
    settings = make_settings(
        db=db_url, spec=spec, prometheus={"url": prometheus.url, "max_points_per_query": 1000}
    )
    ctx = JobContext.create(settings)
    try:
        specs = ctx.select(None)
        ingested = run_ingest(ctx, specs)
        assert ingested.ok, ingested.errors
        names = sorted(i.name for i in ctx.store.list_series())
        assert names == [
            "checkout_rps",
            'shop_by_route{route="/cart"}',
            'shop_by_route{route="/pay"}',
        ]
        # 7 days at 5 minutes, fetched in chunks of 1000 points.
        assert ctx.store.count_observations("checkout_rps") >= 7 * 288 - 2
        assert ctx.store.series('shop_by_route{route="/pay"}').labels == {"route": "/pay"}
        again = run_ingest(ctx, specs)
        assert again.ok
        assert ctx.store.count_observations("checkout_rps") <= 7 * 288 + 2

        trained = run_train(ctx, specs)
        assert trained.ok, trained.errors
        assert len(trained.results) == 3
        published = run_publish(ctx, specs)
        assert published.ok, published.errors

        port = free_port()
        server = _Server(create_app(settings), port)
        server.start()
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                threading.Event().wait(0.1)
            listed = httpx.get(f"{base}/v1/series", timeout=5).json()
            assert len(listed) == 3 and all(s["champion"] for s in listed)
            member = httpx.get(
                f'{base}/v1/series/shop_by_route{{route="/pay"}}/forecast',
                params={"horizon": "1h"},
                timeout=5,
            )
            assert member.status_code == 200, member.text
            body = member.json()
            assert body["series"] == 'shop_by_route{route="/pay"}'
            assert len(body["points"]) >= 11
            pay = [p["yhat"] for p in body["points"]]
            cart = httpx.get(
                f'{base}/v1/series/shop_by_route{{route="/cart"}}/forecast',
                params={"horizon": "1h"},
                timeout=5,
            ).json()
            # Two members forecast separately: /pay carries 7/3 of /cart's load.
            ratio = sum(pay) / max(1e-9, sum(p["yhat"] for p in cart["points"]))
            assert 1.5 < ratio < 3.5
        finally:
            server.server.should_exit = True
            server.join(timeout=10)
    finally:
        ctx.store.engine.dispose()


def test_query_returning_two_series_is_refused_and_nothing_written(
    prometheus: Any, make_settings: Any, write_spec: Any, tmp_path: Path
) -> None:
    spec = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "oops", "query": 'route_rate{service="shop"}'}],
        history="1d",
        horizon="1h",
    )
    settings = make_settings(spec=spec, prometheus={"url": prometheus.url})
    ctx = JobContext.create(settings)
    try:
        summary = run_ingest(ctx, ctx.select(None))
        assert not summary.ok
        message = summary.errors["oops"]
        assert 'route_rate{service="shop"}' in message
        assert "/cart" in message and "/pay" in message
        assert ctx.store.list_series() == []
    finally:
        ctx.store.engine.dispose()
