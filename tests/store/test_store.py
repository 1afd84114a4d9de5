"""The store on SQLite and PostgreSQL: migrations, idempotent ingestion, atomic publishing."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecaster.config import DatabaseSettings
from forecaster.errors import ForecastNotFound, InputDataError, SeriesNotFound, StoreError
from forecaster.store.db import current_revision, head_revision, make_engine, upgrade
from forecaster.store.repository import ForecastPoint, Store

T0 = datetime(2026, 1, 5, tzinfo=UTC)
STEP = timedelta(minutes=5)


@pytest.fixture
def store(db_url: str) -> Store:
    engine = make_engine(DatabaseSettings(url=db_url))
    upgrade(engine)
    yield Store(engine)
    engine.dispose()


def _points(start: int, stop: int, scale: float = 1.0) -> list[tuple[datetime, float]]:
    return [(T0 + i * STEP, float(i) * scale) for i in range(start, stop)]


def test_migration_is_idempotent_and_versioned(store: Store) -> None:
    head = head_revision()
    assert current_revision(store.engine) == head
    upgrade(store.engine)
    assert current_revision(store.engine) == head


def test_migrations_downgrade_and_upgrade_again(store: Store) -> None:
    from forecaster.store.db import downgrade

    downgrade(store.engine, "base")
    assert current_revision(store.engine) is None
    upgrade(store.engine)
    assert current_revision(store.engine) == head_revision()


def test_a_store_migrated_by_a_newer_release_is_named_not_a_traceback(store: Store) -> None:
    # an upgrade rolled back: alembic's "Can't locate revision" traceback from every
    # command, and status advised "forecaster db upgrade", which failed the same way
    from forecaster.store.db import check_at_head

    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    for check in (upgrade, check_at_head):
        with pytest.raises(StoreError, match="revision 9999, which this release does not know"):
            check(store.engine)


def test_another_applications_alembic_database_is_not_a_store(store: Store) -> None:
    # FORECASTER_DATABASE__URL pointed at MLflow's database (models/mlflow.db), which
    # keeps its Alembic revision in the same table
    from forecaster.store.db import check_at_head

    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'dc11669786a5'")
    for check in (upgrade, check_at_head):
        with pytest.raises(StoreError, match=r"is not a forecaster store: .*\(MLflow's database"):
            check(store.engine)


@pytest.mark.postgres
def test_a_missing_postgres_schema_is_named(pg_url: str) -> None:
    # was "no schema has been selected to create in" and the whole CREATE TABLE
    missing = pg_url.rsplit("%3D", 1)[0] + "%3Dnot_created_yet"
    engine = make_engine(DatabaseSettings(url=missing))
    with pytest.raises(StoreError, match=r"\(not_created_yet\) exists; create it first"):
        upgrade(engine)
    engine.dispose()


def test_overlapping_ingestion_never_duplicates_or_loses(store: Store) -> None:
    sid = store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=12)
    assert store.upsert_observations(sid, _points(0, 100)) == 100
    store.upsert_observations(sid, _points(50, 150))
    store.upsert_observations(sid, _points(0, 150))
    assert store.count_observations("rps") == 150
    rows = store.history("rps")
    assert [ts for ts, _ in rows] == [T0 + i * STEP for i in range(150)]
    assert rows[-1][1] == 149.0
    assert store.series("rps").last_observation_at == T0 + 149 * STEP


def test_upsert_overwrites_revised_values(store: Store) -> None:
    sid = store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=12)
    store.upsert_observations(sid, _points(0, 10))
    store.upsert_observations(sid, _points(5, 10, scale=2.0))
    values = dict(store.history("rps"))
    assert values[T0 + 4 * STEP] == 4.0
    assert values[T0 + 9 * STEP] == 18.0


def test_history_window_and_timezones(store: Store) -> None:
    sid = store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=12)
    store.upsert_observations(sid, _points(0, 20))
    rows = store.history("rps", since=T0 + 5 * STEP, until=T0 + 9 * STEP)
    assert len(rows) == 5
    assert all(ts.tzinfo is not None and ts.utcoffset() == timedelta(0) for ts, _ in rows)


def test_bad_values_are_refused_and_nothing_written(store: Store) -> None:
    sid = store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=12)
    with pytest.raises(InputDataError, match="non-finite"):
        store.upsert_observations(sid, [(T0, 1.0), (T0 + STEP, float("nan"))])
    with pytest.raises(InputDataError, match="naive datetime"):
        store.upsert_observations(sid, [(datetime(2026, 1, 1), 1.0)])
    assert store.count_observations("rps") == 0


def test_unknown_series(store: Store) -> None:
    with pytest.raises(SeriesNotFound, match="'nope'"):
        store.history("nope")
    with pytest.raises(SeriesNotFound):
        store.latest_forecast("nope")


def _forecast(n: int, base: float) -> list[ForecastPoint]:
    return [
        ForecastPoint(
            step=i, ds=T0 + i * STEP, yhat=base + i, yhat_lower=base, yhat_upper=base + 2 * i
        )
        for i in range(1, n + 1)
    ]


def test_publish_and_read_back_with_provenance(store: Store) -> None:
    store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=3)
    with pytest.raises(ForecastNotFound, match="no published forecast"):
        store.latest_forecast("rps")
    pub = store.publish_forecast(
        series="rps",
        generated_at=T0,
        origin=T0,
        step_seconds=300,
        level=90.0,
        model_name="prophet",
        model_version="3",
        run_id="abc",
        points=_forecast(3, 10.0),
    )
    fc = store.latest_forecast("rps")
    assert fc.publication_id == pub
    assert (fc.model_name, fc.model_version, fc.run_id, fc.level) == ("prophet", "3", "abc", 90.0)
    assert [p.step for p in fc.points] == [1, 2, 3]
    assert fc.points[0].ds == T0 + STEP


def test_bulk_read_of_publications_matches_the_single_reads(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two queries per 500 publications (the view's first load), rows fetched 5,000 at
    # a time; here three publications per query and five rows per fetch, so that reads
    # span several queries and fetches, and a reference band on one series.
    monkeypatch.setattr("forecaster.store.repository._PUBLICATIONS_PER_QUERY", 3)
    monkeypatch.setattr("forecaster.store.repository._ROWS_PER_FETCH", 5)  # mid-forecast
    wanted: dict[int, str] = {}
    for i in range(7):
        name = f"svc{i}"
        store.ensure_series(name=name, family=name, step_seconds=300, horizon_steps=4)
        points = _forecast(4, 10.0 * i)
        if i == 2:
            points = [_point((3.0, 2.0, 4.5)), _point(None, step=2)]
        pub = store.publish_forecast(
            series=name,
            generated_at=T0 + i * STEP,
            origin=T0,
            step_seconds=300,
            level=80.0 + i,
            model_name="lightgbm",
            model_version=str(i),
            run_id=f"run{i}",
            points=points,
            band_scale=1.0 + i / 10,
        )
        wanted[pub] = name

    read = store.publications(wanted)

    assert sorted(read) == sorted(wanted)
    for pub, name in wanted.items():
        single = store.latest_forecast(name)
        bulk = read[pub]
        assert (bulk.series, bulk.publication_id) == (name, pub)
        assert list(bulk.points) == list(single.points)
        assert [p.ds.tzinfo for p in bulk.points] == [UTC] * len(single.points)
        assert {f: getattr(bulk, f) for f in ("generated_at", "origin", "level", "band_scale")} == {
            f: getattr(single, f) for f in ("generated_at", "origin", "level", "band_scale")
        }
    assert read[min(wanted)].points[0].ds == T0 + STEP
    assert store.publications({}) == {}


def test_bulk_read_names_publications_no_longer_there(store: Store) -> None:
    store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=3)
    pub = _publish_at(store, T0, n=3, yhat=1.0, half=0.5)
    with pytest.raises(StoreError, match=r"1 forecast\(s\) are no longer in the store \('gone'\)"):
        store.publications({pub: "rps", pub + 1: "gone"})


def test_publish_refuses_broken_forecasts(store: Store) -> None:
    store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=3)
    common = dict(
        series="rps",
        generated_at=T0,
        origin=T0,
        step_seconds=300,
        level=90.0,
        model_name="m",
        model_version="1",
        run_id="r",
    )
    with pytest.raises(InputDataError, match="empty"):
        store.publish_forecast(points=[], **common)  # type: ignore[arg-type]
    bad = [ForecastPoint(step=1, ds=T0, yhat=5.0, yhat_lower=6.0, yhat_upper=7.0)]
    with pytest.raises(InputDataError, match="does not contain yhat"):
        store.publish_forecast(points=bad, **common)  # type: ignore[arg-type]
    nan = [ForecastPoint(step=1, ds=T0, yhat=float("nan"), yhat_lower=0.0, yhat_upper=1.0)]
    with pytest.raises(InputDataError, match="not finite"):
        store.publish_forecast(points=nan, **common)  # type: ignore[arg-type]
    for reference, problem in (
        ((5.0, 6.0, 7.0), "reference interval"),
        ((5.0, 4.0, float("inf")), "reference values are not finite"),
    ):
        with pytest.raises(InputDataError, match=problem):
            store.publish_forecast(points=[_point(reference)], **common)  # type: ignore[arg-type]
    with pytest.raises(ForecastNotFound):
        store.latest_forecast("rps")


def _point(reference: tuple[float, float, float] | None, step: int = 1) -> ForecastPoint:
    ds = T0 + (step - 1) * STEP
    return ForecastPoint(
        step=step, ds=ds, yhat=5.0, yhat_lower=4.0, yhat_upper=6.0, reference=reference
    )


def test_the_reference_band_round_trips_and_is_optional(store: Store) -> None:
    store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=2)
    store.publish_forecast(
        series="rps",
        generated_at=T0,
        origin=T0,
        step_seconds=300,
        level=90.0,
        model_name="m",
        model_version="1",
        run_id="r",
        points=[_point((3.0, 2.0, 4.5)), _point(None, step=2)],
    )
    first, second = store.latest_forecast("rps").points
    assert first.reference == (3.0, 2.0, 4.5)
    assert first.detection_band() == (3.0, 2.0, 4.5)
    assert second.reference is None
    assert second.detection_band() == (5.0, 4.0, 6.0)


def test_readers_never_see_half_a_forecast(store: Store) -> None:
    """Concurrent readers see either a whole old or a whole new forecast."""
    store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=200)
    store.publish_forecast(
        series="rps",
        generated_at=T0,
        origin=T0,
        step_seconds=300,
        level=90.0,
        model_name="m",
        model_version="0",
        run_id="r0",
        points=_forecast(200, 0.0),
    )
    stop = threading.Event()
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            fc = store.latest_forecast("rps")
            bases = {p.yhat_lower for p in fc.points}
            if len(fc.points) != 200 or len(bases) != 1:
                problems.append(f"torn read: {len(fc.points)} points, bases {bases}")
            if fc.model_version != str(int(fc.points[0].yhat_lower)):
                problems.append("provenance does not match points")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for version in range(1, 15):
        store.publish_forecast(
            series="rps",
            generated_at=T0 + version * timedelta(minutes=1),
            origin=T0,
            step_seconds=300,
            level=90.0,
            model_name="m",
            model_version=str(version),
            run_id=f"r{version}",
            points=_forecast(200, float(version)),
        )
    stop.set()
    for t in threads:
        t.join()
    assert problems == []
    assert store.latest_forecast("rps").model_version == "14"


def test_old_publications_are_thinned(store: Store) -> None:
    store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=3)
    start = T0
    for minute in range(0, 6 * 60, 10):
        store.publish_forecast(
            series="rps",
            generated_at=start + timedelta(minutes=minute),
            origin=start,
            step_seconds=300,
            level=90.0,
            model_name="m",
            model_version="1",
            run_id="r",
            points=_forecast(3, 1.0),
        )
    now = start + timedelta(minutes=350)
    hour_ago = store.forecast_made_before("rps", now - timedelta(hours=1))
    day_old = store.forecast_made_before("rps", now - timedelta(hours=5))
    assert hour_ago is not None and day_old is not None
    with store.engine.connect() as conn:
        count = conn.exec_driver_sql("SELECT count(*) FROM publications").scalar_one()
    # 12 in the last two hours + one per earlier hour (4 hours), instead of 36.
    assert count <= 12 + 5


def test_champion_follows_promotions_only(store: Store) -> None:
    store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=3)
    assert store.champion("rps") is None
    store.record_training(
        series="rps",
        run_id="r1",
        estimator="seasonal_naive",
        model_version="1",
        promoted=True,
        reason="first",
        metrics={"mase": 1.0},
        artifact="{}",
    )
    store.record_training(
        series="rps",
        run_id="r2",
        estimator="prophet",
        model_version="2",
        promoted=False,
        reason="worse",
        metrics={"mase": 1.5},
        artifact="{}",
    )
    champ = store.champion("rps")
    assert champ is not None and champ.estimator == "seasonal_naive" and champ.model_version == "1"
    assert [t["run_id"] for t in store.trainings("rps")] == ["r2", "r1"]
    listed = store.list_series()
    assert listed[0].champion == "seasonal_naive"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 30)), min_size=1, max_size=6))
def test_ingestion_is_idempotent_property(
    tmp_path_factory: pytest.TempPathFactory, batches: list[tuple[int, int]]
) -> None:
    path = tmp_path_factory.mktemp("prop") / "s.db"
    engine = make_engine(DatabaseSettings(url=f"sqlite:///{path}"))
    upgrade(engine)
    store = Store(engine)
    sid = store.ensure_series(name="x", family="x", step_seconds=300, horizon_steps=1)
    expected: set[int] = set()
    for start, length in batches:
        store.upsert_observations(sid, _points(start, start + length))
        store.upsert_observations(sid, _points(start, start + length))
        expected.update(range(start, start + length))
    rows = store.history("x")
    assert [ts for ts, _ in rows] == [T0 + i * STEP for i in sorted(expected)]
    engine.dispose()


def test_concurrent_first_migrations_do_not_collide(db_url: str) -> None:
    """API, scheduler and scaler often start together on an empty database."""
    import subprocess
    import sys

    code = (
        "from forecaster.config import DatabaseSettings\n"
        "from forecaster.store.db import make_engine, upgrade\n"
        f"upgrade(make_engine(DatabaseSettings(url={db_url!r})))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE) for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    engine = make_engine(DatabaseSettings(url=db_url))
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_a_migration_waiting_for_another_says_so(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`db upgrade` waited without a word while another process held the migration
    lock; it now logs why it waits, and migrates once the lock is free."""
    from forecaster.store import db as store_db

    engine = make_engine(DatabaseSettings(url=db_url))
    done = threading.Event()
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            upgrade(engine)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            done.set()

    holder = make_engine(DatabaseSettings(url=db_url))  # as another process would
    with caplog.at_level("WARNING", logger="forecaster.store.db"):
        with store_db._migration_lock(holder):
            worker = threading.Thread(target=migrate)
            worker.start()
            deadline = time.monotonic() + 30
            while "waiting for it" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not done.is_set()  # it waits while the lock is held
        worker.join(timeout=120)
    assert done.is_set() and not errors, errors
    assert "another process is migrating" in caplog.text
    assert current_revision(engine) == head_revision()
    engine.dispose()
    holder.dispose()


