"""Engine factory and schema migration (Alembic) for the store."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from forecaster.errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from forecaster.config import DatabaseSettings

MIGRATIONS = Path(__file__).with_name("migrations")
log = logging.getLogger(__name__)

_LOCK_KEY = 7_301_974_113  # arbitrary constant: "forecaster migrations" advisory lock
_SCHEDULER_LOCK_KEY = 7_301_974_114  # "one forecaster scheduler per store" advisory lock
_PROMOTION_LOCK_CLASS = 0x5452  # high bits of the per-series "promotion" advisory locks

#: Seconds a training waits for another process's promotion of the same series.
PROMOTION_LOCK_TIMEOUT_SECONDS = 600.0


def make_engine(settings: DatabaseSettings) -> Engine:
    """Create the SQLAlchemy engine for ``settings.url``.

    SQLite gets WAL mode, a busy timeout and foreign keys; its parent folder is
    created. PostgreSQL gets a bounded pool with pre-ping and limits on stalls
    (:func:`_bound_postgres`): TCP keepalives and ``tcp_user_timeout``, a server-side
    ``statement_timeout`` and a client-side limit on every query's answer. JSON columns
    are written with :func:`json_dumps` (non-finite floats become ``null``) on both.

    Raises:
        StoreError: The SQLite store's folder cannot be created.
    """
    url = settings.url
    kwargs: dict[str, Any] = {
        "echo": settings.echo,
        "future": True,
        "json_serializer": json_dumps,
    }
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            folder = Path(path).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a traceback named neither the setting nor the fix
                raise StoreError(
                    f"cannot create the folder {folder} of the SQLite store ({exc}); "
                    "check FORECASTER_DATABASE__URL"
                ) from exc
        kwargs["connect_args"] = {
            "timeout": settings.sqlite_busy_timeout_seconds,
            "check_same_thread": False,
        }
    else:
        kwargs.update(pool_size=settings.pool_size, pool_pre_ping=True, max_overflow=10)
        kwargs["connect_args"] = {
            "connect_timeout": settings.connect_timeout_seconds,
            **tcp_timeouts(settings.tcp_timeout_seconds),
        }
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "postgresql":
        _bound_postgres(
            engine,
            statement_seconds=settings.statement_timeout_seconds,
            query_seconds=settings.effective_query_timeout,
        )
    if engine.dialect.name == "sqlite":
        busy_ms = int(settings.sqlite_busy_timeout_seconds * 1000)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


def tcp_timeouts(seconds: float) -> dict[str, int]:
    """libpq's TCP settings that drop a dead connection after about ``seconds``.

    Keepalives probe a connection idle for ``seconds`` (three probes, a third of it
    apart), so an idle pooled connection whose peer vanished (a failover, a NAT or
    firewall that forgot it) is found dead; ``tcp_user_timeout`` drops one whose sent
    data goes unacknowledged that long (a query on a link that went silent). Neither
    helps when the peer's host still acknowledges but nothing answers (a hung server
    or proxy): :func:`_bound_postgres`'s query limit does. ``0``: the OS defaults
    (keepalives after two hours, retransmissions for about 15 minutes).
    """
    if not seconds:
        return {}
    return {
        "keepalives": 1,
        "keepalives_idle": max(1, round(seconds)),
        "keepalives_interval": max(1, round(seconds / 3)),
        "keepalives_count": 3,
        "tcp_user_timeout": max(1, round(seconds * 1000)),
    }


def _bound_postgres(
    engine: Engine, *, statement_seconds: float, query_seconds: float | None
) -> None:
    """Limit how long a PostgreSQL statement may run and a query may go unanswered.

    ``statement_seconds`` becomes the sessions' ``statement_timeout`` (unless the URL's
    ``options`` set one): the server cancels a statement running longer, cleanly.
    ``query_seconds`` bounds, on the client, the wait for each answer (psycopg has no
    query timeout of its own): past it the query fails with an ``OperationalError`` and
    its connection is closed (the pool replaces it). Without it a refresh, ingest or
    publish whose connection stalled waited for as long as the stall lasted, which on
    a half-open connection is forever. :func:`unbounded` lifts both for a block
    (migrations, lock waits).
    """
    connection_class = _bounded_connection_class() if query_seconds else None

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        options = str(cparams.get("options") or "")
        if statement_seconds and "statement_timeout" not in options:
            limit = max(1, round(statement_seconds * 1000))
            cparams["options"] = f"{options} -c statement_timeout={limit}".strip()
        if connection_class is None:
            return None  # SQLAlchemy connects as usual, with the options above
        raw = connection_class.connect(*cargs, **cparams)
        raw.query_timeout = query_seconds
        return raw


@functools.cache
def _bounded_connection_class() -> Any:
    """A ``psycopg.Connection`` whose waits for an answer end after ``query_timeout``
    seconds (``None``: never), or ``None`` when this psycopg cannot bound them."""
    import inspect

    import psycopg

    if "timeout" not in inspect.signature(psycopg.Connection.wait).parameters:
        log.warning(
            "psycopg %s cannot bound a query's wait (3.2 or newer can): a stalled "
            "PostgreSQL connection waits until TCP gives up on it",
            psycopg.__version__,
        )
        return None

    class BoundedConnection(psycopg.Connection):
        query_timeout: float | None = None

        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            limit = self.query_timeout
            if timeout is not None or limit is None:
                return super().wait(gen, interval, timeout)
            started = time.monotonic()
            try:
                return super().wait(gen, interval, limit)
            except psycopg.OperationalError as exc:
                if self.closed or time.monotonic() - started < limit:
                    raise
                # the answer may still come: the connection is out of step, drop it
                self.close()
                raise psycopg.OperationalError(
                    f"the database did not answer within {limit:g}s (a stalled "
                    "connection; FORECASTER_DATABASE__QUERY_TIMEOUT_SECONDS): connection "
                    "closed"
                ) from exc

    return BoundedConnection


@contextlib.contextmanager
def unbounded(conn: Connection) -> Iterator[None]:
    """Lift the statement and query timeouts of :func:`_bound_postgres` on ``conn`` for
    the block: a migration, or a wait for a lock another process holds, legitimately
    takes as long as it takes. A no-op on SQLite."""
    if conn.dialect.name != "postgresql":
        yield
        return
    raw = conn.connection.dbapi_connection
    limit = getattr(raw, "query_timeout", None)
    conn.exec_driver_sql("SET statement_timeout = 0")
    if limit is not None:
        raw.query_timeout = None  # type: ignore[union-attr]
    try:
        yield
    finally:
        if limit is not None:
            raw.query_timeout = limit  # type: ignore[union-attr]
        if not conn.invalidated and not conn.closed:
            with contextlib.suppress(SQLAlchemyError):
                conn.exec_driver_sql("RESET statement_timeout")  # to the session's own


def json_dumps(value: Any) -> str:
    """Standard JSON for a JSON column: NaN and infinities (e.g. the MASE of a constant
    series) are written as ``null``.

    PostgreSQL's ``json`` type refuses the ``NaN``/``Infinity`` tokens Python's
    :func:`json.dumps` writes, which failed the whole write; SQLite accepted them.
    Now both dialects store (and read back) the same document.
    """
    return json.dumps(_finite_json(value))


def _finite_json(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_json(item) for item in value]
    return value


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Serialise migrations across processes (API, scheduler and scaler start together).

    PostgreSQL: a session advisory lock. SQLite: an exclusive ``flock`` on a file
    next to the database.
    """
    where = engine.url.render_as_string(hide_password=True)
    if engine.dialect.name == "postgresql":
        # the wait lasts as long as another process migrates: no statement timeout
        with engine.connect() as conn, unbounded(conn):
            if not conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({_LOCK_KEY})").scalar():
                _say_waiting(where)
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({_LOCK_KEY})")
            try:
                yield
            finally:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_LOCK_KEY})")
                conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    lock_path = _lock_file(database, "migrate")
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say_waiting(where)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_file(database: str, kind: str) -> Path:
    """The file beside a SQLite database whose ``flock`` is its ``kind`` lock."""
    path = Path(database).expanduser()
    return path.with_name(f"{path.name}.{kind}.lock")


