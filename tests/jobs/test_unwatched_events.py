"""Regression events of a series the scheduler stops watching: a retired ``split_by``
member, a spec whose ``watch:`` was removed (reloaded), a series removed from the
spec. Their open events were never closed (``forecaster_regression_open`` stayed 1, an
alert that never resolved) and their last anomaly score was exported for ever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from forecaster import scheduler as scheduler_module
from forecaster.api.consumers_view import AnomalyCollector, ConsumerView
from forecaster.jobs.context import JobContext
from forecaster.store.consumers_repo import ConsumersRepo
from forecaster.store.repository import Store
from tests.support.forecasts import publish_bands

STEP = timedelta(minutes=1)
WATCH = {"direction": "up", "persist": "2m", "baseline_quantile": None}
GONE = 'fam{pod="gone"}'
KEPT = 'fam{pod="a"}'
#: The members' names as label values in the exposition (quotes escaped).
GONE_LABEL = GONE.replace('"', '\\"')
KEPT_LABEL = KEPT.replace('"', '\\"')


def _metrics(store: Store) -> str:
    """The consumer gauges of ``/metrics`` as the API exports them."""
    view = ConsumerView(store)
    assert view.refresh()
    registry = CollectorRegistry()
    registry.register(AnomalyCollector(view))
    return generate_latest(registry).decode()


def _watched(ctx: JobContext, name: str, family: str, t0: datetime, **labels: str) -> int:
    """Store ``name`` (a member of ``family``) with a forecast made at ``t0`` whose band
    is [80, 120] for the next hour; its series id."""
    sid = ctx.store.ensure_series(
        name=name, family=family, labels=labels, step_seconds=60, horizon_steps=60
    )
    publish_bands(ctx.store, name, t0, STEP, [(100.0, 80.0, 120.0)] * 60)
    return sid


def _observe(ctx: JobContext, sid: int, t0: datetime, steps: range, value: float) -> None:
    ctx.store.upsert_observations(sid, [(t0 + k * STEP, value) for k in steps])


@pytest.fixture
def t0() -> datetime:
    """Forty minutes ago, on the minute (the first detection looks back an hour)."""
    return datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=40)


def test_a_retired_member_s_open_event_is_closed_and_its_gauges_dropped(
    tmp_path: Path,
    make_settings: Any,
    write_spec: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    t0: datetime,
) -> None:
    entry = {
        "name": "fam",
        "query": "sum by (pod) (up)",
        "split_by": ["pod"],
        "retire_after": "10m",
        "watch": WATCH,
    }
    path = write_spec(tmp_path / "spec.yaml", [entry], step="1m", horizon="1h")
    ctx = JobContext.create(make_settings(spec=path))
    monkeypatch.setitem(scheduler_module._CONTEXT, "ctx", ctx)
    kept = _watched(ctx, KEPT, "fam", t0, pod="a")
    gone = _watched(ctx, GONE, "fam", t0, pod="gone")
    _observe(ctx, kept, t0, range(1, 4), 100.0)
    _observe(ctx, gone, t0, range(1, 4), 250.0)  # a regression, then the pod goes away
    scheduler_module_detect(ctx)
    repo = ConsumersRepo(ctx.store)
    (event,) = repo.events(series=GONE)
    assert event.end is None
    assert f'forecaster_regression_open{{direction="up",series="{GONE_LABEL}"}} 1.0' in _metrics(
        ctx.store
    )

    _observe(ctx, kept, t0, range(4, 26), 100.0)  # 22 minutes on: the pod is retired
    caplog.set_level("INFO", logger="forecaster.jobs.detect")
    scheduler_module_detect(ctx)
    (event,) = repo.events(series=GONE)
    assert event.end == t0 + 3 * STEP  # the last observation judged
    # and why, for whoever lists the events (GET /v1/regressions)
    assert event.closed_reason is not None
    assert event.closed_reason.startswith("no longer watched: retired")
    assert f"{GONE}: regression event {event.id} closed" in caplog.text
    assert "retired" in caplog.text
    text = _metrics(ctx.store)
    assert f'series="{GONE_LABEL}"' not in text  # no longer watched: no gauges
    assert f'forecaster_regression_open{{direction="up",series="{KEPT_LABEL}"}} 0.0' in text
    assert f'forecaster_anomaly_score{{series="{KEPT_LABEL}"}} 0.0' in text
    scheduler_module_detect(ctx)  # closed once
    assert [e.end for e in repo.events(series=GONE)] == [t0 + 3 * STEP]

    _observe(ctx, gone, t0, range(26, 28), 100.0)  # the pod is back: watched again
    scheduler_module_detect(ctx)
    assert f'forecaster_anomaly_score{{series="{GONE_LABEL}"}} 0.0' in _metrics(ctx.store)
    assert len(repo.events(series=GONE)) == 1
    assert len(repo.scores(gone)) == 5  # resumed after the last judged observation
    ctx.store.engine.dispose()


def scheduler_module_detect(ctx: JobContext) -> None:
    from forecaster.jobs.detect import detect_job

    detect_job("fam")


@pytest.mark.parametrize(
    ("after", "how", "reason"),
    [
        (
            [{"name": "lat", "query": "up"}, {"name": "other", "query": "up"}],
            "reload",
            "watch: was removed from its spec",
        ),
        ([{"name": "other", "query": "up"}], "reload", "no longer in the pipeline spec"),
        ([{"name": "other", "query": "up"}], "housekeeping", "no longer in the pipeline spec"),
    ],
    ids=["watch-removed", "series-removed", "series-removed-then-restart"],
)
def test_an_event_of_a_series_no_longer_watched_is_closed_by_the_scheduler(
    tmp_path: Path,
    make_settings: Any,
    write_spec: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    t0: datetime,
    after: list[dict[str, Any]],
    how: str,
    reason: str,
) -> None:
    from forecaster.jobs.detect import detect_job

    before = [{"name": "lat", "query": "up", "watch": WATCH}, {"name": "other", "query": "up"}]
    path = write_spec(tmp_path / "spec.yaml", before, step="1m", horizon="1h")
    settings = make_settings(spec=path)
    ctx = JobContext.create(settings)
    monkeypatch.setitem(scheduler_module._CONTEXT, "ctx", ctx)
    sid = _watched(ctx, "lat", "lat", t0)
    _observe(ctx, sid, t0, range(1, 5), 250.0)
    detect_job("lat")
    repo = ConsumersRepo(ctx.store)
    (event,) = repo.events(series="lat")
    assert event.end is None

    write_spec(path, after, step="1m", horizon="1h")
    _observe(ctx, sid, t0, range(5, 7), 250.0)  # still high, no longer judged
    caplog.set_level("INFO", logger="forecaster.jobs.detect")
    if how == "reload":
        scheduler_module.reload_spec()
    else:  # a scheduler started on the new spec: its hourly housekeeping
        ctx.store.engine.dispose()
        ctx = JobContext.create(settings)
        monkeypatch.setitem(scheduler_module._CONTEXT, "ctx", ctx)
        scheduler_module.housekeeping_job()
        repo = ConsumersRepo(ctx.store)
    (event,) = repo.events(series="lat")
    assert event.end == t0 + 4 * STEP  # the last observation judged
    assert event.closed_reason is not None and reason in event.closed_reason
    assert f"lat: regression event {event.id} closed" in caplog.text and reason in caplog.text
    assert 'series="lat"' not in _metrics(ctx.store)
    ctx.store.engine.dispose()
