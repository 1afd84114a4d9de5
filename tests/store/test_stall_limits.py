"""Limits on a stalled PostgreSQL connection: TCP keepalives and user timeout, the
statement timeout, and the client-side limit on a query's answer (through the TCP
proxy that stalls the database without touching it)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from forecaster.config import DatabaseSettings
from forecaster.errors import ConfigError
from forecaster.store.db import _LOCK_KEY, make_engine, tcp_timeouts, unbounded, upgrade
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.postgres


def _in_thread(func: Any, wait: float) -> list[Any]:
    """``[result]``, ``[exception]``, or ``[]`` when ``func`` has not returned after
    ``wait`` seconds (it hangs: the caller restores the proxy, and it ends)."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(func())
        except Exception as exc:  # noqa: BLE001 - the test reads it
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(wait)
    return out


def test_connections_carry_keepalives_a_user_timeout_and_a_statement_timeout(
    pg_url: str,
) -> None:
    engine = make_engine(DatabaseSettings(url=pg_url))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "5min"
            # the URL's own options (the test schema's search_path) still apply
            assert conn.exec_driver_sql("SELECT current_schema()").scalar() in pg_url
            raw: Any = conn.connection.dbapi_connection
            parameters = raw.info.get_parameters()
            assert parameters["keepalives_idle"] == "30"
            assert parameters["tcp_user_timeout"] == "30000"
            assert raw.query_timeout == 330.0
    finally:
        engine.dispose()
    assert tcp_timeouts(0) == {}


def test_the_settings_refuse_a_query_limit_within_the_statement_timeout() -> None:
    from forecaster.config import load_settings

    with pytest.raises(ConfigError, match="must exceed statement_timeout_seconds"):
        load_settings(database={"statement_timeout_seconds": 60, "query_timeout_seconds": 30})
    assert DatabaseSettings(statement_timeout_seconds=0).effective_query_timeout is None
    assert DatabaseSettings(query_timeout_seconds=0).effective_query_timeout is None


def test_a_query_on_a_stalled_connection_fails_within_the_limit(pg_url: str) -> None:
    """psycopg has no query timeout: a query on a connection that forwards nothing (a
    hung server or proxy, which still acknowledges at the TCP level, so keepalives and
    tcp_user_timeout see nothing wrong) waited for as long as the stall lasted."""
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        engine = make_engine(
            DatabaseSettings(
                url=proxy.url(pg_url),
                statement_timeout_seconds=0.5,
                query_timeout_seconds=1.0,
                connect_timeout_seconds=2,
            )
        )
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
                proxy.stall()
                try:
                    answer = _in_thread(lambda: conn.execute(text("SELECT 1")).scalar(), 10.0)
                    assert answer, "the query hung on the stalled connection"
                    assert isinstance(answer[0], OperationalError), answer
                    assert "did not answer within 1s" in str(answer[0])

                    def checkout() -> Any:  # pre-ping (1 s), then a new connection (2 s)
                        with engine.connect() as other:
                            return other.execute(text("SELECT 1")).scalar()

                    answer = _in_thread(checkout, 10.0)
                    assert answer, "a checkout hung on the stalled store"
                    assert isinstance(answer[0], OperationalError), answer
                finally:
                    proxy.restore()
            with engine.connect() as conn:  # the pool replaced the dropped connections
                assert conn.execute(text("SELECT 1")).scalar() == 1
        finally:
            engine.dispose()


def test_migrations_and_the_migration_lock_wait_are_not_cut(pg_url: str) -> None:
    """A statement timeout must not cut a migration, or the wait for another process's
    migration (the advisory lock) that lasts longer than it."""
    engine = make_engine(DatabaseSettings(url=pg_url, statement_timeout_seconds=0.5))
    holder = make_engine(DatabaseSettings(url=pg_url))
    migrated: list[Any] = []
    migrating = threading.Thread(target=lambda: migrated.append(upgrade(engine)), daemon=True)
    try:
        with holder.connect() as other:  # another process migrating
            other.exec_driver_sql(f"SELECT pg_advisory_lock({_LOCK_KEY})")
            migrating.start()
            time.sleep(1.5)  # three statement timeouts
            assert migrating.is_alive()
            other.exec_driver_sql(f"SELECT pg_advisory_unlock({_LOCK_KEY})")
            other.commit()
        migrating.join(60)
        assert migrated == [None], "the migration failed (see the thread's traceback)"
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
            with unbounded(conn):
                assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "0"
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "500ms"
    finally:
        holder.dispose()
        engine.dispose()
