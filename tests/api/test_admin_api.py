"""Admin endpoints: bearer token required, requests queued for the scheduler."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from forecaster.api.app import create_app
from forecaster.store.db import make_engine, upgrade
from forecaster.store.repository import Store
from forecaster.store.requests import claim_next, finish

TOKEN = "t0ken-for-tests-only"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app_and_engine(make_settings: Any) -> Any:
    settings = make_settings(api={"token": TOKEN})
    engine = make_engine(settings.database)
    upgrade(engine)
    Store(engine).ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=12)
    app = create_app(settings)
    with TestClient(app) as client:
        yield client, engine
    engine.dispose()


def test_write_endpoints_need_the_token(app_and_engine: Any) -> None:
    client, _ = app_and_engine
    r = client.post("/v1/admin/jobs", json={"job": "train"})
    assert r.status_code == 401 and "bearer token" in r.json()["detail"]
    r = client.post("/v1/admin/jobs", json={"job": "train"}, headers={"Authorization": "Bearer x"})
    assert r.status_code == 403 and r.json()["detail"] == "invalid token"
    r = client.post("/v1/admin/jobs", json={"job": "train"}, headers={"Authorization": "Basic x"})
    assert r.status_code == 401
    # the token is checked before the body is read: no token and a bad body is a 401
    r = client.post(
        "/v1/admin/jobs", content=b"garbage", headers={"content-type": "application/json"}
    )
    assert r.status_code == 401
    r = client.post(
        "/v1/admin/jobs", json={"job": "explode"}, headers={"Authorization": "Bearer x"}
    )
    assert r.status_code == 403


def test_request_is_queued_claimed_and_reported(app_and_engine: Any) -> None:
    client, engine = app_and_engine
    r = client.post("/v1/admin/jobs", json={"job": "train", "series": "rps"}, headers=AUTH)
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "pending" and body["job"] == "train" and body["series"] == "rps"
    claimed = claim_next(engine)
    assert claimed is not None and claimed.id == body["id"] and claimed.status == "running"
    assert claim_next(engine) is None
    finish(engine, claimed.id, ok=True, detail="1 series ok")
    state = client.get(f"/v1/admin/jobs/{body['id']}", headers=AUTH).json()
    assert state["status"] == "done" and state["detail"] == "1 series ok"


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"job": "explode"}, 422),
        ({"job": "train", "series": "nope"}, 404),
        ({"job": "train", "colour": "red"}, 422),
        ({"job": "reload", "series": "rps"}, 422),  # reload reads the whole spec
        ({}, 422),
    ],
)
def test_bad_requests(app_and_engine: Any, payload: dict[str, str], status: int) -> None:
    client, _ = app_and_engine
    r = client.post("/v1/admin/jobs", json=payload, headers=AUTH)
    assert r.status_code == status
    assert r.json()["detail"]


def test_unknown_request_id(app_and_engine: Any) -> None:
    client, _ = app_and_engine
    r = client.get("/v1/admin/jobs/999", headers=AUTH)
    assert r.status_code == 404 and "no job request 999" in r.json()["detail"]


def test_store_outage_is_503_for_reads_of_a_request_too(app_and_engine: Any) -> None:
    client, engine = app_and_engine
    r = client.post("/v1/admin/jobs", json={"job": "train"}, headers=AUTH)
    assert r.status_code == 202
    with engine.begin() as conn:  # the table unreadable, as during a store outage
        conn.exec_driver_sql("ALTER TABLE job_requests RENAME TO job_requests_away")
    # the GET was a bare 500 with a traceback in the log; the POST beside it said 503
    r = client.get(f"/v1/admin/jobs/{r.json()['id']}", headers=AUTH)
    assert r.status_code == 503 and "cannot read job request" in r.json()["detail"]
    r = client.post("/v1/admin/jobs", json={"job": "train"}, headers=AUTH)
    assert r.status_code == 503 and "cannot queue the train request" in r.json()["detail"]


def test_admin_refused_when_no_token_is_configured(make_settings: Any) -> None:
    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/admin/jobs", json={"job": "train"}, headers=AUTH)
        assert r.status_code == 403 and "FORECASTER_API__TOKEN" in r.json()["detail"]


def test_oversized_requests_are_refused(app_and_engine: Any) -> None:
    client, _ = app_and_engine
    r = client.get("/v1/series", params={"x": "a" * 5000})
    assert r.status_code == 414 and "query string longer" in r.json()["detail"]
    r = client.post(
        "/v1/admin/jobs",
        content=b"{" + b" " * 70000 + b"}",
        headers={**AUTH, "content-type": "application/json"},
    )
    assert r.status_code == 413 and "larger than" in r.json()["detail"]

    def chunked() -> Any:  # no Content-Length: the limit applies as it streams in
        yield b"{"
        for _ in range(70):
            yield b" " * 1000
        yield b"}"

    r = client.post(
        "/v1/admin/jobs", content=chunked(), headers={**AUTH, "content-type": "application/json"}
    )
    assert r.status_code == 413 and "larger than" in r.json()["detail"]

    def small() -> Any:
        yield b'{"job": '
        yield b'"train"}'

    r = client.post(
        "/v1/admin/jobs", content=small(), headers={**AUTH, "content-type": "application/json"}
    )
    assert r.status_code == 202, r.text


def test_cors_is_off_by_default(app_and_engine: Any) -> None:
    client, _ = app_and_engine
    r = client.get("/v1/series", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_request_id_out_of_range_is_422(app_and_engine: Any) -> None:
    client, _ = app_and_engine
    r = client.get("/v1/admin/jobs/9223372036854775808", headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "request_id"]


def test_a_spec_series_not_stored_yet_can_be_requested(
    make_settings: Any, write_spec: Any, nab: Any, tmp_path: Any
) -> None:
    """A series the spec names but nothing stored yet (just added by a reload) is
    accepted; a name in neither the store nor the spec is still 404, listing both."""
    trace = str(nab / "realAWSCloudwatch/elb_request_count_8c0756.csv")
    spec = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "rps", "file": trace}, {"name": "checkout_rps", "file": trace}],
        history="3d",
        horizon="1h",
    )
    settings = make_settings(spec=spec, api={"token": TOKEN})
    engine = make_engine(settings.database)
    upgrade(engine)
    Store(engine).ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=12)
    try:
        with TestClient(create_app(settings)) as client:
            r = client.post(
                "/v1/admin/jobs", json={"job": "ingest", "series": "checkout_rps"}, headers=AUTH
            )
            assert r.status_code == 202, r.text
            assert r.json()["series"] == "checkout_rps"
            r = client.post(
                "/v1/admin/jobs", json={"job": "ingest", "series": "nope"}, headers=AUTH
            )
            assert r.status_code == 404
            assert "known: checkout_rps, rps" in r.json()["detail"]
    finally:
        engine.dispose()


def test_a_body_sent_as_a_form_is_415_saying_how_to_send_json(app_and_engine: Any) -> None:
    """curl -d sends a form: the 422 said only "Input should be a valid dictionary"."""
    client, _ = app_and_engine
    r = client.post(
        "/v1/admin/jobs",
        content=b'{"job": "train"}',
        headers={**AUTH, "content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415
    assert "Content-Type: application/json" in r.json()["detail"]
    # without a token it is still the 401 first
    r = client.post(
        "/v1/admin/jobs",
        content=b'{"job": "train"}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 401
    # no content type at all: FastAPI does not read that as JSON either
    r = client.post("/v1/admin/jobs", content=b'{"job": "train"}', headers=AUTH)
    assert r.status_code == 415
    assert "sent without a Content-Type" in r.json()["detail"]
    # JSON with a charset is JSON
    r = client.post(
        "/v1/admin/jobs",
        content=b'{"job": "train"}',
        headers={**AUTH, "content-type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 202, r.text
