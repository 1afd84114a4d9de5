"""Cache-warming, circuit-breaker and regression routes over a real store, and their metrics."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient

from forecaster.api.app import create_app
from forecaster.api.routes.cache_warming import split_member_names
from forecaster.api.view import iso_utc
from forecaster.consumers.regressions import RegressionEvent, Transition
from forecaster.sources.base import member_name
from forecaster.store.consumers_repo import ConsumersRepo, ScoreRow
from forecaster.store.db import make_engine, upgrade
from forecaster.store.repository import ForecastPoint, Store

STEP = timedelta(minutes=5)


def _publish(
    store: Store,
    name: str,
    values: list[float],
    origin: datetime,
    generated_at: datetime | None = None,
    **series: Any,
) -> int:
    sid = store.ensure_series(
        name=name,
        family=series.pop("family", name),
        labels=series.pop("labels", {}),
        step_seconds=300,
        horizon_steps=len(values),
        **series,
    )
    store.publish_forecast(
        series=name,
        generated_at=generated_at or datetime.now(UTC),
        origin=origin,
        step_seconds=300,
        level=90.0,
        model_name="lightgbm",
        model_version="3",
        run_id="r1",
        points=[
            ForecastPoint(
                step=i + 1,
                ds=origin + (i + 1) * STEP,
                yhat=v,
                yhat_lower=0.8 * v,
                yhat_upper=1.2 * v,
            )
            for i, v in enumerate(values)
        ],
    )
    return sid


def _seed(settings: Any) -> None:
    engine = make_engine(settings.database)
    try:
        upgrade(engine)
        store = Store(engine)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        origin = now - timedelta(minutes=now.minute % 5)
        # a daily cycle starting at its trough: one ramp in the next 12 hours
        cycle = [200 - 100 * math.cos(2 * math.pi * i / 288) for i in range(288)]
        rps = _publish(store, "rps", cycle, origin, kind="load", unit="req/s")
        _publish(store, "lat", [250.0] * 288, origin, kind="latency", unit="ms")
        _publish(store, "odd", [1.0] * 288, origin, unit="widgets")
        for route, level in (("/a", 10.0), ("/b", 50.0), ("/c", 30.0)):
            _publish(
                store,
                f'by_route{{route="{route}"}}',
                [level] * 24,
                origin,
                family="by_route",
                labels={"route": route},
            )
        # members split by two labels: their names hold a comma
        for route, method, level in (("/a", "GET", 10.0), ("/a", "POST", 10.5)):
            labels = {"method": method, "route": route}
            _publish(
                store,
                member_name("by_call", labels),
                [level] * 24,
                origin,
                family="by_call",
                labels=labels,
            )
        store.ensure_series(name="empty", family="empty", step_seconds=300, horizon_steps=12)
        # published two hours ago (the publish job stopped), covering the next hours
        stopped = now - timedelta(hours=2)
        _publish(store, "old_lat", [250.0] * 288, origin, stopped, unit="ms")
        _publish(store, "old_rps", cycle, origin, stopped, unit="req/s")
        for route in ("/fresh", "/old"):
            _publish(
                store,
                f'mixed{{route="{route}"}}',
                [10.0] * 24,
                origin,
                stopped if route == "/old" else None,
                family="mixed",
                labels={"route": route},
            )
        repo = ConsumersRepo(store)
        old = RegressionEvent(
            start=now - timedelta(hours=5),
            end=None,
            peak_score=3.0,
            direction="up",
            model="lightgbm v3",
            detected_at=now - timedelta(hours=4, minutes=45),
        )
        repo.save_detection(
            rps,
            state={"bar": 4.25},
            open_event_id=None,
            transitions=[
                Transition("opened", old),
                Transition(
                    "closed", RegressionEvent(**{**old.__dict__, "end": now - timedelta(hours=4)})
                ),
                Transition(
                    "opened",
                    RegressionEvent(
                        **{**old.__dict__, "start": now - timedelta(minutes=20), "peak_score": 2.5}
                    ),
                ),
            ],
            scores=[
                ScoreRow(now - STEP, 400.0, 200.0, 150.0, 250.0, 2.5, 1, None, "lightgbm v3"),
                ScoreRow(now - 2 * STEP, 380.0, 200.0, 150.0, 250.0, 2.3, 1, None, "lightgbm v3"),
            ],
        )
    finally:
        engine.dispose()


@pytest.fixture
def client(make_settings: Any, db_url: str) -> Any:
    settings = make_settings(db=db_url)
    _seed(settings)
    with TestClient(create_app(settings, refresh_seconds=0.2)) as c:
        yield c


def test_cache_warming_windows(client: TestClient) -> None:
    response = client.get("/v1/cache-warming/rps", params={"within": "24h", "lead": "15m"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["series"] == "rps" and body["lead_seconds"] == 900
    (window,) = body["windows"]
    assert set(window) == {
        "warm_at",
        "ramp_start",
        "peak_at",
        "expected_peak",
        "expected_peak_upper",
        "expected_increase_ratio",
    }
    ramp_start = datetime.fromisoformat(window["ramp_start"])
    assert datetime.fromisoformat(window["warm_at"]) == ramp_start - timedelta(minutes=15)
    peak = datetime.fromisoformat(window["peak_at"])
    assert peak - ramp_start == pytest.approx(timedelta(hours=12), abs=timedelta(minutes=15))
    assert window["expected_peak"] == pytest.approx(300.0, rel=0.01)
    assert window["expected_increase_ratio"] > 1.0
    steep = client.get("/v1/cache-warming/rps", params={"min_increase": 5}).json()
    assert steep["windows"] == []


def test_cache_warming_top_k(client: TestClient) -> None:
    body = client.get("/v1/cache-warming/by_route/top", params={"k": 2, "window": "1h"}).json()
    assert [m["labels"]["route"] for m in body["members"]] == ["/b", "/c"]
    assert [m["rank"] for m in body["members"]] == [1, 2]
    assert body["members"][0]["predicted_demand"] > body["members"][1]["predicted_demand"]
    assert client.get("/v1/cache-warming/nope/top").status_code == 404
    held = ",".join(f'by_route{{route="{r}"}}' for r in ("/a", "/b"))
    sticky = client.get(
        "/v1/cache-warming/by_route/top", params={"k": 2, "current": held, "margin": 3}
    ).json()
    assert [m["labels"]["route"] for m in sticky["members"]] == ["/b", "/a"]
    loose = client.get(
        "/v1/cache-warming/by_route/top", params={"k": 2, "current": held, "margin": 1}
    ).json()
    assert [m["labels"]["route"] for m in loose["members"]] == ["/b", "/c"]


def test_top_k_window_end_is_where_the_forecasts_end(client: TestClient) -> None:
    """Members forecast for 2 hours, ranked over a 6-hour window: the answer said it
    ranked up to now + 6 h, over 4 hours no forecast covers."""
    body = client.get("/v1/cache-warming/by_route/top", params={"window": "6h"}).json()
    assert [m["labels"]["route"] for m in body["members"]] == ["/b", "/c", "/a"]
    end = datetime.fromisoformat(body["window_end"])
    assert timedelta(hours=1, minutes=54) < end - datetime.now(UTC) <= timedelta(hours=2)
    assert end.minute % 5 == 0 and end.second == 0  # the last forecast step
    covered = client.get("/v1/cache-warming/by_route/top", params={"window": "1h"}).json()
    asked = datetime.fromisoformat(covered["window_end"]) - datetime.now(UTC)
    assert timedelta(minutes=59) < asked <= timedelta(hours=1)


def test_repeated_parameters(client: TestClient) -> None:
    """``current`` may be repeated, as ``/metrics?series=`` is (``current=a&current=b``
    kept ``b`` only: the incumbent ``a`` was replaced); a parameter that takes one value
    given twice is a 422 naming it (the last one was used, the others dropped)."""
    held = [f'by_route{{route="{r}"}}' for r in ("/a", "/b")]
    params = {"k": "2", "margin": "3"}
    repeated = client.get(
        "/v1/cache-warming/by_route/top", params=[*params.items(), *(("current", h) for h in held)]
    )
    assert repeated.status_code == 200, repeated.text
    joined = client.get(
        "/v1/cache-warming/by_route/top", params={**params, "current": ",".join(held)}
    )
    routes = [m["labels"]["route"] for m in repeated.json()["members"]]
    assert routes == [m["labels"]["route"] for m in joined.json()["members"]] == ["/b", "/a"]
    for path, query, name in [
        ("/v1/circuit-breaker/rps", "latency=100ms&latency=1s", "latency"),
        ("/v1/regressions", "series=rps&series=by_route", "series"),
        ("/v1/cache-warming/rps", "lead=5m&lead=5m", "lead"),
        ("/v1/cache-warming/by_route/top", "k=1&k=3&current=x", "k"),
    ]:
        response = client.get(f"{path}?{query}")
        assert response.status_code == 422, response.text
        (detail,) = response.json()["detail"]
        assert detail["loc"] == ["query", name]
        assert detail["msg"] == f"{name!r} is given 2 times; give it once"
    metrics = client.get("/metrics?series=rps&series=lat")
    assert metrics.status_code == 200 and 'forecaster_anomaly_score{series="rps"}' in metrics.text


def test_top_k_keeps_incumbents_whose_names_hold_commas(client: TestClient) -> None:
    """A member of a family split by two labels is named ``by_call{method="GET",route="/a"}``:
    ``current`` splits between names, not at the commas inside one (the incumbent was
    dropped and replaced by a member within the margin)."""
    held = member_name("by_call", {"method": "GET", "route": "/a"})
    body = client.get(
        "/v1/cache-warming/by_call/top", params={"k": 1, "current": held, "margin": 0.1}
    ).json()
    assert [m["series"] for m in body["members"]] == [held]
    two = client.get(
        "/v1/cache-warming/by_call/top",
        params={"k": 1, "current": f' {held} ,by_route{{route="/b"}}', "margin": 0.1},
    ).json()
    assert [m["series"] for m in two["members"]] == [held]
    plain = client.get("/v1/cache-warming/by_call/top", params={"k": 1}).json()
    assert [m["labels"]["method"] for m in plain["members"]] == ["POST"]


def test_current_splits_between_member_names_only() -> None:
    odd = member_name("f", {"route": '/a,"b},c', "z": "x"})
    plain = member_name("f", {"route": "/b"})
    assert split_member_names(f"{odd},{plain}, solo ,,") == [odd, plain, "solo"]


def test_circuit_breaker_littles_law(client: TestClient) -> None:
    response = client.get(
        "/v1/circuit-breaker/rps", params={"latency_series": "lat", "window": "30m"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    basis = body["basis"]
    rate, latency = basis["rate_per_second_upper"], basis["latency_seconds_upper"]
    assert latency == pytest.approx(0.3)  # 1.2 x 250 ms
    assert body["max_requests"] == math.ceil(1.5 * rate * latency - 1e-9)
    assert body["timeout_ms"] == 900
    assert body["max_pending_requests"] == math.ceil(rate * 0.6 - 1e-9)
    assert datetime.fromisoformat(body["valid_until"]) > datetime.fromisoformat(body["valid_from"])
    envoy = client.get(
        "/v1/circuit-breaker/rps", params={"latency_series": "lat", "format": "envoy"}
    ).json()
    (threshold,) = envoy["cluster"]["circuit_breakers"]["thresholds"]
    assert threshold["max_requests"] >= 1 and envoy["route"]["timeout"].endswith("s")
    fixed = client.get("/v1/circuit-breaker/rps", params={"latency": "100ms"}).json()
    assert fixed["timeout_ms"] == 300


def test_circuit_breaker_overrides_that_agree_with_the_units_pass(client: TestClient) -> None:
    """``latency_unit``/``rate_per`` restating the series' own unit are fine; one that
    contradicts it is a 422 saying so (``lat`` is in ms: read as seconds, every limit
    was 1000 times too large)."""
    params = {"latency_series": "lat", "latency_unit": "ms", "rate_per": "1s"}
    agreed = client.get("/v1/circuit-breaker/rps", params=params)
    assert agreed.status_code == 200, agreed.text
    plain = client.get("/v1/circuit-breaker/rps", params={"latency_series": "lat"}).json()
    assert agreed.json()["max_requests"] == plain["max_requests"]
    wrong = client.get("/v1/circuit-breaker/rps", params={**params, "latency_unit": "s"})
    assert wrong.status_code == 422
    assert "contradicts the unit of 'lat' ('ms')" in wrong.json()["detail"][0]["msg"]


def test_circuit_breaker_window_shorter_than_a_step(client: TestClient) -> None:
    """A window between two forecast points holds none: the step it ends in sizes the
    limits (it was a 404 'does not cover the coming window (stale?)')."""
    response = client.get("/v1/circuit-breaker/rps", params={"latency": "100ms", "window": "1ms"})
    assert response.status_code == 200, response.text
    assert response.json()["max_requests"] >= 1


def test_circuit_breaker_limits_end_with_the_forecast(client: TestClient) -> None:
    """Limits sized from a forecast that ends inside the window are valid only as far as
    it reaches: a 2-hour forecast asked for 6 hours said ``valid_until`` now + 6 h, with
    the last 4 hours unseen (a rise there would overrun the limits)."""
    member = 'by_route{route="/b"}'  # 24 steps of 5 minutes
    for params in (
        {"latency": "100ms", "rate_per": "1s", "window": "6h"},
        {"latency_series": member, "latency_unit": "ms", "rate_per": "1s", "window": "6h"},
    ):
        response = client.get("/v1/circuit-breaker/rps", params=params)
        assert response.status_code == 200, response.text
        ends = datetime.fromisoformat(response.json()["valid_until"])
        if "latency_series" not in params:  # rps covers a day: the whole window
            assert ends - datetime.now(UTC) > timedelta(hours=5, minutes=59)
            assert "forecast_ends_at" not in response.json()["basis"]
        else:
            assert ends - datetime.now(UTC) < timedelta(hours=2, minutes=1)
            assert response.json()["basis"]["forecast_ends_at"] == iso_utc(ends)
        short = client.get(f"/v1/circuit-breaker/{member}", params=params).json()
        until = datetime.fromisoformat(short["valid_until"])
        assert timedelta(hours=1, minutes=54) < until - datetime.now(UTC) < timedelta(hours=2)
        assert short["basis"]["forecast_ends_at"] == iso_utc(until)
        envoy = client.get(
            f"/v1/circuit-breaker/{member}", params={**params, "format": "envoy"}
        ).json()
        assert envoy["valid_until"] == short["valid_until"]


def test_circuit_breaker_on_a_forecast_all_in_the_past_is_503(client: TestClient) -> None:
    """A series whose last forecast ended before now (publishing stopped) was a 404, the
    answer for a series that does not exist; it is a 503 saying publishing is behind,
    as for scaling, naming the series and where its forecast ends."""
    engine = make_engine(client.app.state.settings.database)  # type: ignore[attr-defined]
    try:
        made = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
        _publish(Store(engine), "gone_rps", [100.0] * 12, made, made, unit="req/s")
        _publish(Store(engine), "gone_lat", [0.2] * 12, made, made, unit="s")
    finally:
        engine.dispose()
    deadline = time.monotonic() + 10
    while "gone_lat" not in client.get("/v1/series").text and time.monotonic() < deadline:
        time.sleep(0.1)
    ends = iso_utc(made + 12 * STEP)
    for path, params, name in [
        ("/v1/circuit-breaker/gone_rps", {"latency": "100ms"}, "gone_rps"),
        ("/v1/circuit-breaker/rps", {"latency_series": "gone_lat"}, "gone_lat"),
        ("/v1/circuit-breaker/gone_rps", {"latency": "100ms", "format": "envoy"}, "gone_rps"),
    ]:
        response = client.get(path, params=params)
        assert response.status_code == 503, response.text
        detail = response.json()["detail"]
        assert f"the forecast of {name!r} ends at {ends}" in detail
        assert "publishing is behind" in detail


def test_circuit_breaker_refuses_a_negative_forecast(client: TestClient) -> None:
    """A series with negative values (a signed delta) can be forecast below zero over the
    whole window: Little's law has no answer for a negative rate or latency. A 422
    naming the series, not a 500 from the sizing's own check."""
    engine = make_engine(client.app.state.settings.database)  # type: ignore[attr-defined]
    try:
        store = Store(engine)
        now = datetime.now(UTC)
        for name, unit in (("delta_rps", "req/s"), ("delta_lat", "ms")):
            store.ensure_series(
                name=name, family=name, step_seconds=300, horizon_steps=24, unit=unit
            )
            store.publish_forecast(
                series=name,
                generated_at=now,
                origin=now - STEP,
                step_seconds=300,
                level=90.0,
                model_name="lightgbm",
                model_version="1",
                run_id="r2",
                points=[
                    ForecastPoint(
                        step=i + 1, ds=now + i * STEP, yhat=-5.0, yhat_lower=-6.0, yhat_upper=-4.0
                    )
                    for i in range(24)
                ],
            )
    finally:
        engine.dispose()
    deadline = time.monotonic() + 10
    while "delta_lat" not in client.get("/v1/series").text and time.monotonic() < deadline:
        time.sleep(0.1)
    for path, params, where in [
        ("/v1/circuit-breaker/delta_rps", {"latency": "100ms"}, ["path", "series"]),
        ("/v1/circuit-breaker/rps", {"latency_series": "delta_lat"}, ["query", "latency_series"]),
        ("/v1/circuit-breaker/delta_rps", {"latency_series": "delta_lat", "format": "envoy"}, None),
    ]:
        response = client.get(path, params=params)
        assert response.status_code == 422, response.text
        (detail,) = response.json()["detail"]
        assert "below zero" in detail["msg"] and "delta_" in detail["msg"]
        if where is not None:
            assert detail["loc"] == where


