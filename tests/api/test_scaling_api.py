"""GET /v1/scaling/{series} (KEDA metrics-api) and the forecaster_forecast_max export."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from forecaster.api.app import create_app
from tests.support.scaling_seed import STEP, seed


@pytest.fixture
def seeded(make_settings: Any, db_url: str) -> tuple[Any, datetime]:
    settings = make_settings(db=db_url)
    return settings, seed(settings)


@pytest.fixture
def client(seeded: tuple[Any, datetime]) -> Iterator[TestClient]:
    with TestClient(create_app(seeded[0], refresh_seconds=0.2)) as c:
        yield c


@pytest.fixture
def origin(seeded: tuple[Any, datetime]) -> datetime:
    return seeded[1]


def last_step(lead: timedelta, origin: datetime) -> int:
    """The forecast step that ends the window ``(now, now + lead]``, counted from the
    seeded origin (recomputing the origin here failed when the test crossed a
    5-minute boundary after seeding)."""
    return int((datetime.now(UTC) + lead - origin) / STEP)


def test_contract(client: TestClient, origin: datetime) -> None:
    response = client.get(
        "/v1/scaling/team/rps",
        params={"target_per_replica": 50, "lead_time": "30m", "quantile": 0.5},
    )
    assert response.status_code == 200
    body = response.json()
    assert {"value", "replicas", "forecast_generated_at", "stale", "reason"} <= set(body)
    peak = 200.0 + 10 * last_step(timedelta(minutes=30), origin)
    assert body["value"] == pytest.approx(peak)
    assert body["replicas"] == math.ceil(peak / 50)
    assert body["stale"] is False
    assert body["observed"] == 100.0
    assert "forecast peak" in body["reason"]
    assert body["forecast_generated_at"].endswith("Z")


def test_upper_quantile_and_clamps(client: TestClient, origin: datetime) -> None:
    params: dict[str, Any] = {"target_per_replica": 50, "lead_time": "30m"}
    upper = client.get("/v1/scaling/team/rps", params={**params, "quantile": 0.95}).json()
    assert upper["value"] == pytest.approx(260.0 + 10 * last_step(timedelta(minutes=30), origin))
    default = client.get("/v1/scaling/team/rps", params=params).json()  # quantile 0.9
    assert default["value"] < upper["value"]
    clamped = client.get("/v1/scaling/team/rps", params={**params, "max_replicas": 2}).json()
    assert clamped["replicas"] == 2 and clamped["value"] == 100.0
    assert "max_replicas=2" in clamped["reason"]
    floor = client.get("/v1/scaling/team/rps", params={**params, "min_replicas": 30}).json()
    assert floor["replicas"] == 30 and floor["value"] == 1500.0


def test_observed_load_wins_over_a_low_forecast(make_settings: Any) -> None:
    settings = make_settings()
    seed(settings, observed=5000.0)
    with TestClient(create_app(settings)) as c:
        body = c.get("/v1/scaling/team/rps", params={"target_per_replica": 100}).json()
        assert body["value"] == 5000.0 and body["replicas"] == 50
        assert "observed load 5000 above the forecast" in body["reason"]


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({}, "target_per_replica"),
        ({"target_per_replica": 0}, "target_per_replica"),
        ({"target_per_replica": "inf"}, "target_per_replica"),
        ({"target_per_replica": "x"}, "target_per_replica"),
        ({"target_per_replica": 5, "lead_time": "soon"}, "lead_time"),
        ({"target_per_replica": 5, "lead_time": "400d"}, "lead_time"),
        ({"target_per_replica": 5, "quantile": 1.2}, "quantile"),
        ({"target_per_replica": 5, "quantile": 0.99}, "quantile"),
        ({"target_per_replica": 5, "quantile": "nan"}, "quantile"),
        ({"target_per_replica": 5, "min_replicas": 4, "max_replicas": 2}, "max_replicas"),
        ({"target_per_replica": 5, "min_replicas": -1}, "min_replicas"),
        # more replicas than Kubernetes counts (int32), or a clamp load that overflows
        ({"target_per_replica": 5, "min_replicas": 10**21}, "min_replicas"),
        ({"target_per_replica": 5, "max_replicas": 2**31}, "max_replicas"),
        ({"target_per_replica": 1e300, "min_replicas": 2_000_000_000}, "min_replicas"),
    ],
)
def test_bad_parameters_are_422_naming_them(
    client: TestClient, params: dict[str, Any], name: str
) -> None:
    response = client.get("/v1/scaling/team/rps", params=params)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["query", name] and detail[0]["msg"]
    if params.get(name) == "nan":  # said as such, not "should be less than 1"
        assert "finite number" in detail[0]["msg"]


def test_a_target_per_replica_finer_than_kedas_thousandths_is_refused(
    client: TestClient,
) -> None:
    """load / 1e-320 overflowed to inf (a 500; orjson refuses ints past 64 bits), and
    was then clamped to an int32 of replicas; KEDA hands the HPA targets in thousandths
    (0.0004 becomes 0), so such a target is a 422, as the gRPC scaler refuses it."""
    for target in ("1e-320", "5e-324", "0." + "0" * 320 + "1", "0.0004", "0.0015"):
        response = client.get("/v1/scaling/team/rps", params={"target_per_replica": target})
        assert response.status_code == 422, response.text
        assert "finer than the 0.001 KEDA passes" in response.text
    fine = client.get("/v1/scaling/team/rps", params={"target_per_replica": "0.001"})
    assert fine.status_code == 200, fine.text
    body = fine.json()
    assert math.isfinite(body["value"]) and body["replicas"] >= 1


def test_unknown_series_and_missing_forecast_are_404(client: TestClient) -> None:
    response = client.get("/v1/scaling/nope", params={"target_per_replica": 5})
    assert response.status_code == 404 and "unknown series 'nope'" in response.json()["detail"]
    response = client.get("/v1/scaling/empty", params={"target_per_replica": 5})
    assert response.status_code == 404 and "no published forecast" in response.json()["detail"]


@pytest.mark.parametrize("lead", ["1ms", "1s"])
def test_lead_shorter_than_the_gap_to_the_next_step_plans_on_that_step(
    client: TestClient, lead: str
) -> None:
    """The seeded forecast's first point is a step after its origin: a short lead window
    holds no point. It was a 503 'the publish job is not keeping up' for a fresh forecast;
    the next step, whose interval holds the window's end, is the forecast for it."""
    response = client.get(
        "/v1/scaling/team/rps",
        params={"target_per_replica": 50, "lead_time": lead, "quantile": 0.5},
    )
    assert response.status_code == 200, response.text
    assert response.json()["forecast_peak"] == 210.0  # yhat of step 1


