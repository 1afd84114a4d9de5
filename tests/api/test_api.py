"""The HTTP API over a real store: contract, errors, metrics, and what it must not import."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from forecaster.api.app import create_app
from forecaster.store.db import make_engine, upgrade
from forecaster.store.repository import ForecastPoint, Store

STEP = timedelta(minutes=5)


def _seed(settings: Any, *, generated_at: datetime | None = None) -> None:
    engine = make_engine(settings.database)
    try:
        _fill(Store(engine), generated_at)
    finally:
        engine.dispose()


def _fill(store: Store, generated_at: datetime | None) -> None:
    engine = store.engine
    upgrade(engine)
    store = Store(engine)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    origin = now - timedelta(minutes=now.minute % 5)
    sid = store.ensure_series(
        name="rps", family="rps", kind="load", unit="req/s", step_seconds=300, horizon_steps=288
    )
    store.upsert_observations(sid, [(origin - i * STEP, 100.0 + i) for i in range(50)])
    store.ensure_series(name="empty", family="empty", step_seconds=300, horizon_steps=12)
    store.record_training(
        series="rps",
        run_id="run1",
        estimator="prophet",
        model_version="4",
        promoted=True,
        reason="test",
        metrics={"mase": 0.5},
        artifact=None,
    )
    store.publish_forecast(
        series="rps",
        generated_at=generated_at or now,
        origin=origin,
        step_seconds=300,
        level=90.0,
        model_name="prophet",
        model_version="4",
        run_id="run1",
        points=[
            ForecastPoint(
                step=i,
                ds=origin + i * STEP,
                yhat=200.0 + i,
                yhat_lower=150.0 + i,
                yhat_upper=260.0 + i,
            )
            for i in range(1, 289)
        ],
    )


@pytest.fixture
def client(make_settings: Any, db_url: str) -> Any:
    settings = make_settings(db=db_url)
    _seed(settings)
    with TestClient(create_app(settings, refresh_seconds=0.2)) as c:
        yield c


def test_list_series(client: TestClient) -> None:
    body = client.get("/v1/series").json()
    by_name = {s["name"]: s for s in body}
    assert set(by_name) == {"rps", "empty"}
    assert by_name["rps"]["step_seconds"] == 300
    assert by_name["rps"]["champion"] == "prophet"
    assert by_name["rps"]["last_observation"].startswith(str(datetime.now(UTC).year))
    assert by_name["empty"]["champion"] is None


def test_forecast_contract(client: TestClient) -> None:
    response = client.get("/v1/series/rps/forecast", params={"horizon": "1h"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"series", "generated_at", "step_seconds", "model", "points"}
    assert body["model"] == {"name": "prophet", "version": "4", "run_id": "run1"}
    assert body["stale"] is False and body["level"] == 90.0
    points = body["points"]
    assert 12 <= len(points) <= 13
    now = datetime.now(UTC)
    first = datetime.fromisoformat(points[0]["ds"])
    last = datetime.fromisoformat(points[-1]["ds"])
    assert first > now - timedelta(minutes=10) and last <= now + timedelta(hours=1)
    assert all(p["yhat_lower"] <= p["yhat"] <= p["yhat_upper"] for p in points)
    longer = client.get("/v1/series/rps/forecast", params={"horizon": "6h"}).json()["points"]
    assert len(longer) > len(points)


def test_unknown_series_is_404_with_message(client: TestClient) -> None:
    response = client.get("/v1/series/nope/forecast")
    assert response.status_code == 404
    assert "unknown series 'nope'" in response.json()["detail"]
    response = client.get("/v1/series/empty/forecast")
    assert response.status_code == 404
    assert "no published forecast" in response.json()["detail"]
    assert client.get("/v1/series/nope/history").status_code == 404


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("/v1/series/rps/forecast", {"horizon": "soon"}, "horizon"),
        ("/v1/series/rps/forecast", {"horizon": "400d"}, "horizon"),
        ("/v1/series/rps/forecast", {"horizon": "-1h"}, "horizon"),
        ("/v1/series/rps/history", {"since": "last tuesday"}, "since"),
        ("/v1/series/rps/history", {"since": ""}, "since"),
        ("/v1/series/rps/history", {"until": ""}, "until"),
        ("/v1/series/rps/history", {"since": "-90d"}, "since"),
        # too large for a timedelta / a datetime: a 422, not a 500
        ("/v1/series/rps/forecast", {"horizon": "99999999999999999999999w"}, "horizon"),
        ("/v1/series/rps/history", {"since": "-99999999999999999999999w"}, "since"),
        ("/v1/series/rps/history", {"since": "9999-12-31T23:59:59-05:00"}, "since"),
        ("/v1/series/rps/history", {"until": "0001-01-01T00:00:00+05:00"}, "until"),
    ],
)
def test_bad_parameters_are_422_naming_them(
    client: TestClient, path: str, params: dict[str, str], name: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["query", name]
    assert detail[0]["msg"]


def test_history_until_the_first_day_of_year_one(client: TestClient) -> None:
    """The default ``since`` (a day before ``until``) would be before year 1: clipped."""
    response = client.get("/v1/series/rps/history", params={"until": "0001-01-01T06:00:00"})
    assert response.status_code == 200, response.text
    assert response.json() == {"series": "rps", "points": []}


def test_history(client: TestClient) -> None:
    body = client.get("/v1/series/rps/history", params={"since": "-2h"}).json()
    assert body["series"] == "rps"
    ys = [p["y"] for p in body["points"]]
    assert 20 <= len(ys) <= 26
    assert ys == sorted(ys, reverse=True)  # seeded values decrease with time


def test_health_ready_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["forecasts"] == 1
    text = client.get("/metrics").text
    assert 'forecaster_forecast{horizon="1h",quantile="0.5",series="rps"}' in text
    assert 'forecaster_forecast{horizon="15m",quantile="0.95",series="rps"}' in text
    assert "forecaster_forecast_age_seconds" in text
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(text)}
    values = [s.value for s in families["forecaster_forecast"].samples]
    assert values and all(v > 0 for v in values)


def test_metrics_of_selected_series(client: TestClient) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics", params={"series": ["rps", "typo"]}).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {s.labels["series"] for s in families["forecaster_forecast"].samples} == {"rps"}
    unknown = families["forecaster_metrics_unknown_series"].samples
    assert [(s.labels, s.value) for s in unknown] == [({"series": "typo"}, 1.0)]
    assert families["forecaster_job_runs"].samples  # pipeline-wide: always there

    text = client.get("/metrics", params={"series": "other"}).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert not families["forecaster_forecast"].samples
    assert not families["forecaster_forecast_max"].samples

    response = client.get("/metrics", params={"series": ["rps", " "]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "series"]
    params = client.get("/openapi.json").json()["paths"]["/metrics"]["get"]["parameters"]
    assert [p["name"] for p in params] == ["series"]


@pytest.mark.parametrize(
    ("url", "name", "hint"),
    [
        ("/v1/series/rps/forecast?horizn=1h", "horizn", "did you mean 'horizon'?"),
        ("/v1/series/rps/history?Since=-1h", "Since", "did you mean 'since'?"),
        ("/v1/series?page=2", "page", "this endpoint takes no query parameters"),
        ("/v1/series/rps/history?zzz=1", "zzz", "this endpoint takes since, until"),
        ("/metrics?serie=rps", "serie", "did you mean 'series'?"),
    ],
)
def test_unknown_query_parameters_are_422_naming_them(
    client: TestClient, url: str, name: str, hint: str
) -> None:
    """A misspelt parameter was ignored and its default used."""
    response = client.get(url)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["detail"]
    assert detail["loc"] == ["query", name] and hint in detail["msg"]


def test_a_horizon_over_the_cap_names_the_cap_as_a_duration(client: TestClient) -> None:
    response = client.get("/v1/series/rps/forecast", params={"horizon": "2w"})
    assert response.status_code == 422
    assert "exceeds the maximum of 7d" in response.json()["detail"][0]["msg"]


def test_probes_answer_head(client: TestClient) -> None:
    """Load balancers and uptime checkers probe with HEAD."""
    for path in ("/healthz", "/readyz"):
        response = client.head(path)
        assert response.status_code == 200 and response.content == b""


def test_pages_keep_their_own_query_strings(client: TestClient) -> None:
    """The dashboard page keeps its state in its URL; probes may add anything."""
    assert client.get("/dashboard?series=rps&window=1d").status_code == 200
    assert client.get("/healthz?probe=1").status_code == 200


def test_openapi_documents_the_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/v1/series/{name}/forecast" in spec["paths"]
    params = spec["paths"]["/v1/series/{name}/forecast"]["get"]["parameters"]
    assert any(p["name"] == "horizon" for p in params)
    # codes these routes return that the document did not list
    paths = spec["paths"]
    assert {"401", "403", "404"} <= set(paths["/v1/admin/jobs/{request_id}"]["get"]["responses"])
    assert {"401", "403", "404", "413"} <= set(paths["/v1/admin/jobs"]["post"]["responses"])
    assert "503" in paths["/readyz"]["get"]["responses"]


def test_stale_forecast_is_flagged(make_settings: Any) -> None:
    settings = make_settings()
    _seed(settings, generated_at=datetime.now(UTC) - timedelta(hours=2))
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/series/rps/forecast").json()["stale"] is True


def test_reads_can_require_a_token(make_settings: Any) -> None:
    settings = make_settings(api={"token": "a-real-token", "require_token_for_reads": True})
    _seed(settings)
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/series").status_code == 401
        assert c.get("/v1/series", headers={"Authorization": "Bearer wrong"}).status_code == 403
        ok = c.get("/v1/series", headers={"Authorization": "Bearer a-real-token"})
        assert ok.status_code == 200
        assert c.get("/healthz").status_code == 200
        # /metrics carries every forecast: protected like the other reads
        assert c.get("/metrics").status_code == 401
        scrape = c.get("/metrics", headers={"Authorization": "Bearer a-real-token"})
        assert scrape.status_code == 200 and "forecaster_forecast{" in scrape.text


def test_view_keeps_serving_when_the_store_fails(make_settings: Any, tmp_path: Any) -> None:
    settings = make_settings()
    _seed(settings)
    app = create_app(settings, refresh_seconds=3600)
    with TestClient(app) as c:
        app.state.view.store.engine.dispose()
        (tmp_path / "store.db").rename(tmp_path / "moved.db")
        app.state.view.store.engine.url = app.state.view.store.engine.url.set(
            database="/nonexistent/dir/x.db"
        )
        assert app.state.view.refresh() is False
        assert c.get("/v1/series/rps/forecast").status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "store unavailable" in ready.json()["error"]


def test_api_process_does_not_import_heavy_libraries(make_settings: Any, tmp_path: Any) -> None:
    code = (
        "import sys, json\n"
        "from forecaster.api.app import create_app\n"
        "from forecaster.config import load_settings\n"
        f"create_app(load_settings(database={{'url': 'sqlite:///{tmp_path}/x.db'}}))\n"
        "import forecaster.api.asgi\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'prophet', 'lightgbm', 'mlflow', 'pandas', 'cmdstanpy', 'sklearn'})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_no_user_supplied_promql_reaches_prometheus(client: TestClient) -> None:
    """Only spec'd queries run: no API parameter carries PromQL, and the API process
    has no Prometheus client at all."""
    spec = client.get("/openapi.json").json()
    names = {
        p["name"].lower()
        for path in spec["paths"].values()
        for op in path.values()
        for p in op.get("parameters", [])
    }
    assert not names & {"query", "promql", "expr", "expression", "match[]"}
    code = (
        "import sys\n"
        "import forecaster.api.app as a\n"
        "print('prometheus_api_client' in sys.modules,"
        " 'forecaster.sources.prometheus' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.postgres
def test_readiness_fails_while_a_refresh_hangs_on_a_stalled_store(
    pg_url: str, make_settings: Any
) -> None:
    """A refresh stuck on a connection that forwards nothing (a hung database, a
    half-open connection) never fails: /readyz answered 200 with a view minutes old."""
    import time

    from tests.support.tcpproxy import TcpProxy

    _seed(make_settings(db=pg_url))
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        settings = make_settings(db=proxy.url(pg_url))
        app = create_app(settings, refresh_seconds=0.2, max_view_age_seconds=2.0)
        with TestClient(app) as c:
            assert c.get("/readyz").status_code == 200
            proxy.stall()
            try:
                time.sleep(3.0)
                ready = c.get("/readyz")
                assert ready.status_code == 503, ready.json()
                assert "last refreshed" in ready.json()["error"]
                assert "forecaster_view_refresh_ok 0.0" in c.get("/metrics").text
                assert c.get("/v1/series/rps/forecast").status_code == 200  # still served
            finally:
                proxy.restore()  # the app's shutdown waits for the refresh in flight
            deadline = time.monotonic() + 10
            while c.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "readiness did not come back"
                time.sleep(0.2)


@pytest.mark.postgres
def test_a_scrape_answers_from_the_last_read_while_the_store_stalls(
    pg_url: str, make_settings: Any
) -> None:
    """/metrics read the job runs on the request path: with the store stalled a scrape
    waited for the connection (forever on a pooled one, 10 s on a new one), and
    Prometheus, which gives a scrape 10 s, lost every metric the API exports. It now
    answers at once from the last read, and says how old that is."""
    import threading
    import time

    from prometheus_client.parser import text_string_to_metric_families

    from tests.support.tcpproxy import TcpProxy

    def samples(text: str) -> dict[str, float]:
        return {
            s.name: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if not s.labels
        }

    _seed(make_settings(db=pg_url))
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        settings = make_settings(db=proxy.url(pg_url))
        app = create_app(settings, refresh_seconds=0.2, max_view_age_seconds=2.0)
        app.state.job_stats.min_interval = 0.2
        with TestClient(app) as c:
            deadline = time.monotonic() + 10
            while samples(c.get("/metrics").text).get("forecaster_job_stats_ok") != 1.0:
                assert time.monotonic() < deadline, "the job runs were never read"
                time.sleep(0.1)
            proxy.stall()
            try:
                time.sleep(2.5)  # past the 2 s a read may take before it counts as stale
                answers: list[Any] = []
                scrape = threading.Thread(
                    target=lambda: answers.append(c.get("/metrics")), daemon=True
                )
                scrape.start()
                scrape.join(5.0)
                assert answers, "the scrape waited on the stalled store"
                assert answers[0].status_code == 200
                exported = samples(answers[0].text)
                assert exported["forecaster_job_stats_ok"] == 0.0
                assert exported["forecaster_job_stats_age_seconds"] > 2.0
                assert exported["forecaster_view_refresh_ok"] == 0.0
                assert "forecaster_job_runs_total" in answers[0].text  # the last read's
            finally:
                proxy.restore()  # the app's shutdown waits for the reads in flight
                scrape.join(30)


@pytest.mark.postgres
def test_a_view_refresh_on_a_stalled_store_fails_within_the_query_limit(
    pg_url: str, make_settings: Any
) -> None:
    """A refresh stuck on a stalled connection hung for as long as the stall lasted,
    holding the refresher (and the app's shutdown) with it; with a query limit it
    fails, and the refresher goes on (and recovers once the store answers)."""
    import time

    from tests.support.tcpproxy import TcpProxy

    _seed(make_settings(db=pg_url))
    limits = {"statement_timeout_seconds": 0.5, "query_timeout_seconds": 1.0}
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        settings = make_settings(
            db=proxy.url(pg_url), database={**limits, "connect_timeout_seconds": 2}
        )
        app = create_app(settings, refresh_seconds=0.2)
        with TestClient(app) as c:
            view = app.state.view
            assert c.get("/readyz").status_code == 200
            proxy.stall()
            try:
                deadline = time.monotonic() + 10
                while view.state.error is None:
                    assert time.monotonic() < deadline, "the refresh hung on the stalled store"
                    time.sleep(0.1)
                # the pooled connection's ping fails after 1 s, the new one's connect
                # after 2 s: a failure, not a wait as long as the stall
                assert "store unavailable" in view.state.error
                assert c.get("/readyz").status_code == 503
            finally:
                proxy.restore()
            deadline = time.monotonic() + 15
            while c.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "readiness did not come back"
                time.sleep(0.2)
