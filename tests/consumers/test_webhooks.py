"""Webhooks against a real HTTP receiver on loopback: signature, retries, at most once.

Also runs the scheduled detection job end to end on a real store, pushing regression
events to the receiver, and checks that a restarted scheduler does not re-send them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import pytest

from forecaster.consumers.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    WebhookSender,
    WebhookTarget,
    sign,
    verify_signature,
)
from forecaster.store.consumers_repo import ConsumersRepo
from forecaster.store.db import make_engine, upgrade
from forecaster.store.repository import ForecastPoint, Store
from tests.support.forecasts import publish_bands

SECRET = b"s3cr3t-for-tests"


class Receiver:
    """A loopback HTTP server recording verified deliveries; can fail the first N requests."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_first = 0
        self.fail_status = 503
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                valid = verify_signature(SECRET, body, self.headers[SIGNATURE_HEADER])
                receiver.received.append(
                    {
                        "key": self.headers[DELIVERY_HEADER],
                        "valid": valid,
                        "json": json.loads(body),
                    }
                )
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(receiver.fail_status)
                    if 300 <= receiver.fail_status < 400:
                        self.send_header("Location", "https://warmer.example/hook")
                else:
                    self.send_response(200 if valid else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def store_url(db_url: str) -> str:
    engine = make_engine_from(db_url)
    upgrade(engine)
    engine.dispose()
    return db_url


def make_engine_from(url: str) -> Any:
    from forecaster.config import DatabaseSettings

    return make_engine(DatabaseSettings(url=url))


def _sender(url: str, sleeps: list[float]) -> tuple[WebhookSender, Any]:
    engine = make_engine_from(url)
    return WebhookSender(ConsumersRepo(Store(engine)), sleep=sleeps.append), engine


def test_signature_round_trip_and_rejections() -> None:
    body = b'{"a":1}'
    header = sign(SECRET, body, 1_700_000_000)
    assert verify_signature(SECRET, body, header, now=1_700_000_010)
    assert not verify_signature(SECRET, body + b" ", header, now=1_700_000_010)
    assert not verify_signature(b"other", body, header, now=1_700_000_010)
    assert not verify_signature(SECRET, body, header, now=1_700_009_999)  # stale
    assert not verify_signature(SECRET, body, "garbage")


def test_signed_delivery_at_most_once_across_a_restart(receiver: Receiver, store_url: str) -> None:
    target = WebhookTarget(url=receiver.url, secret=SECRET)
    sleeps: list[float] = []
    sender, engine = _sender(store_url, sleeps)
    outcome = sender.deliver(target, key="w:1", kind="test", series="s", payload={"n": 1})
    assert outcome.status == "sent" and outcome.attempts == 1
    assert sender.deliver(target, key="w:1", kind="test", series="s", payload={"n": 1}).status == (
        "skipped"
    )
    sender.close()
    engine.dispose()
    # "restart": a new process-like sender over a fresh engine on the same database
    sender2, engine2 = _sender(store_url, sleeps)
    again = sender2.deliver(target, key="w:1", kind="test", series="s", payload={"n": 1})
    assert again.status == "skipped"
    assert sender2.deliver(target, key="w:2", kind="test", series="s", payload={"n": 2}).status == (
        "sent"
    )
    records = ConsumersRepo(Store(engine2)).deliveries()
    sender2.close()
    engine2.dispose()
    assert [r["json"]["n"] for r in receiver.received] == [1, 2]
    assert all(r["valid"] for r in receiver.received)
    assert [(r["key"], r["status"], r["attempts"]) for r in records] == [
        ("w:1", "sent", 1),
        ("w:2", "sent", 1),
    ]


def test_a_key_outside_ascii_is_delivered_percent_encoded(
    receiver: Receiver, store_url: str
) -> None:
    """A ``split_by`` member's name holds its label values, which may be any text
    (``route="/café"``): the delivery key went into a header as it was, httpx refused
    it before sending (UnicodeEncodeError) and the claimed delivery was never sent nor
    recorded as failed. The header carries it percent-encoded (UTF-8); the store and
    the payload keep the name as it is."""
    target = WebhookTarget(url=receiver.url, secret=SECRET)
    sender, engine = _sender(store_url, [])
    try:
        keys = ['cache-warming:by_route{route="/café 100%"}:2026-11-29T10:05Z', "w:\ttab\there"]
        for key in keys:
            outcome = sender.deliver(target, key=key, kind="test", series="s", payload={"k": key})
            assert outcome.status == "sent", outcome
        records = ConsumersRepo(Store(engine)).deliveries()
    finally:
        sender.close()
        engine.dispose()
    assert [r["json"]["k"] for r in receiver.received] == keys
    assert all(r["valid"] for r in receiver.received)
    headers = [r["key"] for r in receiver.received]
    assert headers[0] == ('cache-warming:by_route{route="/caf%C3%A9%20100%25"}:2026-11-29T10:05Z')
    assert [unquote(h) for h in headers] == keys
    assert sorted((r["key"], r["status"]) for r in records) == sorted((k, "sent") for k in keys)


def test_retries_with_backoff_then_gives_up_for_good(receiver: Receiver, store_url: str) -> None:
    target = WebhookTarget(url=receiver.url, secret=SECRET, retries=3, backoff_seconds=0.5)
    sleeps: list[float] = []
    sender, engine = _sender(store_url, sleeps)
    receiver.fail_first = 2
    ok = sender.deliver(target, key="r:1", kind="test", series="s", payload={})
    assert (ok.status, ok.attempts) == ("sent", 3)
    assert sleeps == [0.5, 1.0]
    receiver.fail_first, receiver.fail_status = 1, 400  # a client error is not retried
    bad = sender.deliver(target, key="r:2", kind="test", series="s", payload={})
    assert (bad.status, bad.attempts, bad.status_code) == ("failed", 1, 400)
    assert sender.deliver(target, key="r:2", kind="test", series="s", payload={}).status == (
        "skipped"
    )
    closed = WebhookTarget(
        url="http://127.0.0.1:9/nothing", secret=SECRET, retries=2, timeout_seconds=1.0
    )
    down = sender.deliver(closed, key="r:3", kind="test", series="s", payload={})
    assert (down.status, down.attempts, down.status_code) == ("failed", 3, None)
    assert "Error" in down.error
    # a redirect (http:// moved to https://) is not followed and says where it points
    # (it was "HTTP 308: ", the body of a redirect being empty)
    receiver.fail_first, receiver.fail_status = 1, 308
    moved = sender.deliver(target, key="r:5", kind="test", series="s", payload={})
    assert (moved.status, moved.attempts, moved.status_code) == ("failed", 1, 308)
    assert "redirected to https://warmer.example/hook" in moved.error
    assert "set the webhook URL to it" in moved.error
    # a URL httpx refuses (it got past an older spec check): recorded failed, not left
    # claimed as "sending" forever with the job crashed
    broken = WebhookTarget(url="http://[::1/", secret=SECRET, retries=2)
    refused = sender.deliver(broken, key="r:4", kind="test", series="s", payload={})
    assert (refused.status, refused.attempts) == ("failed", 1)
    assert "InvalidURL" in refused.error
    (row,) = [r for r in ConsumersRepo(Store(engine)).deliveries() if r["key"] == "r:4"]
    assert row["status"] == "failed"

    # a payload JSON cannot write failed after the claim and left the row "sending"
    odd = sender.deliver(target, key="r:6", kind="test", series="s", payload={"at": T0})
    assert odd.status == "failed" and "TypeError" in odd.error
    (row,) = [r for r in ConsumersRepo(Store(engine)).deliveries() if r["key"] == "r:6"]
    assert row["status"] == "failed" and "not JSON serializable" in row["error"]
    sender.close()
    engine.dispose()


STEP = timedelta(minutes=5)
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _watched_latency(
    store_url: str, make_settings: Any, write_spec: Any, tmp_path: Any, watch: dict[str, Any]
) -> tuple[Any, Any, Any, int]:
    """A spec with one watched latency series ``lat`` and, published at ``T0``, a
    forecast whose band is [80, 120] ms for the next 24 steps.

    Returns:
        ``(settings, spec, ctx, series_id)``.
    """
    from forecaster.jobs.context import JobContext
    from forecaster.specs import load_spec

    path = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "lat", "query": "up", "kind": "latency", "unit": "ms", "watch": watch}],
        step="5m",
        horizon="2h",
    )
    settings = make_settings(db=store_url, spec=path)
    ctx = JobContext.create(settings)
    sid = ctx.store.ensure_series(
        name="lat", family="lat", kind="latency", unit="ms", step_seconds=300, horizon_steps=24
    )
    ctx.store.publish_forecast(
        series="lat",
        generated_at=T0,
        origin=T0,
        step_seconds=300,
        level=90.0,
        model_name="prophet",
        model_version="7",
        run_id="r",
        points=[
            ForecastPoint(step=i, ds=T0 + i * STEP, yhat=100.0, yhat_lower=80.0, yhat_upper=120.0)
            for i in range(1, 25)
        ],
        keep_recent=timedelta(days=1),
    )
    return settings, load_spec(path).series[0], ctx, sid