def test_a_sqlite_store_whose_folder_cannot_be_made_is_a_store_error(tmp_path: Path) -> None:
    # a file where the store's folder should be: was a FileExistsError traceback
    (tmp_path / "taken").write_text("")
    with pytest.raises(StoreError, match="cannot create the folder .*taken of the SQLite store"):
        make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path / 'taken' / 'store.db'}"))


def test_non_finite_metrics_are_stored_as_null_on_every_database(store: Store) -> None:
    # A constant series (an error rate that is always 0) has no naive error to scale
    # by: its backtest MASE is NaN. PostgreSQL's json type refused the NaN token, so
    # the training could never be recorded and the series never got a forecast.
    nan, inf = float("nan"), float("inf")
    store.ensure_series(name="errors", family="errors", step_seconds=300, horizon_steps=3)
    store.record_training(
        series="errors",
        run_id="r1",
        estimator="seasonal_naive",
        model_version="1",
        promoted=True,
        reason="fallback",
        metrics={"mase": nan, "scores": {"seasonal_naive": {"mase": nan, "width": inf}}},
        artifact="{}",
    )

    (row,) = store.trainings("errors")
    assert row["metrics"] == {
        "mase": None,
        "scores": {"seasonal_naive": {"mase": None, "width": None}},
    }
    champion = store.champion("errors")
    assert champion is not None and champion.mase is None