def scheduler_lock_key(schema: str) -> int:
    """The advisory lock key of the store in PostgreSQL schema ``schema``: advisory locks
    are per database, and two stores in two schemas of one database (two deployments)
    must not wait for each other's scheduler."""
    return (_SCHEDULER_LOCK_KEY << 30) ^ zlib.crc32(schema.encode())


@dataclass
class SchedulerLock:
    """The scheduler lock as held (true) or not (false, the wait was stopped)."""

    held: bool
    #: Whether the lock is still held; False once its PostgreSQL session is gone.
    _alive: Callable[[], bool] = lambda: True
    #: The same, asked on a connection of its own (safe from any thread).
    _verify: Callable[[], bool] = lambda: True

    def __bool__(self) -> bool:
        return self.held

    def still_held(self) -> bool:
        """Whether the lock is still ours. A PostgreSQL advisory lock lives as long as
        its session: a dropped connection releases it, and another scheduler may have
        taken it since (two then ran every job twice)."""
        return self.held and self._alive()

    def verified(self) -> bool:
        """:meth:`still_held`, from any thread (each job asks before it runs: between
        two of the main loop's checks the old scheduler ran the new one's due jobs)."""
        return self.held and self._verify()


#: Seconds the lock's session gets to answer a check before the lock counts as lost.
LOCK_CHECK_TIMEOUT_SECONDS = 30.0

