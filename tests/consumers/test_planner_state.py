"""The replica planners' saved state on a real store: saved behind, loaded at start."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from forecaster.config import DatabaseSettings
from forecaster.consumers.planner import ScalingPolicy
from forecaster.consumers.scaling import PlannerBook
from forecaster.errors import StoreError
from forecaster.store.db import make_engine, upgrade
from forecaster.store.planner_states import PlannerStates

POLICY = ScalingPolicy(target_per_replica=10)
KEY = ("shop", "web", "series=rps", "targetPerReplica=10")


def decide(book: PlannerBook, now: float, peak: float) -> int:
    def run(planner: Any) -> int:
        return int(planner.decide(now, forecast_peak=peak).replicas)

    return book.decide(KEY, POLICY, now, run, labels=("shop/web", "rps"))


def test_saved_loaded_pruned_and_a_failing_store_is_reported_until_it_answers(
    tmp_path: Path,
) -> None:
    engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path / 'store.db'}"))
    upgrade(engine)
    try:
        states = PlannerStates(engine)
        book = PlannerBook(states=states, persist_every_seconds=5)
        assert book.persist(1000.0) and book.loaded
        assert decide(book, 1000.0, 300) == 30
        assert book.persist(1002.0)  # too soon: nothing written yet
        assert states.load(since=datetime.fromtimestamp(0, UTC)) == {}
        assert book.persist(1005.0)
        assert len(states.load(since=datetime.fromtimestamp(0, UTC))) == 1

        # a new process: the planner starts from the saved state and holds 30
        again = PlannerBook(states=states)
        assert again.persist(1010.0)
        assert decide(again, 1010.0, 50) == 30

        # the store fails: reported, and still reported while there was nothing to
        # save (the store was not asked, so it did not "answer again")
        decide(book, 1010.0, 300)
        engine.dispose()
        store, away = tmp_path / "store.db", tmp_path / "away.db"
        store.rename(away)  # an empty database in its place: no planner_state table
        assert not book.persist(1020.0)
        assert not book.persist(1022.0)  # not asked (too soon): still failing
        assert not book.persist(1030.0)  # the planner is due again, and fails again
        engine.dispose()
        store.unlink()
        away.rename(store)
        assert book.persist(1040.0)
        assert book.persist(1050.0)  # nothing due: fine, the store answered last

        # states not used for longer than forget_after_seconds are pruned
        late = PlannerBook(states=states, forget_after_seconds=100)
        assert late.persist(1040.0 + 101)
        assert states.load(since=datetime.fromtimestamp(0, UTC)) == {}
        fresh = PlannerBook(states=states)
        assert fresh.persist(1200.0)
        assert decide(fresh, 1200.0, 50) == 5  # nothing to restore: a new planner
    finally:
        engine.dispose()


def test_a_trigger_that_fails_saves_no_state(tmp_path: Path) -> None:
    """A call for an unknown series failed, yet its untouched planner was saved as a
    row (seen in `make demo`: a typo'd ScaledObject left its row in planner_state)."""
    engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path / 'store.db'}"))
    upgrade(engine)
    try:
        states = PlannerStates(engine)
        book = PlannerBook(states=states, persist_every_seconds=5)
        assert book.persist(1000.0)

        def fails(planner: Any) -> int:
            raise StoreError("unknown series 'nope'")

        with pytest.raises(StoreError):
            book.decide(("d", "x", "series=nope"), POLICY, 1000.0, fails, labels=("d/x", "nope"))
        assert decide(book, 1000.0, 300) == 30
        assert book.persist(1005.0)
        saved = states.load(since=datetime.fromtimestamp(0, UTC))
        assert len(saved) == 1  # the trigger that decided only
    finally:
        engine.dispose()


def test_an_observations_outage_is_logged_once_and_its_end_once(
    tmp_path: Path, caplog: Any
) -> None:
    """The scaler refreshes the latest observations every 2 s: an outage logged the
    whole failing statement and a link at every refresh."""
    import logging

    from forecaster.consumers.scaling import LatestObservations
    from forecaster.store.repository import Store

    engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path / 'store.db'}"))
    upgrade(engine)
    try:
        observations = LatestObservations(Store(engine))
        assert observations.refresh()
        engine.dispose()
        (tmp_path / "store.db").rename(tmp_path / "away.db")
        with caplog.at_level(logging.INFO, logger="forecaster.consumers.scaling"):
            assert not observations.refresh()
            assert not observations.refresh()
            assert not observations.refresh()
            engine.dispose()
            (tmp_path / "store.db").unlink()
            (tmp_path / "away.db").rename(tmp_path / "store.db")
            assert observations.refresh()
            assert observations.refresh()
        messages = [r.getMessage() for r in caplog.records]
        assert len(messages) == 2, messages
        assert messages[0].startswith("latest observations refresh failed (said again")
        assert "\n" not in messages[0]
        assert messages[1] == "latest observations refresh recovered: the store answers again"
    finally:
        engine.dispose()