def test_answers_from_stale_forecasts_say_so(client: TestClient) -> None:
    """A forecast older than the staleness bound still answers, flagged as stale."""
    fresh = client.get("/v1/cache-warming/rps").json()
    old = client.get("/v1/cache-warming/old_rps").json()
    assert fresh["stale"] is False and old["stale"] is True
    top = client.get("/v1/cache-warming/mixed/top", params={"k": 5}).json()
    assert len(top["members"]) == 2
    assert top["stale"] == ['mixed{route="/old"}']
    assert client.get("/v1/cache-warming/by_route/top").json()["stale"] == []
    for rate, params, stale in [
        ("rps", {"latency_series": "lat"}, False),
        ("rps", {"latency_series": "old_lat"}, True),
        ("old_rps", {"latency": "100ms"}, True),
        ("old_rps", {"latency_series": "lat", "format": "envoy"}, True),
        ("rps", {"latency": "100ms", "format": "envoy"}, False),
    ]:
        body = client.get(f"/v1/circuit-breaker/{rate}", params=params).json()
        assert body["stale"] is stale, (rate, params)


def test_top_k_over_a_window_shorter_than_a_step(client: TestClient) -> None:
    """Every member with a forecast is ranked (a 1 ms window takes the next step); the
    window reported is the one ranked over."""
    body = client.get("/v1/cache-warming/by_route/top", params={"k": 5, "window": "1ms"}).json()
    assert [m["labels"]["route"] for m in body["members"]] == ["/b", "/c", "/a"]
    assert body["without_forecast"] == []
    start = datetime.fromisoformat(body["window_start"])
    assert datetime.now(UTC) - start >= STEP - timedelta(seconds=1)
    empty = client.get("/v1/cache-warming/empty/top", params={"window": "1ms"}).json()
    assert empty["members"] == [] and empty["without_forecast"] == ["empty"]


