"""One scheduler per store: the lock a second scheduler waits on (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import text

from forecaster.config import DatabaseSettings
from forecaster.store.db import make_engine, scheduler_lock, scheduler_lock_key, upgrade
from tests.support.scheduler import scheduler_thread


@pytest.fixture
def engine(db_url: str) -> Any:
    engine = make_engine(DatabaseSettings(url=db_url))
    upgrade(engine)
    yield engine
    engine.dispose()


def test_a_second_holder_waits_until_the_first_lets_go(engine: Any, db_url: str) -> None:
    other = make_engine(DatabaseSettings(url=db_url))  # another process's pool
    never = threading.Event()
    taken = threading.Event()
    with scheduler_lock(engine, never) as held:
        assert held

        def second() -> None:
            with scheduler_lock(other, never, poll_seconds=0.05) as got:
                if got:
                    taken.set()

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        assert not taken.is_set()  # still waiting while the first holds it
    thread.join(timeout=10)
    assert taken.is_set()
    other.dispose()


def test_waiting_ends_without_the_lock_when_asked_to_stop(engine: Any, db_url: str) -> None:
    other = make_engine(DatabaseSettings(url=db_url))
    stop = threading.Event()
    with scheduler_lock(engine, threading.Event()):
        threading.Timer(0.3, stop.set).start()
        with scheduler_lock(other, stop, poll_seconds=0.05) as held:
            assert not held and not held.still_held()
    other.dispose()


def _terminate_lock_session(engine: Any) -> bool:
    """What a dropped connection does: end the session holding the advisory lock
    (False when no session holds it yet)."""
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar()
        ended = conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND pid <> pg_backend_pid() "
                "AND (classid::bigint << 32) + objid::bigint = :key"
            ),
            {"key": scheduler_lock_key(str(schema))},
        ).all()
        conn.commit()
    return bool(ended)


def test_a_lock_whose_session_dropped_is_known_lost(engine: Any, db_url: str) -> None:
    with scheduler_lock(engine, threading.Event()) as held:
        assert held.still_held()
        if engine.dialect.name != "postgresql":
            return  # a flock lasts as long as the process
        other = make_engine(DatabaseSettings(url=db_url))
        _terminate_lock_session(other)
        assert not held.still_held()
        # and another scheduler can take it now
        with scheduler_lock(other, threading.Event(), poll_seconds=0.05) as second:
            assert second.still_held()
        other.dispose()


@pytest.mark.postgres
def test_a_scheduler_that_lost_its_lock_stops(
    pg_url: str, tmp_path: Any, make_settings: Any, write_spec: Any, monkeypatch: Any
) -> None:
    """Two schedulers ran every job twice after a connection blip: the one whose lock
    went with its connection kept scheduling while another had taken the lock."""
    from forecaster import scheduler as scheduler_module
    from forecaster.errors import StoreError
    from forecaster.jobs.context import JobContext

    monkeypatch.setattr(scheduler_module, "LOCK_CHECK_SECONDS", 0.5)
    spec = write_spec(tmp_path / "spec.yaml", [{"name": "s", "query": "up"}], step="1m")
    # a source that fails at once: no run is still going when the scheduler stops
    settings = make_settings(
        db=pg_url, spec=spec, prometheus={"url": "http://127.0.0.1:9", "retries": 0}
    )
    ctx = JobContext.create(settings)
    thread, failure = scheduler_thread(ctx)
    try:
        deadline = time.monotonic() + 30
        while not _terminate_lock_session(ctx.store.engine):  # once it holds the lock
            assert thread.is_alive() and time.monotonic() < deadline, failure
            time.sleep(0.2)
        thread.join(timeout=30)
        assert not thread.is_alive(), "the scheduler kept running without its lock"
    finally:
        scheduler_module._CONTEXT.clear()
        scheduler_module._STOPPING.clear()
        ctx.store.engine.dispose()
    assert len(failure) == 1 and isinstance(failure[0], StoreError)
    assert "lost its lock" in str(failure[0])


@pytest.mark.postgres
def test_stores_in_two_schemas_of_one_database_do_not_share_the_lock(pg_url: str) -> None:
    """Advisory locks are per database: a second deployment in another schema of the
    same database waited forever for the first one's scheduler."""
    import uuid

    base = pg_url.split("?", 1)[0]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(DatabaseSettings(url=base))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    first = make_engine(DatabaseSettings(url=pg_url))
    second = make_engine(DatabaseSettings(url=f"{base}?options=-csearch_path%3D{schema}"))
    stop = threading.Event()
    timer = threading.Timer(5.0, stop.set)  # a wait would end here, without the lock
    timer.start()
    try:
        with scheduler_lock(first, threading.Event()) as one:
            with scheduler_lock(second, stop, poll_seconds=0.05) as two:
                assert one and two
    finally:
        timer.cancel()
        first.dispose()
        second.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.mark.postgres