#: Why a scheduler stopped (or did not start) when its lock's connection dropped.
LOST_LOCK = (
    "the scheduler lost its lock on the store when the database connection dropped, and "
    "stopped so that two schedulers never run the same jobs; start it again (it waits for "
    "the lock if another scheduler holds it)"
)


@contextlib.contextmanager
def scheduler_lock(
    engine: Engine,
    stop: threading.Event,
    *,
    poll_seconds: float = 2.0,
    check_timeout: float | None = None,
) -> Iterator[SchedulerLock]:
    """Hold the one-scheduler-per-store lock for the block; wait for it until ``stop``.

    Two schedulers on one store share its job table: each rewrote the other's jobs,
    and one's scheduling thread died on a job the other had removed while its
    process stayed up doing nothing. The second one now waits (a rolling deploy's
    new pod takes over when the old one exits). PostgreSQL: a session advisory lock
    held on a connection of its own; SQLite: an exclusive ``flock`` on a file beside
    the database; an in-memory database needs none.

    Yields:
        The lock, true once held, false if ``stop`` was set first; its
        :meth:`SchedulerLock.still_held` tells whether it was lost since. A session
        that does not answer within ``check_timeout`` (default
        :data:`LOCK_CHECK_TIMEOUT_SECONDS`; a stalled, half-open connection) counts as
        lost: the check hung for as long as the connection did, with the scheduler
        silent and deaf to SIGTERM.

    Raises:
        StoreError: The lock cannot be taken (database down, folder not writable).
    """
    if engine.dialect.name == "postgresql":
        try:
            conn = engine.connect()
            schema = str(conn.exec_driver_sql("SELECT current_schema()").scalar() or "")
            conn.commit()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot take the scheduler lock: {exc}") from exc
        key = scheduler_lock_key(schema)

        def try_advisory() -> bool:
            try:
                taken = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar()
                conn.commit()  # a session lock outlives the transaction; an open one would
            except SQLAlchemyError as exc:  # hold back VACUUM for the scheduler's life
                # the session died as the lock was taken (an OperationalError escaped)
                raise StoreError(LOST_LOCK) from exc
            return bool(taken)

        timeout = LOCK_CHECK_TIMEOUT_SECONDS if check_timeout is None else check_timeout
        stalled = threading.Event()

        def alive() -> bool:
            if stalled.is_set():
                return False
            answer: list[bool] = []
            answered = threading.Event()

            def ask() -> None:  # in a thread: psycopg has no client-side query timeout
                try:
                    conn.exec_driver_sql("SELECT 1").scalar()
                    conn.commit()
                    answer.append(True)
                except SQLAlchemyError:
                    answer.append(False)
                finally:
                    answered.set()

            threading.Thread(target=ask, name="scheduler-lock-check", daemon=True).start()
            deadline = time.monotonic() + timeout
            while not answered.wait(0.2):
                if stop.is_set():  # a signal: stop now, whatever the answer
                    stalled.set()
                    return True
                if time.monotonic() > deadline:
                    stalled.set()
                    log.error(
                        "the database did not answer the scheduler lock check within %.0fs "
                        "(a stalled connection): the lock counts as lost",
                        timeout,
                    )
                    return False
            return answer[0]

        def verify_for(backend: int) -> Callable[[], bool]:
            def verify() -> bool:  # on a pooled connection: safe from any thread
                try:
                    with engine.connect() as other:
                        found = other.execute(
                            text(
                                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                "AND granted AND pid = :pid"
                            ),
                            {"pid": backend},
                        ).scalar()
                except SQLAlchemyError:
                    return False
                return bool(found)

            return verify

        try:
            held = _wait_for(try_advisory, stop, poll_seconds, f"store {engine.url!r}")
            if not held:
                yield SchedulerLock(False)
                return
            try:
                backend = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() or 0)
                conn.commit()
            except SQLAlchemyError as exc:
                raise StoreError(LOST_LOCK) from exc
            yield SchedulerLock(True, alive, verify_for(backend))
        finally:
            if stalled.is_set():  # a check still waits on it: unlocking would hang too
                conn.invalidate()  # closing the session releases the lock
            else:
                with contextlib.suppress(SQLAlchemyError):
                    conn.exec_driver_sql("SELECT pg_advisory_unlock_all()")
                    conn.commit()
                conn.close()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield SchedulerLock(True)
        return
    import fcntl

    lock_path = _lock_file(database, "scheduler")
    try:
        handle = lock_path.open("a")
    except OSError as exc:
        raise StoreError(
            f"cannot take the scheduler lock {str(lock_path)!r}: {exc}; the folder must be writable"
        ) from exc

    def try_flock() -> bool:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:  # a flock lasts as long as the process holds the file open
        yield SchedulerLock(_wait_for(try_flock, stop, poll_seconds, str(lock_path)))
    finally:
        handle.close()  # releases the flock