def _pushed_up_watch(receiver: Receiver, *, persist: str) -> dict[str, Any]:
    """A watch of rises persisting ``persist`` whose events are pushed to ``receiver``,
    signed with the secret in ``HOOK_SECRET``; persistence alone (the bar has its own
    test)."""
    return {
        "direction": "up",
        "persist": persist,
        "baseline_quantile": None,
        "webhook": receiver.url,
        "secret_env": "HOOK_SECRET",
    }


def test_detection_job_pushes_events_once(
    receiver: Receiver,
    store_url: str,
    make_settings: Any,
    write_spec: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from forecaster.jobs.context import JobContext
    from forecaster.jobs.detect import detect_series

    monkeypatch.setenv("HOOK_SECRET", SECRET.decode())
    watch = _pushed_up_watch(receiver, persist="15m")
    settings, spec, ctx, sid = _watched_latency(
        store_url, make_settings, write_spec, tmp_path, watch
    )
    latencies = [100, 100, 200, 210, 250, 220, 100, 100, 30, 30, 30, 100]
    observations = [(T0 + (i + 1) * STEP, float(v)) for i, v in enumerate(latencies)]
    ctx.store.upsert_observations(sid, observations[:5])
    first = detect_series(ctx, spec=spec, name="lat", now=T0 + 5 * STEP)
    assert (first.points, first.opened, first.closed) == (5, 1, 0)
    ctx.store.engine.dispose()

    ctx2 = JobContext.create(settings)  # the scheduler restarted
    ctx2.store.upsert_observations(sid, observations)
    second = detect_series(ctx2, spec=spec, name="lat", now=T0 + 12 * STEP)
    assert (second.points, second.opened, second.closed) == (7, 0, 1)  # "down" is not watched
    again = detect_series(ctx2, spec=spec, name="lat", now=T0 + 12 * STEP)
    assert again.points == 0 and again.webhooks == []
    repo = ConsumersRepo(ctx2.store)
    (event,) = repo.events(series="lat")
    assert event.start == T0 + 3 * STEP and event.end == T0 + 7 * STEP
    assert event.peak_score == pytest.approx(1 + 130 / 40)
    assert event.model == "prophet v7" and event.direction == "up"
    assert len(repo.scores(sid)) == 12
    ctx2.store.engine.dispose()
    types = [r["json"]["type"] for r in receiver.received]
    assert types == ["regression.opened", "regression.closed"]
    assert all(r["valid"] for r in receiver.received)


def test_a_missing_webhook_secret_stores_nothing_until_it_is_set(
    receiver: Receiver,
    store_url: str,
    make_settings: Any,
    write_spec: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Events opened while the secret variable was missing were stored, and their
    "opened" push was never sent once it was set."""
    from forecaster.errors import ConfigError
    from forecaster.jobs.detect import detect_series

    monkeypatch.delenv("HOOK_SECRET", raising=False)
    watch = _pushed_up_watch(receiver, persist="10m")
    _, spec, ctx, sid = _watched_latency(store_url, make_settings, write_spec, tmp_path, watch)
    ctx.store.upsert_observations(sid, [(T0 + (i + 1) * STEP, 250.0) for i in range(4)])
    with pytest.raises(ConfigError, match="'HOOK_SECRET' is not set"):
        detect_series(ctx, spec=spec, name="lat", now=T0 + 4 * STEP)
    assert ConsumersRepo(ctx.store).events(series="lat") == []
    monkeypatch.setenv("HOOK_SECRET", SECRET.decode())
    result = detect_series(ctx, spec=spec, name="lat", now=T0 + 4 * STEP)
    assert result.opened == 1 and result.webhooks[0].endswith(":opened: sent")
    assert [d["json"]["type"] for d in receiver.received] == ["regression.opened"]
    ctx.store.engine.dispose()


def test_the_open_event_of_a_retired_member_is_pushed_closed_saying_why(
    receiver: Receiver,
    store_url: str,
    make_settings: Any,
    write_spec: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A receiver told "opened" for a pod that then went away never heard "closed": the
    member was no longer watched, its event open for ever."""
    from forecaster import scheduler as scheduler_module
    from forecaster.jobs.context import JobContext
    from forecaster.jobs.detect import detect_job

    monkeypatch.setenv("HOOK_SECRET", SECRET.decode())
    entry = {
        "name": "fam",
        "query": "sum by (pod) (up)",
        "split_by": ["pod"],
        "retire_after": "10m",
        "watch": _pushed_up_watch(receiver, persist="2m"),
    }
    path = write_spec(tmp_path / "spec.yaml", [entry], step="1m", horizon="1h")
    ctx = JobContext.create(make_settings(db=store_url, spec=path))
    monkeypatch.setitem(scheduler_module._CONTEXT, "ctx", ctx)
    step = timedelta(minutes=1)
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=40)
    ids = {}
    for pod in ("a", "gone"):
        name = f'fam{{pod="{pod}"}}'
        ids[pod] = ctx.store.ensure_series(
            name=name, family="fam", labels={"pod": pod}, step_seconds=60, horizon_steps=60
        )
        publish_bands(ctx.store, name, t0, step, [(100.0, 80.0, 120.0)] * 60)
    ctx.store.upsert_observations(ids["gone"], [(t0 + k * step, 250.0) for k in range(1, 4)])
    ctx.store.upsert_observations(ids["a"], [(t0 + k * step, 100.0) for k in range(1, 4)])
    detect_job("fam")
    ctx.store.upsert_observations(ids["a"], [(t0 + k * step, 100.0) for k in range(4, 26)])
    detect_job("fam")  # the pod has been silent 22 minutes: retired
    detect_job("fam")
    opened, closed = (r["json"] for r in receiver.received)
    assert opened["type"] == "regression.opened" and "reason" not in opened
    assert closed["type"] == "regression.closed"
    assert closed["series"] == 'fam{pod="gone"}' and closed["event_id"] == opened["event_id"]
    assert closed["end"] == (t0 + 3 * step).isoformat()  # the last observation judged
    assert closed["reason"] == "retired (silent longer than retire_after 10m)"
    gone = [r for r in ctx.store.last_job_runs(10) if r["series"] == 'fam{pod="gone"}']
    assert [(r["job"], r["ok"]) for r in gone[:2]] == [("detect", True)] * 2  # closed, opened
    assert "closed=1" in gone[0]["detail"]
    ctx.store.engine.dispose()


def test_detection_job_learns_each_series_bar_from_its_stored_scores(
    store_url: str, make_settings: Any, write_spec: Any, tmp_path: Any
) -> None:
    """Nothing opens while learning; then only deviations beyond the series' own usual ones."""
    from forecaster.jobs.context import JobContext
    from forecaster.jobs.detect import detect_series

    watch = {
        "direction": "up",
        "persist": "10m",
        "learning": "30m",
        "baseline_window": "2h",
        "baseline_refresh": "5m",  # one step: the bar kept in the state is due at each row
    }
    settings, spec, ctx, sid = _watched_latency(
        store_url, make_settings, write_spec, tmp_path, watch
    )
    # score 3.0 while learning, 0 for half an hour, 3.0 again (usual now), back, then 5.5
    latencies = [200] * 3 + [100] * 6 + [200] * 3 + [100] + [300] * 3
    observations = [(T0 + (i + 1) * STEP, float(v)) for i, v in enumerate(latencies)]
    ctx.store.upsert_observations(sid, observations[:3])
    learning = detect_series(ctx, spec=spec, name="lat", now=T0 + 3 * STEP)
    assert (learning.points, learning.opened) == (3, 0)
    assert ConsumersRepo(ctx.store).detector_bars() == {}  # still learning: no bar
    ctx.store.engine.dispose()

    ctx2 = JobContext.create(settings)  # a restart: the bar comes from the stored scores
    ctx2.store.upsert_observations(sid, observations)
    later = detect_series(ctx2, spec=spec, name="lat", now=T0 + 16 * STEP)
    assert (later.points, later.opened) == (13, 1)
    (event,) = ConsumersRepo(ctx2.store).events(series="lat")
    assert event.start == T0 + 14 * STEP  # the 3.0 run (at the bar) opened nothing
    assert event.peak_score == pytest.approx(5.5)
    # the bar exported on /metrics: 99.9 % of the last 2 h of scores (3 x 5.5 the highest)
    assert ConsumersRepo(ctx2.store).detector_bars()["lat"] == pytest.approx(5.5)
    state, _ = ConsumersRepo(ctx2.store).detector_state(sid)
    assert state is not None and state["bar_at"] == (T0 + 16 * STEP).isoformat()
    ctx2.store.engine.dispose()


def test_detection_job_judges_against_the_reference_band(
    store_url: str, make_settings: Any, write_spec: Any, tmp_path: Any
) -> None:
    """A served forecast that already followed a regression up (band [180, 260]) would
    hide it; the reference band published beside it ([80, 120]) does not."""
    from forecaster.jobs.detect import detect_series

    watch = {"direction": "up", "persist": "10m", "baseline_quantile": None}
    _, spec, ctx, sid = _watched_latency(store_url, make_settings, write_spec, tmp_path, watch)
    ctx.store.publish_forecast(
        series="lat",
        generated_at=T0 + timedelta(minutes=1),
        origin=T0,
        step_seconds=300,
        level=90.0,
        model_name="prophet",
        model_version="8",
        run_id="r",
        points=[
            ForecastPoint(
                step=i,
                ds=T0 + i * STEP,
                yhat=220.0,
                yhat_lower=180.0,
                yhat_upper=260.0,
                reference=(100.0, 80.0, 120.0),
            )
            for i in range(1, 25)
        ],
        keep_recent=timedelta(days=1),
    )
    ctx.store.upsert_observations(sid, [(T0 + (i + 1) * STEP, 200.0) for i in range(4)])
    result = detect_series(ctx, spec=spec, name="lat", now=T0 + 4 * STEP)
    assert (result.points, result.opened) == (4, 1)
    repo = ConsumersRepo(ctx.store)
    rows = repo.scores(sid)
    assert {(r.yhat, r.yhat_lower, r.yhat_upper) for r in rows} == {(100.0, 80.0, 120.0)}
    assert [r.score for r in rows] == pytest.approx([1 + 80 / 40] * 4)
    (event,) = repo.events(series="lat")
    assert event.model == "prophet v8"
    ctx.store.engine.dispose()


def _warmed_rps(
    receiver: Receiver,
    store_url: str,
    make_settings: Any,
    write_spec: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    *,
    lead: str,
    stale_after: int,
) -> tuple[Any, Any, Any]:
    """A spec with one series ``rps`` (5-minute steps) whose cache-warming windows are
    pushed to ``receiver`` ``lead`` ahead (forecasts stale after ``stale_after``
    seconds), and its stored series.

    Returns:
        ``(settings, spec, ctx)``.
    """
    from forecaster.jobs.context import JobContext
    from forecaster.specs import load_spec

    monkeypatch.setenv("HOOK_SECRET", SECRET.decode())
    warming = {"lead": lead, "min_increase": 0.3, "webhook": receiver.url}
    path = write_spec(
        tmp_path / "spec.yaml",
        [
            {
                "name": "rps",
                "query": "up",
                "unit": "req/s",
                "cache_warming": {**warming, "secret_env": "HOOK_SECRET"},
            }
        ],
        step="5m",
        horizon="2h",
    )
    settings = make_settings(db=store_url, spec=path, schedule={"stale_after_seconds": stale_after})
    ctx = JobContext.create(settings)
    ctx.store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=24)
    return settings, load_spec(path).series[0], ctx