def test_regressions_listing_and_metrics(client: TestClient) -> None:
    body = client.get("/v1/regressions", params={"series": "rps"}).json()
    events = body["events"]
    assert len(events) == 2
    assert events[0]["open"] is True and events[0]["end"] is None
    assert events[1]["open"] is False and events[1]["peak_score"] == 3.0
    assert events[0]["model"] == "lightgbm v3" and events[0]["direction"] == "up"
    # closed by the series returning (or open): no reason beyond that
    assert [e["closed_reason"] for e in events] == [None, None]
    recent = client.get("/v1/regressions", params={"since": "-1h"}).json()["events"]
    assert [e["open"] for e in recent] == [True]
    old = client.get("/v1/regressions", params={"since": "-60d"}).json()["events"]
    assert len(old) == 2
    text = client.get("/metrics").text
    assert 'forecaster_anomaly_score{series="rps"} 2.5' in text
    assert 'forecaster_regression_open{direction="up",series="rps"} 1.0' in text
    assert 'forecaster_anomaly_bar{series="rps"} 4.25' in text
    other = client.get("/metrics", params={"series": "by_route"}).text
    assert "# TYPE forecaster_anomaly_score gauge" in other
    assert 'forecaster_anomaly_score{series="rps"}' not in other
    assert (
        'forecaster_anomaly_score{series="rps"} 2.5'
        in client.get("/metrics", params={"series": "rps"}).text
    )


