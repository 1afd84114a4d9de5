"""Dashboard page, static assets and data endpoint over a seeded store (no browser)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, text

from forecaster.api.app import create_app
from forecaster.store.repository import Store
from forecaster.store.tables import UTCDateTime
from tests.support.dashboard_seed import SERIES, STEP, make_engine_for, seed_dashboard_store


@pytest.fixture
def settings(make_settings: Any, db_url: str) -> Any:
    settings = make_settings(db=db_url)
    seed_dashboard_store(db_url)
    return settings


@pytest.fixture
def client(settings: Any) -> Any:
    with TestClient(create_app(settings, refresh_seconds=3600)) as c:
        yield c


def test_page_and_vendored_assets_are_served_locally(client: TestClient) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "dashboard/static/vendor/uPlot.iife.min.js" in html
    assert "http://" not in html and "https://" not in html  # nothing from a CDN
    script = client.get("/dashboard/static/vendor/uPlot.iife.min.js")
    assert script.status_code == 200 and "uplot@1.6.32" in script.text[:200]
    for asset in ("dashboard.js", "dashboard.css", "vendor/uPlot.min.css"):
        assert client.get(f"/dashboard/static/{asset}").status_code == 200, asset


def test_data_has_actuals_forecast_band_earlier_forecasts_and_champion(
    client: TestClient,
) -> None:
    body = client.get(f"/v1/dashboard/{SERIES}", params={"window": "24h"}).json()
    assert body["series"] == SERIES and body["unit"] == "requests/5min"
    actual = body["actual"]
    assert 280 <= len(actual["t"]) <= 290 and len(actual["t"]) == len(actual["y"])
    assert actual["t"] == sorted(actual["t"])
    assert min(actual["t"]) >= body["now"] - 24 * 3600
    fc = body["forecast"]
    assert fc["level"] == 90.0 and fc["model"]["name"] == "lightgbm"
    assert len(fc["t"]) == 288
    assert all(
        lo <= y <= hi for lo, y, hi in zip(fc["lower"], fc["yhat"], fc["upper"], strict=True)
    )
    ref = fc["reference"]  # the detector's band, published with the current forecast
    assert len(ref["yhat"]) == len(ref["lower"]) == len(ref["upper"]) == 288
    assert ref["yhat"] == pytest.approx([y * 0.95 for y in fc["yhat"]])
    assert ref["lower"] == pytest.approx([y * 0.7 for y in fc["yhat"]])
    labels = {e["label"]: e for e in body["earlier"]}
    assert set(labels) == {"1h", "1d"}
    assert labels["1h"]["reference"] is None and labels["1d"]["reference"] is None
    # Earlier forecasts are laid over what then happened: they stop at "now".
    assert all(t <= body["now"] for t in labels["1h"]["t"])
    assert len(labels["1h"]["t"]) == 12 and len(labels["1d"]["t"]) >= 280
    assert labels["1d"]["generated_at"] < labels["1h"]["generated_at"] < fc["generated_at"]
    assert body["champion"]["estimator"] == "lightgbm" and body["champion"]["version"] == "2"
    latest = body["trainings"][0]
    assert latest["run_id"] == "run-new" and latest["promoted"] is True
    assert latest["scores"]["prophet"]["mase"] == pytest.approx(0.82)
    assert body["regressions"] == []  # no regression_events table yet: tolerated
    assert body["replicas"] is None


def test_window_and_unknown_series(client: TestClient) -> None:
    short = client.get(f"/v1/dashboard/{SERIES}", params={"window": "6h"}).json()
    assert 70 <= len(short["actual"]["t"]) <= 74
    assert client.get("/v1/dashboard/nope").status_code == 404
    empty = client.get("/v1/dashboard/no_forecast_yet").json()
    assert empty["forecast"] is None and empty["earlier"] == [] and empty["champion"] is None
    for bad in ("forever", "30d", "1m"):
        response = client.get(f"/v1/dashboard/{SERIES}", params={"window": bad})
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["loc"] == ["query", "window"]


# The shape of the regression detector's table (migration 0002); created here only when
# the migrations in this tree do not create it, so the test runs before and after it lands.
_events = Table(
    "regression_events",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("series_id", Integer, nullable=False),
    Column("start", UTCDateTime, nullable=False),
    Column("end", UTCDateTime, nullable=True),
    Column("peak_score", Float, nullable=False),
    Column("direction", String(8), nullable=False),
    Column("model", String(240), nullable=False),
    Column("detected_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("closed_reason", String(300), nullable=True),  # migration 0008
)


def test_regression_events_are_shown_when_the_table_exists(settings: Any) -> None:
    engine = make_engine_for(settings.database.url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS regression_events"))
    with TestClient(create_app(settings, refresh_seconds=3600)) as c:
        body = c.get(f"/v1/dashboard/{SERIES}").json()
    assert body["regressions"] == [] and body["actual"]["t"]  # absent table: tolerated
    try:
        store = Store(engine)
        series_id = store.series(SERIES).id
        other_id = store.series("no_forecast_yet").id
        _events.metadata.create_all(engine, checkfirst=True)
        rows = [
            (series_id, now - timedelta(hours=5), now - timedelta(hours=4), 3.5),
            (series_id, now - timedelta(minutes=30), None, 1.7),
            (series_id, now - timedelta(days=3), now - timedelta(days=3) + STEP, 9.0),
            (other_id, now - timedelta(hours=2), None, 2.0),
        ]
        with engine.begin() as conn:
            conn.execute(
                _events.insert(),
                [
                    {
                        "series_id": sid,
                        "start": start,
                        "end": end,
                        "peak_score": score,
                        "direction": "up",
                        "model": "lightgbm v2",
                        "detected_at": start,
                        "updated_at": now,
                        # an event closed because its series stopped being watched
                        "closed_reason": "no longer watched: retired" if score == 3.5 else None,
                    }
                    for sid, start, end, score in rows
                ],
            )
    finally:
        engine.dispose()
    with TestClient(create_app(settings, refresh_seconds=3600)) as c:
        events = c.get(f"/v1/dashboard/{SERIES}", params={"window": "24h"}).json()["regressions"]
    assert [e["score"] for e in events] == [3.5, 1.7]
    assert events[1]["end"] is None and events[0]["direction"] == "up"
    assert [e["closed_reason"] for e in events] == ["no longer watched: retired", None]
    assert events[0]["start"] == pytest.approx((now - timedelta(hours=5)).timestamp(), abs=1)


def test_data_endpoint_respects_read_tokens(make_settings: Any, tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'tok.db'}"
    seed_dashboard_store(url)
    settings = make_settings(db=url, api={"token": "a-real-token", "require_token_for_reads": True})
    with TestClient(create_app(settings, refresh_seconds=3600)) as c:
        assert c.get("/dashboard").status_code == 200  # the page itself holds no data
        assert c.get(f"/v1/dashboard/{SERIES}").status_code == 401
        ok = c.get(f"/v1/dashboard/{SERIES}", headers={"Authorization": "Bearer a-real-token"})
        assert ok.status_code == 200


def test_replica_plan_when_a_target_is_given(client: TestClient) -> None:
    params = {"window": "6h", "target_per_replica": 50, "quantile": 0.9, "lead_time": "10m"}
    body = client.get(f"/v1/dashboard/{SERIES}", params=params).json()
    plan = body["replicas"]
    fc = body["forecast"]
    assert plan["t"] == fc["t"] and plan["lead_time_seconds"] == 600
    # q0.9 lies between yhat and the 95% end of the 90% interval; the plan covers the
    # next 10 minutes (this step and the two after it).
    for i in range(len(plan["t"]) - 2):
        window_upper = max(fc["upper"][i : i + 3])
        window_mid = max(fc["yhat"][i : i + 3])
        assert window_mid <= plan["load"][i] <= window_upper
        assert plan["replicas"][i] == max(1, -(-plan["load"][i] // 50))
    bad = client.get(f"/v1/dashboard/{SERIES}", params={**params, "quantile": 0.99})
    assert bad.status_code == 422 and "quantile" in str(bad.json()["detail"])
    assert (
        client.get(f"/v1/dashboard/{SERIES}", params={"target_per_replica": -1}).status_code == 422
    )
    # not finite: a 422 like /v1/scaling's, not a plan of 1 replica with a null target
    infinite = client.get(f"/v1/dashboard/{SERIES}", params={"target_per_replica": "inf"})
    assert infinite.status_code == 422 and "target_per_replica" in infinite.text
    tiny = client.get(f"/v1/dashboard/{SERIES}", params={**params, "target_per_replica": 1e-320})
    assert tiny.status_code == 200, tiny.text
    assert set(tiny.json()["replicas"]["replicas"]) == {2**31 - 1}