def test_lead_beyond_the_published_horizon_is_422(client: TestClient) -> None:
    """The forecast is on time and 2 h long: a 6 h lead is the request's problem (it was
    a 503 saying the publish job was not keeping up)."""
    response = client.get(
        "/v1/scaling/team/rps", params={"target_per_replica": 5, "lead_time": "6h"}
    )
    assert response.status_code == 422, response.text
    (detail,) = response.json()["detail"]
    assert detail["loc"] == ["query", "lead_time"]
    assert "is longer than forecasts of" in detail["msg"]
    # 2 h less the lag data may normally have: two steps and a minute
    assert "lead times up to 6540s are covered" in detail["msg"]


def test_a_lead_past_the_limit_is_refused_even_while_the_forecast_still_covers_it(
    client: TestClient,
) -> None:
    """1h50m: the 2-hour forecast covers it for a few minutes after each publication,
    and then would not; the answer must not depend on the minute (it did)."""
    response = client.get(
        "/v1/scaling/team/rps", params={"target_per_replica": 5, "lead_time": "1h50m"}
    )
    assert response.status_code == 422, response.text
    ok = client.get("/v1/scaling/team/rps", params={"target_per_replica": 5, "lead_time": "1h49m"})
    assert ok.status_code == 200, ok.text


def test_forecast_from_late_data_is_503(make_settings: Any, db_url: str) -> None:
    """A fresh publication from data 3 hours old ends before now + lead: ingestion is
    behind, so KEDA's fallback applies (503), whatever the lead."""
    settings = make_settings(db=db_url)
    seed(settings, behind=timedelta(hours=3))
    with TestClient(create_app(settings, refresh_seconds=0.2)) as c:
        response = c.get("/v1/scaling/team/rps", params={"target_per_replica": 5})
    assert response.status_code == 503, response.text
    assert "ingestion or publishing is behind" in response.json()["detail"]