def promotion_lock_key(schema: str, series: str) -> int:
    """The advisory lock key of ``series``' promotion in PostgreSQL schema ``schema``
    (a bigint: the class in the high bits, a CRC of schema and name in the low 32;
    two names sharing a CRC only wait for each other)."""
    return (_PROMOTION_LOCK_CLASS << 32) | zlib.crc32(f"{schema}\0{series}".encode())


@contextlib.contextmanager
def promotion_lock(
    engine: Engine, series: str, *, timeout: float = PROMOTION_LOCK_TIMEOUT_SECONDS
) -> Iterator[None]:
    """Serialise the gate and promotion of ``series`` across processes and threads.

    A training reads the champion, gates its candidate against it, registers the
    version, sets MLflow's alias and records the outcome in the store. Two trainings
    of one series at once (``forecaster train`` beside the scheduler's) each gated
    against the champion they had read, so a worse candidate could replace the better
    one promoted a moment earlier, and the MLflow alias and the store could end up
    naming different versions. PostgreSQL: a session advisory lock per series, on a
    connection of its own; SQLite: an exclusive ``flock`` on one file beside the
    database (one store's promotions are short and take turns); an in-memory
    database needs none.

    Raises:
        StoreError: The lock is still held by another training after ``timeout``
            seconds, or it cannot be taken (database down, folder not writable).
    """
    if engine.dialect.name == "postgresql":
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot take the promotion lock of {series!r}: {exc}") from exc
        try:
            with unbounded(conn):
                schema = str(conn.exec_driver_sql("SELECT current_schema()").scalar() or "")
                key = promotion_lock_key(schema, series)
                # the wait is bounded by lock_timeout, for this transaction only
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(timeout * 1000)}")
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({key})")
                conn.commit()  # the session lock outlives the transaction
        except SQLAlchemyError as exc:
            conn.invalidate()
            conn.close()
            raise StoreError(_promotion_busy(series, timeout, exc)) from exc
        try:
            yield
        finally:
            with contextlib.suppress(SQLAlchemyError):
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
                conn.commit()
            conn.close()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    lock_path = _lock_file(database, "promotion")
    try:
        handle = lock_path.open("a")  # its own open file: threads exclude each other too
    except OSError as exc:
        raise StoreError(
            f"cannot take the promotion lock {str(lock_path)!r}: {exc}; the folder must be writable"
        ) from exc
    with handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(_promotion_busy(series, timeout, None)) from None
                time.sleep(0.05)
        yield  # closing the file releases the flock


