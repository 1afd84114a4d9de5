"""One scheduler per store: the lock a second scheduler waits on (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from forecaster.config import DatabaseSettings
from forecaster.store.db import make_engine, scheduler_lock, upgrade


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
            assert held is False
    other.dispose()