def _publish_at(
    store: Store,
    generated: datetime,
    *,
    n: int,
    yhat: float,
    half: float,
    scale: float = 1.0,
    long_scale: float | None = None,
) -> int:
    def stretch(i: int) -> float:  # steps beyond an hour (12 x 5 min): the long scale
        return long_scale if long_scale is not None and i > 12 else scale

    points = [
        ForecastPoint(
            step=i,
            ds=generated + i * STEP,
            yhat=yhat,
            yhat_lower=yhat - half * stretch(i),
            yhat_upper=yhat + half * stretch(i),
        )
        for i in range(1, n + 1)
    ]
    return store.publish_forecast(
        series="rps",
        generated_at=generated,
        origin=generated,
        step_seconds=300,
        level=90.0,
        model_name="m",
        model_version="1",
        run_id="r",
        points=points,
        band_scale=scale,
        band_scale_long=long_scale,
    )


def test_hourly_forecast_points_take_the_first_publication_of_each_hour(store: Store) -> None:
    """Each step is judged by the latest hourly publication before it, with the band the
    estimator gave (the stored band_scale undone)."""
    store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=24)
    # hour 0: first publication (yhat 10, stretched x2), then one 10 min later (yhat 99)
    _publish_at(store, T0, n=24, yhat=10.0, half=1.0, scale=2.0)
    _publish_at(store, T0 + timedelta(minutes=10), n=24, yhat=99.0, half=1.0)
    # hour 1: first publication yhat 20
    _publish_at(store, T0 + timedelta(hours=1), n=24, yhat=20.0, half=3.0)
    rows = store.hourly_forecast_points("rps", since=T0, until=T0 + timedelta(hours=1, minutes=30))
    assert [r[0] for r in rows] == [T0 + i * STEP for i in range(1, 19)]
    first_hour = [r for r in rows if r[0] <= T0 + timedelta(hours=1)]
    assert {r[1:] for r in first_hour} == {(10.0, 9.0, 11.0)}  # x2 undone, not the 99s
    assert {r[1:] for r in rows[len(first_hour) :]} == {(20.0, 17.0, 23.0)}
    assert store.hourly_forecast_points("rps", since=T0 - timedelta(days=3), until=T0) == []