def test_since_with_an_offset_typed_into_the_url(client: TestClient) -> None:
    """``since=2026-11-30T09:00:00+05:00`` typed into a URL (curl, a browser) arrives with
    its "+" decoded as a space; it was a 422 quoting a timestamp the user never wrote."""
    plus5 = timezone(timedelta(hours=5))
    for ago, opened in ((timedelta(minutes=270), [False, True]), (timedelta(hours=1), [True])):
        when = (datetime.now(UTC) - ago).astimezone(plus5).replace(microsecond=0)
        for raw in (when.isoformat(), when.strftime("%Y-%m-%dT%H:%M:%S%z")):  # +05:00, +0500
            response = client.get(f"/v1/regressions?series=rps&since={raw}")
            assert response.status_code == 200, (raw, response.text)
            assert sorted(e["open"] for e in response.json()["events"]) == opened
    history = client.get(f"/v1/series/rps/history?since={when.isoformat()}")
    assert history.status_code == 200, history.text
    # a space that cannot have been a "+" is still refused, naming the parameter
    response = client.get("/v1/regressions?since=2026-11-30T09:00:00+25:00")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "since"]


def test_regressions_say_which_selected_series_are_not_judged(client: TestClient) -> None:
    """A series without ``watch:`` answered ``{"events": []}``, the same as a watched one
    that is fine: an SRE asking about it read an all-clear the detector never gave."""
    assert client.get("/v1/regressions", params={"series": "rps"}).json()["not_judged"] == []
    lat = client.get("/v1/regressions", params={"series": "lat"}).json()
    assert lat == {"truncated": False, "events": [], "not_judged": ["lat"]}
    family = client.get("/v1/regressions", params={"series": "by_route"}).json()
    assert family["not_judged"] == sorted(f'by_route{{route="{r}"}}' for r in ("/a", "/b", "/c"))
    assert client.get("/v1/regressions").json()["not_judged"] == []