def test_the_lock_can_be_verified_from_any_thread(pg_url: str) -> None:
    """Each job asks before it runs: between two of the main loop's checks the old
    scheduler ran the new one's due jobs (every ingest twice after a takeover)."""

    engine = make_engine(DatabaseSettings(url=pg_url))
    try:
        with scheduler_lock(engine, threading.Event()) as held:
            answers: list[bool] = []
            asker = threading.Thread(target=lambda: answers.append(held.verified()))
            asker.start()
            asker.join(timeout=10)
            assert answers == [True]
            assert _terminate_lock_session(engine)
            deadline = time.monotonic() + 10
            while held.verified() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not held.verified()
    finally:
        engine.dispose()


def test_a_job_does_not_run_once_the_lock_is_not_ours() -> None:
    from forecaster import scheduler as scheduler_module

    class Lost:
        def verified(self) -> bool:
            return False

    scheduler_module._STOPPING.clear()  # left set by a scheduler stopped earlier
    scheduler_module._LOCK["held"] = Lost()  # type: ignore[assignment]
    try:
        # outside a running scheduler this would raise (no job context): it returns
        scheduler_module.ingest_job("elb")
        assert scheduler_module._LOCK_LOST.is_set()
        scheduler_module.publish_job("elb")  # and nothing runs after it
    finally:
        scheduler_module._LOCK.clear()
        scheduler_module._LOCK_LOST.clear()


def _lock_held(engine: Any) -> bool:
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar()
        found = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND (classid::bigint << 32) + objid::bigint = :key"
            ),
            {"key": scheduler_lock_key(str(schema))},
        ).scalar()
    return bool(found)


@pytest.mark.postgres
def test_a_lock_whose_connection_stalls_is_known_lost(pg_url: str) -> None:
    """A half-open connection (it forwards nothing, never fails): the check hung as long
    as the connection did."""
    from tests.support.tcpproxy import TcpProxy

    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        engine = make_engine(DatabaseSettings(url=proxy.url(pg_url)))
        try:
            with scheduler_lock(engine, threading.Event(), check_timeout=1.0) as held:
                assert held.still_held()
                proxy.stall()
                started = time.monotonic()
                assert not held.still_held()
                assert time.monotonic() - started < 5
        finally:
            proxy.restore()
            engine.dispose()


@pytest.mark.postgres
def test_a_scheduler_whose_store_stalls_stops(
    pg_url: str, tmp_path: Any, make_settings: Any, write_spec: Any, monkeypatch: Any
) -> None:
    """With its database connections stalled, the scheduler hung for as long as they
    did: silent, holding a lock it could not vouch for, and deaf to SIGTERM."""
    from forecaster import scheduler as scheduler_module
    from forecaster.errors import StoreError
    from forecaster.jobs.context import JobContext
    from forecaster.store import db as db_module
    from tests.support.tcpproxy import TcpProxy

    monkeypatch.setattr(scheduler_module, "LOCK_CHECK_SECONDS", 0.5)
    monkeypatch.setattr(scheduler_module, "SHUTDOWN_GRACE_SECONDS", 2.0)
    monkeypatch.setattr(db_module, "LOCK_CHECK_TIMEOUT_SECONDS", 2.0)
    spec = write_spec(tmp_path / "spec.yaml", [{"name": "s", "query": "up"}], step="1m")
    watcher = make_engine(DatabaseSettings(url=pg_url))
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        settings = make_settings(
            db=proxy.url(pg_url), spec=spec, prometheus={"url": "http://127.0.0.1:9", "retries": 0}
        )
        ctx = JobContext.create(settings)
        thread, failure = scheduler_thread(ctx)
        try:
            deadline = time.monotonic() + 30
            while not _lock_held(watcher):
                assert thread.is_alive() and time.monotonic() < deadline, failure
                time.sleep(0.2)
            time.sleep(1.0)  # its jobs started
            proxy.stall()
            thread.join(timeout=30)
            assert not thread.is_alive(), "the scheduler hung on its stalled connection"
        finally:
            proxy.restore()
            thread.join(timeout=30)
            scheduler_module._CONTEXT.clear()
            scheduler_module._STOPPING.clear()
            ctx.store.engine.dispose()
            watcher.dispose()
    assert len(failure) == 1 and isinstance(failure[0], StoreError)
    assert "lost its lock" in str(failure[0])