def test_a_full_book_forgets_the_least_recently_asked_planner_at_once(caplog: Any) -> None:
    """With more triggers than the book holds, every call forgot one planner by scanning
    all of them for the oldest (1.5 ms a call at 10,000, on the answering path)."""
    import logging
    import time

    book = PlannerBook(max_entries=5000)
    keys = [("ns", f"o{i}", "series=x") for i in range(5001)]
    for i, key in enumerate(keys[:5000]):
        book.get(key, POLICY, 1000.0 + i / 1000)
    kept = book.get(keys[0], POLICY, 1006.0)  # asked again: now the most recent
    second = book.get(keys[1], POLICY, 1000.0)
    with caplog.at_level(logging.WARNING, logger="forecaster.consumers.scaling"):
        book.get(keys[5000], POLICY, 1007.0)  # one too many: the least recently asked goes
        assert book.get(keys[0], POLICY, 1008.0) is kept
        assert len(book) == 5000
        started = time.perf_counter()
        for i, key in enumerate(keys * 2):  # cycling through one more than it holds
            book.get(key, POLICY, 1010.0 + i / 1000)
        elapsed = time.perf_counter() - started
    assert elapsed < 1.0  # the scans took seconds here
    assert len(book) == 5000
    assert book.get(keys[1], POLICY, 1030.0) is not second
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "more than 5000 scaled triggers" in warnings[0]


def test_a_store_without_the_planner_table_is_said_once_in_one_line(
    tmp_path: Path, caplog: Any
) -> None:
    """A scaler upgraded before its store was migrated cannot read the saved states:
    it says so once, in one line (not the statement and a link), and keeps retrying."""
    import logging

    engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path / 'store.db'}"))
    try:
        book = PlannerBook(states=PlannerStates(engine))
        with caplog.at_level(logging.WARNING, logger="forecaster.consumers.scaling"):
            assert not book.load(1000.0)
            assert not book.load(1002.0)
        (message,) = [r.getMessage() for r in caplog.records]
        assert message.endswith(
            "cannot read the planner state: (sqlite3.OperationalError) no such table: planner_state"
        )
        upgrade(engine)
        assert book.load(1004.0) and book.loaded
    finally:
        engine.dispose()


def test_a_state_that_cannot_be_restored_starts_a_fresh_planner(tmp_path: Path) -> None:
    """A row that is not JSON (edited by hand) is skipped; a non-finite forecast error is
    saved as null and dropped on restore, the rest of the memory kept."""
    from sqlalchemy import insert

    from forecaster.consumers.scaling import trigger_digest
    from forecaster.store.consumer_tables import planner_state_table

    engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path / 'store.db'}"))
    upgrade(engine)
    try:
        policy = ScalingPolicy(target_per_replica=10, error_headroom=1)
        book = PlannerBook(states=PlannerStates(engine))
        assert book.load(1000.0)

        def run(planner: Any) -> int:
            planner.expect(1000.0, -1e308)
            planner.observe(1000.0, 1e308)  # |error| overflows to inf
            return int(planner.decide(1000.0, forecast_peak=300).replicas)

        assert book.decide(KEY, policy, 1000.0, run) == 30
        assert book.flush(1001.0) == 1
        other = ("shop", "api", "series=rps")
        with engine.begin() as conn:
            conn.execute(
                insert(planner_state_table).values(
                    key=trigger_digest(other),
                    scaled_object="shop/api",
                    series="rps",
                    state="{not json",
                    updated_at=datetime.fromtimestamp(1001.0, UTC),
                )
            )
        again = PlannerBook(states=PlannerStates(engine))
        assert again.load(1010.0)
        restored = again.get(KEY, policy, 1010.0)
        assert restored.current == 30 and len(restored.errors) == 0
        assert again.get(other, POLICY, 1010.0).current is None  # fresh
    finally:
        engine.dispose()


def test_a_save_goes_in_small_batches_with_pauses(tmp_path: Path) -> None:
    """One save of every planner held the GIL for tens of milliseconds in the save
    thread, and the answers queued behind it (the scaler latency benchmark's p99 went
    from ~9 ms to 30-110 ms). Saves now go 50 planners at a time with a pause between;
    a batch the store refuses stays due with every batch after it."""
    engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path / 'store.db'}"))
    upgrade(engine)
    try:
        states = PlannerStates(engine)
        batches: list[int] = []
        save = states.save

        def counting_save(rows: Any, *, at: datetime) -> None:
            batches.append(len(rows))
            if len(batches) == 4 and fail:
                raise StoreError("store down")
            save(rows, at=at)

        states.save = counting_save  # type: ignore[method-assign]
        book = PlannerBook(states=states, save_pause_seconds=0.001)
        assert book.load(1000.0)
        keys = [("shop", f"w{i}", "series=rps") for i in range(230)]
        for key in keys:
            book.decide(key, POLICY, 1000.0, lambda p: p.decide(1000.0, forecast_peak=100))
        fail = True
        with pytest.raises(StoreError):
            book.flush(1001.0)
        assert batches == [50, 50, 50, 50]
        assert len(states.load(since=datetime.fromtimestamp(0, UTC))) == 150
        fail = False
        batches.clear()
        assert book.flush(1002.0) == 80  # the refused batch and the one after it
        assert batches == [50, 30]
        assert len(states.load(since=datetime.fromtimestamp(0, UTC))) == 230
    finally:
        engine.dispose()