def test_regressions_cut_by_limit_say_so(client: TestClient) -> None:
    """``limit`` cut the list without a word: the newest events, and nothing to tell a
    client that older ones matched too (from memory and from the store alike)."""
    for since in ("-7d", "-60d"):  # the in-memory window, and a query to the store
        params = {"series": "rps", "since": since}
        cut = client.get("/v1/regressions", params={**params, "limit": "1"}).json()
        assert cut["truncated"] is True and [e["open"] for e in cut["events"]] == [True]
        whole = client.get("/v1/regressions", params={**params, "limit": "2"}).json()
        assert whole["truncated"] is False and len(whole["events"]) == 2


def test_regressions_of_a_split_by_family_by_its_name(client: TestClient) -> None:
    """``watch:`` on a ``split_by`` family watches each member; the family's name (the one
    written in the spec) selects their events, as it does on ``/metrics`` (it was a 404
    'unknown series'), both from memory and from the store (``since`` beyond a month)."""
    engine = make_engine(client.app.state.settings.database)  # type: ignore[attr-defined]
    try:
        store = Store(engine)
        now = datetime.now(UTC)
        member = member_name("lat_by_route", {"route": "/a"})
        sid = store.ensure_series(
            name=member,
            family="lat_by_route",
            labels={"route": "/a"},
            step_seconds=300,
            horizon_steps=12,
            unit="ms",
        )
        event = RegressionEvent(
            start=now - timedelta(minutes=30),
            end=None,
            peak_score=7.0,
            direction="up",
            model="lightgbm v3",
            detected_at=now - timedelta(minutes=15),
        )
        ConsumersRepo(store).save_detection(
            sid, state={}, open_event_id=None, transitions=[Transition("opened", event)]
        )
    finally:
        engine.dispose()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = client.get("/v1/regressions", params={"series": "lat_by_route"})
        if response.status_code == 200 and response.json()["events"]:
            break
        time.sleep(0.1)
    assert response.status_code == 200, response.text
    assert [e["series"] for e in response.json()["events"]] == [member]
    old = client.get("/v1/regressions", params={"series": "lat_by_route", "since": "-60d"})
    assert [e["series"] for e in old.json()["events"]] == [member]
    one = client.get("/v1/regressions", params={"series": member}).json()["events"]
    assert [e["peak_score"] for e in one] == [7.0]
    assert [
        e["series"]
        for e in client.get("/v1/regressions", params={"series": "rps"}).json()["events"]
    ] == ["rps", "rps"]


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("/v1/cache-warming/rps", {"within": "soon"}, "within"),
        ("/v1/cache-warming/rps", {"lead": "-5m"}, "lead"),
        ("/v1/cache-warming/rps", {"min_increase": "0"}, "min_increase"),
        ("/v1/cache-warming/by_route/top", {"k": "0"}, "k"),
        ("/v1/cache-warming/by_route/top", {"window": "400d"}, "window"),
        ("/v1/cache-warming/by_route/top", {"margin": "-1"}, "margin"),
        ("/v1/cache-warming/by_route/top", {"margin": "nan"}, "margin"),
        ("/v1/cache-warming/rps", {"min_increase": "nan"}, "min_increase"),
        ("/v1/circuit-breaker/rps", {"latency": "1s", "headroom": "nan"}, "headroom"),
        ("/v1/circuit-breaker/rps", {}, "latency_series"),
        ("/v1/circuit-breaker/rps", {"latency_series": "lat", "headroom": "0.5"}, "headroom"),
        ("/v1/circuit-breaker/rps", {"latency_series": "lat", "format": "xml"}, "format"),
        ("/v1/circuit-breaker/rps", {"latency": "fast"}, "latency"),
        ("/v1/circuit-breaker/rps", {"latency": "1s", "latency_series": "lat"}, "latency"),
        ("/v1/circuit-breaker/odd", {"latency": "1s"}, "rate_per"),
        ("/v1/circuit-breaker/lat", {"latency_series": "odd", "rate_per": "1s"}, "latency_unit"),
        # latency_unit was silently ignored beside a fixed latency
        ("/v1/circuit-breaker/rps", {"latency": "250ms", "latency_unit": "ms"}, "latency_unit"),
        # an override contradicting the series' own unit sized limits 1000x (or 300x) off
        ("/v1/circuit-breaker/rps", {"latency_series": "lat", "latency_unit": "s"}, "latency_unit"),
        ("/v1/circuit-breaker/rps", {"latency": "100ms", "rate_per": "5m"}, "rate_per"),
        ("/v1/regressions", {"since": "last week"}, "since"),
        ("/v1/regressions", {"since": ""}, "since"),  # it was the 7-day default
        ("/v1/regressions", {"limit": "0"}, "limit"),
        # too large for a timedelta / a datetime: a 422, not a 500
        ("/v1/cache-warming/rps", {"within": "99999999999999999999999w"}, "within"),
        ("/v1/regressions", {"since": "-99999999999999999999999w"}, "since"),
        ("/v1/regressions", {"since": "9999-12-31T23:59:59-05:00"}, "since"),
    ],
)
def test_bad_parameters_are_422_naming_them(
    client: TestClient, path: str, params: dict[str, str], name: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["query", name]
    assert detail[0]["msg"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/cache-warming/nope", {}),
        ("/v1/cache-warming/empty", {}),
        ("/v1/cache-warming/nope/top", {}),
        ("/v1/circuit-breaker/nope", {"latency_series": "lat"}),
        ("/v1/circuit-breaker/rps", {"latency_series": "nope"}),
        ("/v1/regressions", {"series": "nope"}),
    ],
)
def test_unknown_series_is_404(client: TestClient, path: str, params: dict[str, str]) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 404, response.text
    assert response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/series/by_route/forecast", {}),
        ("/v1/scaling/by_route", {"target_per_replica": "10"}),
        ("/v1/cache-warming/by_route", {}),
    ],
)
def test_a_family_name_where_a_series_is_wanted_says_so(
    client: TestClient, path: str, params: dict[str, str]
) -> None:
    """The family's name is the one in the spec: asking for it where one series is
    wanted said only "unknown series 'by_route'"."""
    response = client.get(path, params=params)
    assert response.status_code == 404, response.text
    detail = response.json()["detail"]
    assert "unknown series 'by_route': it is a split_by family" in detail
    assert "by_route{route=" in detail  # a member to name instead
