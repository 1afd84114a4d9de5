"""HotReads: the plain valid forecast and scaling reads bypass FastAPI with the same answers.

Each answer of the fast path is compared with the route's own answer to the same
request (the fast path switched off, the clock frozen), and every request outside
its plain valid form must reach the app unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from forecaster.api import hot
from forecaster.api.app import create_app
from forecaster.api.hot import HotReads
from tests.support.scaling_seed import seed


def find_hot(app: Any) -> HotReads | None:
    """The HotReads layer of a started app's middleware stack, if installed."""
    node = app.middleware_stack
    while node is not None:
        if isinstance(node, HotReads):
            return node
        node = getattr(node, "app", None)
    return None


@pytest.fixture
def client(make_settings: Any, db_url: str) -> Iterator[TestClient]:
    settings = make_settings(db=db_url)
    seed(settings)
    with TestClient(create_app(settings, refresh_seconds=3600)) as c:
        yield c


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both paths see the same ``now`` (the window and staleness depend on it): the
    body functions of both routes read ``time.time``, patched here for the test."""
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)


def by_app(client: TestClient, monkeypatch: pytest.MonkeyPatch, url: str) -> Any:
    """The same request answered by the FastAPI route (fast path switched off)."""

    async def decline(self: HotReads, path: str, query: bytes) -> None:
        return None

    with monkeypatch.context() as m:
        m.setattr(HotReads, "_answer", decline)
        return client.get(url)


@pytest.mark.parametrize(
    "url",
    [
        "/v1/series/team/rps/forecast",
        "/v1/series/team/rps/forecast?horizon=15m",
        "/v1/series/team/rps/forecast?horizon=2h",
        "/v1/series/team%2Frps/forecast?horizon=30m",
        "/v1/scaling/team/rps?target_per_replica=50",
        "/v1/scaling/team/rps?target_per_replica=50&lead_time=30m&quantile=0.5",
        "/v1/scaling/team/rps?target_per_replica=12.5&quantile=0.95&lead_time=10m",
        "/v1/scaling/team/rps?target_per_replica=50&lead_time=30m&max_replicas=2",
        "/v1/scaling/team/rps?target_per_replica=50&min_replicas=30&max_replicas=40",
        "/v1/scaling/team/rps?max_replicas=9&target_per_replica=50&min_replicas=0",
        "/v1/scaling/team/rps?target_per_replica=50&lead_time=1ms",
    ],
)
def test_fast_answers_equal_the_routes(
    client: TestClient, frozen: None, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    fast_path = find_hot(client.app)
    assert fast_path is not None
    before = fast_path.answered
    fast = client.get(url)
    assert fast_path.answered == before + 1, "the fast path did not answer"
    slow = by_app(client, monkeypatch, url)
    assert fast_path.answered == before + 1
    assert fast.status_code == slow.status_code == 200
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert fast.headers["content-length"] == str(len(fast.content))
    assert fast.content == slow.content
    assert fast.json()["series"] == "team/rps"


@pytest.mark.parametrize(
    ("url", "status", "says"),
    [
        # not the plain valid form: the app validates and names the parameter
        ("/v1/series/team/rps/forecast?horizon=soon", 422, "horizon"),
        ("/v1/series/team/rps/forecast?horizon=400d", 422, "horizon"),
        ("/v1/series/team/rps/forecast?horizon=", 422, "horizon"),
        ("/v1/series/team/rps/forecast?horizon=" + "1" * 40 + "m", 422, "horizon"),
        ("/v1/scaling/team/rps", 422, "target_per_replica"),
        ("/v1/scaling/team/rps?target_per_replica=0", 422, "target_per_replica"),
        ("/v1/scaling/team/rps?target_per_replica=inf", 422, "target_per_replica"),
        # finer than KEDA's thousandths, as the gRPC scaler refuses it (0.0004 was
        # answered with 641,870 replicas; KEDA hands the HPA a target of 0)
        ("/v1/scaling/team/rps?target_per_replica=0.0004", 422, "finer than the 0.001"),
        ("/v1/scaling/team/rps?target_per_replica=0.0015", 422, "finer than the 0.001"),
        ("/v1/scaling/team/rps?target_per_replica=5&quantile=1", 422, "quantile"),
        ("/v1/scaling/team/rps?target_per_replica=5&quantile=0.99", 422, "quantile"),
        ("/v1/scaling/team/rps?target_per_replica=5&max_replicas=0", 422, "max_replicas"),
        (
            "/v1/scaling/team/rps?target_per_replica=5&min_replicas=4&max_replicas=2",
            422,
            "max_replicas",
        ),
        ("/v1/scaling/team/rps?target_per_replica=5&lead_time=-5m", 422, "lead_time"),
        ("/v1/scaling/team/rps?target_per_replica=5&min_replicas=" + "9" * 25, 422, "min_replicas"),
        ("/v1/scaling/team/rps?target_per_replica=5&max_replicas=" + "9" * 25, 422, "max_replicas"),
        # failures: the app's 404 with its message
        ("/v1/series/nope/forecast", 404, "nope"),
        ("/v1/series/empty/forecast", 404, "empty"),
        ("/v1/scaling/nope?target_per_replica=5", 404, "nope"),
        ("/v1/scaling/empty?target_per_replica=5", 404, "empty"),
        # valid, but not a form the fast path takes: the app answers it
        ("/v1/scaling/team/rps?target_per_replica=5e1", 200, "team/rps"),
        # a parameter given twice: the app's 422 naming it (it used the last one)
        ("/v1/scaling/team/rps?target_per_replica=5&target_per_replica=50", 422, "given 2 times"),
        ("/v1/series/team/rps/forecast?horizon=15m&_=1701", 200, "team/rps"),  # cache buster
        # a parameter the route does not take: the app's 422 naming it
        ("/v1/series/team/rps/forecast?horizon=15m&extra=1", 422, "extra"),
        ("/v1/scaling/team/rps?target_per_replica=5&leadTime=1h", 422, "did you mean 'lead_time'"),
        ("/v1/series", 200, "team/rps"),
    ],
)
def test_everything_else_reaches_the_app(
    client: TestClient, url: str, status: int, says: str
) -> None:
    fast_path = find_hot(client.app)
    assert fast_path is not None
    before = fast_path.answered
    response = client.get(url)
    assert response.status_code == status, response.text
    assert says in response.text
    assert fast_path.answered == before


def test_other_methods_reach_the_app(client: TestClient) -> None:
    fast_path = find_hot(client.app)
    assert fast_path is not None
    assert client.post("/v1/scaling/team/rps?target_per_replica=5").status_code == 405
    assert client.head("/v1/series/team/rps/forecast").status_code == 405
    assert fast_path.answered == 0


def test_lead_beyond_the_forecast_is_the_apps_422(client: TestClient) -> None:
    """The forecast ends (2 h) before now + lead: the route's 422 naming lead_time."""
    fast_path = find_hot(client.app)
    assert fast_path is not None
    response = client.get("/v1/scaling/team/rps?target_per_replica=5&lead_time=3h")
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "lead_time"]
    assert fast_path.answered == 0