def test_stale_forecast_is_503(make_settings: Any) -> None:
    settings = make_settings(schedule={"stale_after_seconds": 600})
    seed(settings, generated_at=datetime.now(UTC) - timedelta(hours=1))
    with TestClient(create_app(settings)) as c:
        response = c.get("/v1/scaling/team/rps", params={"target_per_replica": 5})
        assert response.status_code == 503
        assert "older than the 600s staleness bound" in response.json()["detail"]
        text = c.get("/metrics").text
        assert "forecaster_forecast_max{" not in text  # stale forecasts are not exported


def test_store_outage_is_503(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings()
    seed(settings)
    app = create_app(settings, refresh_seconds=3600)
    with TestClient(app) as c:
        assert c.get("/v1/scaling/team/rps", params={"target_per_replica": 5}).status_code == 200
        engine = app.state.view.store.engine
        engine.dispose()
        (tmp_path / "store.db").rename(tmp_path / "moved.db")
        engine.url = engine.url.set(database="/nonexistent/dir/x.db")
        assert app.state.view.refresh() is False
        response = c.get("/v1/scaling/team/rps", params={"target_per_replica": 5})
        assert response.status_code == 503 and "store unavailable" in response.json()["detail"]


def test_forecast_max_export(client: TestClient, origin: datetime) -> None:
    text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.labels["series"], s.labels["quantile"], s.labels["window"]): s.value
        for s in families["forecaster_forecast_max"].samples
    }
    assert {q for _, q, _ in samples} == {"0.5", "0.9", "0.95"}
    assert {w for _, _, w in samples} == {"5m", "10m", "15m", "30m", "1h"}
    for window, lead in (("10m", timedelta(minutes=10)), ("1h", timedelta(hours=1))):
        step = last_step(lead, origin)
        assert samples[("team/rps", "0.5", window)] == pytest.approx(200.0 + 10 * step)
        assert samples[("team/rps", "0.95", window)] == pytest.approx(260.0 + 10 * step)
    assert samples[("team/rps", "0.9", "1h")] < samples[("team/rps", "0.95", "1h")]
    assert samples[("team/rps", "0.5", "5m")] <= samples[("team/rps", "0.5", "1h")]


def test_openapi_documents_scaling(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    path = spec["paths"]["/v1/scaling/{series}"]["get"]
    names = {p["name"] for p in path["parameters"]}
    assert {"target_per_replica", "lead_time", "quantile", "min_replicas", "max_replicas"} <= names


def test_the_first_read_after_an_idle_spell_uses_the_newest_observation(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache refreshed in the background and answered from its old snapshot: the
    first request after a couple of idle minutes said "too old to use" and planned
    without the observed-load floor (one second later it had it)."""
    import forecaster.api.routes.scaling
    from forecaster.store.db import make_engine
    from forecaster.store.repository import Store

    # the wait is bounded (1 s) for a slow store; a loaded test machine is not that
    monkeypatch.setattr(forecaster.api.routes.scaling, "OBSERVATIONS_WAIT_LIMIT_SECONDS", 60.0)
    settings = make_settings()
    origin = seed(settings, observed=5000.0)
    params = {"target_per_replica": 100}
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/scaling/team/rps", params=params).json()["observed"] == 5000.0
        engine = make_engine(settings.database)
        try:  # a newer observation arrives while nobody asks
            Store(engine).upsert_observations(
                Store(engine).series("team/rps").id, [(origin + STEP, 9000.0)]
            )
        finally:
            engine.dispose()
        cache = c.app.state.scaling_observations.observations  # type: ignore[attr-defined]
        cache.refreshed_at -= 120  # two idle minutes
        body = c.get("/v1/scaling/team/rps", params=params).json()
        assert body["observed"] == 9000.0 and body["replicas"] == 90, body["reason"]