def _promotion_busy(series: str, timeout: float, exc: Exception | None) -> str:
    if exc is not None and "lock timeout" not in str(exc):
        return f"cannot take the promotion lock of {series!r}: {exc}"
    return (
        f"another training of {series!r} has been promoting it for more than {timeout:.0f}s "
        "(forecaster train beside the scheduler's?); this one was not recorded, train it "
        "again once that one is done"
    )


def _say_waiting(where: str) -> None:
    """Say why a migration waits (it waited without a word while another process
    migrated, or held the lock without migrating)."""
    log.warning(
        "another process is migrating %s (it holds the migration lock); waiting for it",
        where,
    )


def _wait_for(take: Callable[[], bool], stop: threading.Event, poll: float, what: str) -> bool:
    """Call ``take`` until it returns True (then True) or ``stop`` is set (then False)."""
    if take():
        return True
    log.warning("another forecaster scheduler holds the lock of %s; waiting for it to stop", what)
    while not stop.wait(poll):
        if take():
            log.info("scheduler lock of %s taken", what)
            return True
    return False


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database schema to ``revision`` (default: the latest).

    Safe to call from several processes at once: migrations are serialised and a
    database already at the target revision is left alone.

    Raises:
        StoreError: If the database cannot be reached or migrated.
    """
    from alembic import command

    try:
        found = current_revision(engine)
        if revision == "head" and found == head_revision():
            return  # nothing to do: no lock needed (a read-only folder can hold the store)
        check_known_revision(engine, found)
        _check_schema_exists(engine)
        with _migration_lock(engine):
            if revision == "head" and current_revision(engine) == head_revision():
                return
            command.upgrade(_alembic_config(engine), revision)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot migrate database {engine.url!r}: {exc}") from exc
    except OSError as exc:  # the SQLite lock file beside the database
        raise StoreError(
            f"cannot migrate database {engine.url!r}: cannot take the migration lock "
            f"beside it ({exc}); the folder must be writable"
        ) from exc


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the schema down to ``revision`` (``"base"`` drops every table)."""
    from alembic import command

    try:
        command.downgrade(_alembic_config(engine), revision)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot downgrade database {engine.url!r}: {exc}") from exc