def test_publish_records_the_band_scale_and_refuses_a_bad_one(store: Store) -> None:
    store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=3)
    _publish_at(store, T0, n=3, yhat=5.0, half=1.0, scale=1.5)
    assert store.latest_forecast("rps").band_scale == 1.5
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputDataError, match="band_scale must be a positive number"):
            _publish_at(store, T0 + STEP, n=3, yhat=5.0, half=1.0, scale=bad)
    assert store.latest_forecast("rps").band_scale == 1.5  # nothing written
    assert store.latest_forecast("rps").band_scale_long == 1.5  # default: the short one
    _publish_at(store, T0 + STEP, n=3, yhat=5.0, half=1.0, scale=1.5, long_scale=0.7)
    assert store.latest_forecast("rps").band_scale_long == 0.7
    for bad in (0.0, float("nan"), float("inf")):
        with pytest.raises(InputDataError, match="band_scale_long must be a positive number"):
            _publish_at(store, T0 + 2 * STEP, n=3, yhat=5.0, half=1.0, long_scale=bad)


def test_long_lead_forecast_points_are_every_hourly_forecast_beyond_an_hour(
    store: Store,
) -> None:
    """Steps more than an hour after their publication, from every hourly publication
    (not only the latest), with the long band scale undone."""
    store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=36)
    _publish_at(store, T0, n=36, yhat=10.0, half=1.0, scale=2.0, long_scale=4.0)
    _publish_at(store, T0 + timedelta(minutes=10), n=36, yhat=99.0, half=1.0)  # not hourly
    _publish_at(store, T0 + timedelta(hours=1), n=36, yhat=20.0, half=3.0, scale=5.0)
    until = T0 + timedelta(hours=4)
    rows = store.long_lead_forecast_points("rps", since=T0, until=until)
    first = [r for r in rows if r[1] == 10.0]
    second = [r for r in rows if r[1] == 20.0]
    assert len(rows) == len(first) + len(second) == 24 + 24
    assert [r[0] for r in first] == [T0 + i * STEP for i in range(13, 37)]
    # long scale 4 undone (stored half 4 -> 1); the second: no long scale given, so 5
    assert {r[1:] for r in first} == {(10.0, 9.0, 11.0)}
    assert {r[1:] for r in second} == {(20.0, 17.0, 23.0)}
    later = store.long_lead_forecast_points("rps", since=T0 + timedelta(hours=3), until=until)
    assert {r[1] for r in later} == {10.0, 20.0}  # ds filter, not publication time


def test_an_up_to_date_store_needs_no_migration_lock_and_a_lock_failure_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store in a folder where the lock file cannot be made (read-only) was a raw
    PermissionError traceback from every command, even with nothing to migrate."""
    import contextlib

    from forecaster.store import db

    @contextlib.contextmanager
    def no_lock(_engine: object) -> Any:
        raise PermissionError(1, "Operation not permitted", "f.db.migrate.lock")
        yield

    engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path / 'f.db'}"))
    upgrade(engine)
    monkeypatch.setattr(db, "_migration_lock", no_lock)
    upgrade(engine)  # at head: the lock is not taken
    fresh = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path / 'new.db'}"))
    with pytest.raises(StoreError, match="cannot take the migration lock .* must be writable"):
        upgrade(fresh)
    engine.dispose()
    fresh.dispose()