def _publish_levels(store: Store, origin: datetime, levels: list[float]) -> None:
    """A forecast of ``rps`` made at ``origin``: ``levels`` with a +-20 % band."""
    publish_bands(
        store, "rps", origin, STEP, [(v, 0.8 * v, 1.2 * v) for v in levels], model=("lightgbm", "3")
    )


def test_cache_warming_job_pushes_each_window_once_and_says_how_old_its_forecast_is(
    receiver: Receiver,
    store_url: str,
    make_settings: Any,
    write_spec: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scheduler's push: when warm_at arrives the window is POSTed, signed, once
    (a restarted scheduler does not send it again), with the forecast's age."""
    from forecaster.jobs.context import JobContext
    from forecaster.jobs.detect import warm_series

    settings, spec, ctx = _warmed_rps(
        receiver,
        store_url,
        make_settings,
        write_spec,
        tmp_path,
        monkeypatch,
        lead="10m",
        stale_after=3600,
    )
    # flat at 100, a ramp to 300 starting at step 6, back down from step 12
    levels = [100.0] * 5 + [150.0, 200.0, 250.0, 300.0, 300.0, 300.0] + [100.0] * 13
    _publish_levels(ctx.store, T0, levels)
    assert warm_series(ctx, spec=spec, name="rps", now=T0 + STEP) == []  # not yet time
    (sent,) = warm_series(ctx, spec=spec, name="rps", now=T0 + 4 * STEP)
    assert sent.endswith(": sent")
    ctx.store.engine.dispose()
    later = JobContext.create(settings)  # the scheduler restarted
    again = warm_series(later, spec=spec, name="rps", now=T0 + 5 * STEP)
    assert [line.split(": ")[-1] for line in again] != ["sent"]
    later.store.engine.dispose()
    (delivery,) = receiver.received
    body = delivery["json"]
    assert delivery["valid"] and body["type"] == "cache_warming.window"
    assert body["expected_peak"] == 300.0 and body["model"] == "lightgbm v3"
    assert datetime.fromisoformat(body["warm_at"]) <= T0 + 4 * STEP
    assert body["forecast_generated_at"] == T0.isoformat() and body["stale"] is False


def test_a_ramp_under_way_is_not_pushed_again_and_a_second_one_in_the_hour_is(
    receiver: Receiver,
    store_url: str,
    make_settings: Any,
    write_spec: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once a ramp has begun its start is "now" in every new forecast: keyed by the hour
    of its start it was pushed again at each hour, and a second ramp starting in the
    same hour as the first was never pushed."""
    from forecaster.jobs.detect import warm_series

    _, spec, ctx = _warmed_rps(
        receiver,
        store_url,
        make_settings,
        write_spec,
        tmp_path,
        monkeypatch,
        lead="5m",
        stale_after=36000,
    )

    def publish(origin: datetime, levels: list[float]) -> None:
        _publish_levels(ctx.store, origin, levels)

    up, flat = [150.0, 200.0, 250.0, 300.0], [100.0] * 3
    # 11:40: a ramp from 11:50 to a peak at 12:05
    publish(T0 - 20 * timedelta(minutes=1), flat[:2] + up + flat * 6)
    (first,) = warm_series(ctx, spec=spec, name="rps", now=T0 - timedelta(minutes=12))
    assert first.endswith(": sent")
    # 12:00, the ramp late: the new forecast starts it "now", in the next hour
    publish(T0, up + flat[:2] + up + flat * 5)
    again = warm_series(ctx, spec=spec, name="rps", now=T0 + timedelta(minutes=1))
    assert len(again) == 1 and "skipped (the window of" in again[0]
    # 12:30: the second ramp of the hour (from 12:30, peak 12:50) is due and pushed
    second = warm_series(ctx, spec=spec, name="rps", now=T0 + timedelta(minutes=30))
    assert [line.rsplit(": ", 1)[-1] for line in second] == ["sent"]
    peaks = [d["json"]["peak_at"] for d in receiver.received]
    assert len(peaks) == 2 and peaks[0] < peaks[1]
    ctx.store.engine.dispose()


def test_a_series_with_nothing_published_yet_has_nothing_to_push(
    receiver: Receiver,
    store_url: str,
    make_settings: Any,
    write_spec: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before its first training (a new series, a new pod of a family waiting for 12
    observations) the warm job recorded a failed run every minute ("has no published
    forecast yet"), counted in forecaster_job_errors_total, as publish once did."""
    from forecaster.jobs.detect import _each_member, warm_series

    _, spec, ctx = _warmed_rps(
        receiver,
        store_url,
        make_settings,
        write_spec,
        tmp_path,
        monkeypatch,
        lead="10m",
        stale_after=3600,
    )
    assert warm_series(ctx, spec=spec, name="rps", now=T0) == []
    _each_member(ctx, "rps", "warm", warm_series)
    (run,) = ctx.store.last_job_runs(1)
    assert run["ok"], run["detail"]
    assert receiver.received == []
    ctx.store.engine.dispose()


def test_a_delivery_that_failed_for_good_fails_the_run(
    store_url: str, make_settings: Any, write_spec: Any, tmp_path: Any
) -> None:
    """A receiver that was down showed only as a log line: the run was recorded ok and
    forecaster_job_errors_total stayed 0."""
    from forecaster.jobs.context import JobContext
    from forecaster.jobs.detect import _each_member

    path = write_spec(tmp_path / "spec.yaml", [{"name": "rps", "query": "up"}], step="5m")
    ctx = JobContext.create(make_settings(db=store_url, spec=path))
    ctx.store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=24)
    outcomes = iter([["cache-warming:rps:a: sent"], ["cache-warming:rps:b: failed"]])

    def push(_ctx: Any, *, spec: Any, name: str) -> list[str]:  # the job's work, stubbed
        return next(outcomes)

    _each_member(ctx, "rps", "warm", push)
    _each_member(ctx, "rps", "warm", push)
    failed, fine = ctx.store.last_job_runs(2)
    assert fine["ok"] and not failed["ok"]
    assert "1 webhook delivery(ies) failed" in failed["detail"]
    assert "cache-warming:rps:b: failed" in failed["detail"]
    ctx.store.engine.dispose()


def test_windows_pushed_under_the_earlier_hour_keys_are_not_pushed_again() -> None:
    """After an upgrade the windows the earlier release had pushed (keyed by the hour of
    their start) went out a second time under the new keys."""
    from forecaster.jobs.detect import _window_of

    old = 'cache-warming:fam{route="/a"}:2026-11-29T17'
    assert _window_of(old) == (
        old,
        (datetime(2026, 11, 29, 17, tzinfo=UTC), datetime(2026, 11, 29, 18, tzinfo=UTC)),
    )
    new = 'cache-warming:fam{route="/a"}:2026-11-29T17:10Z/2026-11-29T17:15Z'
    assert _window_of(new) == (
        new,
        (
            datetime(2026, 11, 29, 17, 10, tzinfo=UTC),
            datetime(2026, 11, 29, 17, 15, tzinfo=UTC),
        ),
    )
    for other in ("regression:lat:3:opened", "cache-warming:x:soon", "2026-11-29T17"):
        assert _window_of(other) is None