def test_not_installed_when_reads_need_a_token(make_settings: Any) -> None:
    settings = make_settings(api={"token": "a-real-token", "require_token_for_reads": True})
    seed(settings)
    with TestClient(create_app(settings)) as c:
        assert find_hot(c.app) is None
        assert c.get("/v1/scaling/team/rps?target_per_replica=5").status_code == 401
        ok = c.get(
            "/v1/scaling/team/rps?target_per_replica=5",
            headers={"Authorization": "Bearer a-real-token"},
        )
        assert ok.status_code == 200


def test_query_parsing_passes_through_on_doubt() -> None:
    assert hot._params(b"horizon=15m", {"horizon"}) == {"horizon": "15m"}
    assert hot._params(b"", {"horizon"}) == {}
    for bad in (b"horizon=", b"horizon=1m&horizon=2m", b"other=1", b"horizon"):
        with pytest.raises(hot._PassThrough):
            hot._params(bad, {"horizon"})
    assert hot._number("12.5") == 12.5
    for bad_number in ("1e3", "-1", ".5", "nan", "inf", "1_000", " 5"):
        with pytest.raises(hot._PassThrough):
            hot._number(bad_number)
    assert hot._count(None) is None and hot._count("3") == 3
    with pytest.raises(hot._PassThrough):
        hot._count("3.0")