def check_known_revision(engine: Engine, found: str | None) -> None:
    """Refuse a store at a schema revision this release does not ship.

    A store migrated by a newer release (an upgrade rolled back), or another
    application's Alembic database (MLflow's, a slip of FORECASTER_DATABASE__URL),
    failed every command with alembic's "Can't locate revision" traceback, and
    ``status`` advised ``forecaster db upgrade``, which failed the same way.

    Raises:
        StoreError: Naming the revision found and this release's newest.
    """
    from alembic.script import ScriptDirectory

    if found is None:
        return
    script = ScriptDirectory.from_config(_alembic_config(None))  # type: ignore[arg-type]
    if found in {rev.revision for rev in script.walk_revisions()}:
        return
    url = engine.url.render_as_string(hide_password=True)
    if not found.isdigit():  # forecaster's revisions are numbered 0001, 0002, ...
        raise StoreError(
            f"{url} is not a forecaster store: its Alembic revision {found} is another "
            "application's (MLflow's database?); check FORECASTER_DATABASE__URL"
        )
    raise StoreError(
        f"the store {url} is at schema revision {found}, which this release does not "
        f"know (its newest is {head_revision()}): a newer forecaster release migrated it; "
        "run that release"
    )


def _check_schema_exists(engine: Engine) -> None:
    """Refuse a PostgreSQL search_path that names no existing schema.

    The migration failed with "no schema has been selected to create in" and the
    whole CREATE TABLE statement, which did not say that the schema is missing.

    Raises:
        StoreError: Naming the search_path and the statement that creates the schema.
    """
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        if conn.exec_driver_sql("SELECT current_schema()").scalar() is not None:
            return
        path = str(conn.exec_driver_sql("SHOW search_path").scalar())
    first = path.split(",")[0].strip()
    raise StoreError(
        f"cannot migrate database {engine.url.render_as_string(hide_password=True)}: no "
        f"schema of its search_path ({path}) exists; create it first "
        f"(CREATE SCHEMA {first}) or fix FORECASTER_DATABASE__URL"
    )


def head_revision() -> str:
    """The latest schema revision this release ships."""
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)  # type: ignore[arg-type]
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:
        raise StoreError("no migrations found")
    return str(head)


def check_store_exists(url: str) -> None:
    """Refuse a SQLite store file that is not there (opening it would create it).

    Raises:
        StoreError: Naming the path.
    """
    path = missing_sqlite_file(url)
    if path is not None:
        raise StoreError(
            f"no store at {path}: check FORECASTER_DATABASE__URL (forecaster db upgrade "
            "creates one)"
        )


def new_store_warning(url: str) -> str | None:
    """What a server that reads the store should say before it creates an empty
    SQLite store at a path where none is (a mistyped URL would otherwise serve an
    empty store, 404 for every series, without a word); ``None`` when one is there."""
    path = missing_sqlite_file(url)
    if path is None:
        return None
    return (
        f"no store at {path} yet: creating an empty one, which stays empty until a "
        "scheduler (or forecaster ingest) using the same FORECASTER_DATABASE__URL fills "
        "it; if the scheduler writes elsewhere, check that setting"
    )


def missing_sqlite_file(url: str) -> Path | None:
    """The absolute path of a SQLite store file that ``url`` names and that is not
    there (opening it would create an empty store); ``None`` for any other URL."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        path = Path(database).expanduser()
        if not path.is_file():
            return path.absolute()
    return None


def check_at_head(engine: Engine) -> None:
    """Refuse a store whose schema is not this release's (for read-only commands).

    Raises:
        StoreError: With the revision found and what to run.
    """
    found = current_revision(engine)
    check_known_revision(engine, found)
    if found != head_revision():
        raise StoreError(
            f"the store {engine.url.render_as_string(hide_password=True)} is at schema "
            f"revision {found or 'none (empty database)'}, not {head_revision()}: run "
            "forecaster db upgrade (or start the scheduler, which migrates it)"
        )


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (``None`` before the first migration)."""
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
            return None if row is None else str(row[0])
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read schema version from {engine.url!r}: {exc}") from exc
