"""The store's change marker and the in-memory readers that poll it.

Every write that changes a ``series`` row or a champion stamps the series with a new
store revision; the forecast view and the latest-observation cache re-read only
what was stamped since the snapshot they hold. These tests check both halves on
SQLite and PostgreSQL: each write path stamps, an idle refresh reads nothing but
the marker, every kind of change still reaches the readers, and concurrent writers
neither deadlock nor leave a reader behind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from forecaster.api.view import ForecastView
from forecaster.config import DatabaseSettings
from forecaster.consumers.scaling import LatestObservations
from forecaster.errors import SeriesNotFound
from forecaster.store.db import make_engine, upgrade
from forecaster.store.repository import CHANGE_MARKER, ForecastPoint, Store

T0 = datetime(2026, 1, 5, tzinfo=UTC)
STEP = timedelta(minutes=5)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    engine = make_engine(DatabaseSettings(url=db_url))
    upgrade(engine)
    yield Store(engine)
    engine.dispose()


def _series(store: Store, name: str, unit: str = "") -> int:
    return store.ensure_series(name=name, family=name, unit=unit, step_seconds=300, horizon_steps=3)


def _publish(store: Store, name: str, base: float, at: datetime = T0) -> int:
    return store.publish_forecast(
        series=name,
        generated_at=at,
        origin=at,
        step_seconds=300,
        level=90.0,
        model_name="seasonal_naive",
        model_version="1",
        run_id="r",
        points=[
            ForecastPoint(
                step=i, ds=at + i * STEP, yhat=base + i, yhat_lower=base, yhat_upper=base + 2 * i
            )
            for i in range(1, 4)
        ],
    )


def _promote(store: Store, name: str, estimator: str, *, promoted: bool = True) -> None:
    store.record_training(
        series=name,
        run_id="r",
        estimator=estimator,
        model_version="1",
        promoted=promoted,
        reason="test",
        metrics={"mase": 1.0},
        artifact="{}",
    )


def _revisions(store: Store) -> tuple[int, dict[str, int]]:
    with store.engine.connect() as conn:
        revision, _count = conn.execute(CHANGE_MARKER).one()
        rows = conn.execute(text("SELECT name, revision FROM series")).all()
    return int(revision), {str(name): int(rev) for name, rev in rows}


class _Statements:
    """Counts the SQL statements an engine runs and the rows they return."""

    def __init__(self, store: Store) -> None:
        self.sql: list[str] = []
        event.listen(store.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.sql.append(statement)


def test_every_catalogue_write_stamps_its_series_with_a_new_revision(store: Store) -> None:
    start, _ = _revisions(store)
    assert start == 0
    sid = _series(store, "a")
    _series(store, "b")
    after_create, stamped = _revisions(store)
    assert after_create == 2 and stamped == {"a": 1, "b": 2}

    steps = [
        ("metadata", lambda: _series(store, "a", unit="req/s")),
        ("observations", lambda: store.upsert_observations(sid, [(T0, 1.0)])),
        ("rewrite of the newest value", lambda: store.upsert_observations(sid, [(T0, 2.0)])),
        ("publication", lambda: _publish(store, "a", 10.0)),
        ("promotion", lambda: _promote(store, "a", "prophet")),
        ("pruning", lambda: store.prune_history("a", before=T0 + STEP)),
    ]
    for what, write in steps:
        before, old = _revisions(store)
        write()
        now, stamped = _revisions(store)
        assert now == before + 1, what
        assert stamped["a"] == now, what
        assert stamped["b"] == old["b"], f"{what} stamped a series it did not change"

    # writes that change no series row and no champion leave the marker alone
    before, _ = _revisions(store)
    _promote(store, "a", "lightgbm", promoted=False)
    assert store.prune_history("a", before=T0) == 0
    assert _revisions(store)[0] == before


def test_an_idle_refresh_reads_the_marker_only(store: Store) -> None:
    for i in range(5):
        _series(store, f"s{i}")
        _publish(store, f"s{i}", float(i))
    view = ForecastView(store)
    latest = LatestObservations(store)
    assert view.refresh() and latest.refresh()
    assert len(view.state.forecasts) == 5
    first = view.state.refreshed_at

    seen = _Statements(store)
    for _ in range(3):
        assert view.refresh() and latest.refresh()
    assert len(seen.sql) == 6, seen.sql
    assert all("store_revision" in sql for sql in seen.sql)
    assert view.state.refreshed_at is not None and first is not None
    assert view.state.refreshed_at > first  # an idle refresh still counts as fresh

    # one publication: the view reads one series row and one forecast, not five
    seen.sql.clear()
    _publish(store, "s3", 30.0, at=T0 + STEP)
    seen.sql.clear()
    assert view.refresh()
    catalogue = [sql for sql in seen.sql if "series.name" in sql]
    assert len(catalogue) == 1 and "series.revision >" in catalogue[0]
    assert view.forecast("s3").forecast.points.yhat[0] == 31.0
    assert view.forecast("s2").forecast.points.yhat[0] == 3.0

    # most series changed: one plain read of every row instead of the index
    for i in range(4):
        _publish(store, f"s{i}", 40.0 + i, at=T0 + 2 * STEP)
    seen.sql.clear()
    assert view.refresh()
    catalogue = [sql for sql in seen.sql if "series.name" in sql]
    assert len(catalogue) == 1 and "series.revision >" not in catalogue[0]
    assert [view.forecast(f"s{i}").forecast.points.yhat[0] for i in range(5)] == [
        41.0,
        42.0,
        43.0,
        44.0,
        5.0,
    ]


def test_every_kind_of_change_reaches_the_view(store: Store) -> None:
    sid = _series(store, "a")
    view = ForecastView(store)
    assert view.refresh()
    assert view.series_info("a").last_observation_at is None

    _series(store, "b")
    assert view.refresh()
    assert view.series_info("b").name == "b"

    _series(store, "a", unit="req/s")
    store.upsert_observations(sid, [(T0, 5.0)])
    assert view.refresh()
    assert view.series_info("a").unit == "req/s"
    assert view.series_info("a").last_observation_at == T0

    first = _publish(store, "a", 1.0)
    assert view.refresh()
    assert view.forecast("a").forecast.publication_id == first
    second = _publish(store, "a", 2.0, at=T0 + STEP)
    assert view.refresh()
    assert view.forecast("a").forecast.publication_id == second

    _promote(store, "a", "prophet")
    assert view.refresh()
    assert view.series_info("a").champion == "prophet"
    _promote(store, "a", "lightgbm")
    assert view.refresh()
    assert view.series_info("a").champion == "lightgbm"
    assert view.forecast("a").forecast.publication_id == second  # kept, not re-read


def test_a_series_deleted_by_hand_leaves_the_view(store: Store) -> None:
    for name in ("a", "b"):
        _series(store, name)
        _publish(store, name, 1.0)
    view = ForecastView(store)
    assert view.refresh()
    with store.engine.begin() as conn:  # an operator's cleanup, not a store method
        conn.execute(text("DELETE FROM forecast_points"))
        conn.execute(text("DELETE FROM publications"))
        conn.execute(text("UPDATE series SET current_publication_id = NULL"))
        conn.execute(text("DELETE FROM series WHERE name = 'b'"))
    assert view.refresh()
    assert set(view.state.series) == {"a"}
    with pytest.raises(SeriesNotFound):
        view.series_info("b")


def test_latest_observations_follow_new_and_rewritten_values(store: Store) -> None:
    a = _series(store, "a")
    b = _series(store, "b")
    store.upsert_observations(a, [(T0, 1.0)])
    store.upsert_observations(b, [(T0, 7.0)])
    latest = LatestObservations(store)
    assert latest.refresh()
    assert latest.get("a") == (T0.timestamp(), 1.0)

    store.upsert_observations(a, [(T0, 3.0)])  # a revised value at the same instant
    assert latest.refresh()
    assert latest.get("a") == (T0.timestamp(), 3.0)
    store.upsert_observations(a, [(T0 + STEP, 4.0)])
    assert latest.refresh()
    assert latest.get("a") == ((T0 + STEP).timestamp(), 4.0)
    assert latest.get("b") == (T0.timestamp(), 7.0)  # untouched, still held


def test_a_schema_without_the_marker_row_still_serves(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM store_revision"))
    _series(store, "a")  # the first write puts the row back
    assert _revisions(store)[0] == 1
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM store_revision"))
    view = ForecastView(store)
    assert view.refresh()
    assert view.state.revision is None  # every refresh then reads everything
    _publish(store, "a", 1.0)
    assert view.refresh()
    assert view.forecast("a").forecast.points.yhat[0] == 2.0


def test_concurrent_writers_never_deadlock_or_leave_a_reader_behind(store: Store) -> None:
    names = [f"s{i}" for i in range(4)]
    ids = {name: _series(store, name) for name in names}
    view = ForecastView(store)
    latest = LatestObservations(store)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for k in range(15):
                # workers share series, so writes to one series contend
                name = names[(worker + k) % len(names)]
                store.upsert_observations(
                    ids[name], [(T0 + (k + 1) * STEP, float(worker * 100 + k))]
                )
                _publish(store, name, float(worker * 100 + k), at=T0 + k * STEP)
                if k % 5 == 0:
                    _promote(store, name, f"est{worker}")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def reader() -> None:
        while not stop.is_set():
            view.refresh()
            latest.refresh()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    poller = threading.Thread(target=reader)
    poller.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    stop.set()
    poller.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a writer is stuck (deadlock?)"
    assert not errors, errors

    assert view.refresh() and latest.refresh()
    fresh_view = ForecastView(store)
    fresh_latest = LatestObservations(store)
    assert fresh_view.refresh() and fresh_latest.refresh()
    assert view.state.series == fresh_view.state.series
    assert view.state.publication_ids == fresh_view.state.publication_ids
    for name in names:
        held = view.forecast(name).forecast
        assert held.publication_id == fresh_view.forecast(name).forecast.publication_id
        assert latest.get(name) == fresh_latest.get(name)


def test_upgrading_a_store_with_series_keeps_them_served(db_url: str) -> None:
    from forecaster.store.db import current_revision, head_revision

    engine = make_engine(DatabaseSettings(url=db_url))
    try:
        upgrade(engine, "0006")
        older = Store(engine)
        with engine.begin() as conn:  # what a 0006 store holds: no revision anywhere
            conn.execute(
                text(
                    "INSERT INTO series (name, family, labels, kind, unit, step_seconds,"
                    " horizon_steps, created_at) VALUES ('old', 'old', '{}', 'load', '',"
                    " 300, 3, :at)"
                ),
                {"at": T0.replace(tzinfo=None)},
            )
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert _revisions(older) == (0, {"old": 0})
        view = ForecastView(older)
        assert view.refresh()
        assert view.series_info("old").name == "old"
        _publish(older, "old", 1.0)
        assert view.refresh()
        assert view.forecast("old").forecast.points.yhat[0] == 2.0
        assert _revisions(older) == (1, {"old": 1})
    finally:
        engine.dispose()


def test_a_store_outage_is_logged_once_in_one_line_and_its_end_too(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Every refresh (each second or two, per process) logged a warning of several
    lines (SQLAlchemy's statement and link) for as long as the store was away."""
    _series(store, "a")
    _publish(store, "a", 1.0)
    view = ForecastView(store)
    assert view.refresh()
    with store.engine.begin() as conn:  # the store stops answering the view's reads
        conn.execute(text("ALTER TABLE store_revision RENAME TO store_revision_away"))
    try:
        with caplog.at_level("DEBUG", logger="forecaster.api.view"):
            assert not view.refresh() and not view.refresh() and not view.refresh()
    finally:
        with store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE store_revision_away RENAME TO store_revision"))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert "forecast view refresh failed" in warnings[0]
    assert view.state.error is not None and "\n" not in view.state.error
    assert view.series_info("a").name == "a"  # the last snapshot keeps serving
    caplog.clear()
    with caplog.at_level("WARNING", logger="forecaster.api.view"):
        assert view.refresh()
    assert "refresh recovered" in caplog.text
    assert view.state.error is None
