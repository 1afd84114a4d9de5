"""One training at a time gates and promotes a series, across processes.

``forecaster train`` run beside the scheduler trained the same series twice at once:
each gated against the champion it had read before logging to MLflow, and MLflow's
champion alias and the store's champion could end up naming different versions.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from forecaster.errors import StoreError
from forecaster.jobs.context import JobContext
from forecaster.jobs.runner import run_ingest
from forecaster.jobs.train import fit_history, prepare_fit, record_fit
from forecaster.registry import CHAMPION
from forecaster.store.db import promotion_lock


def _hold(engine: Any, series: str, taken: threading.Event, release: threading.Event) -> None:
    with promotion_lock(engine, series):
        taken.set()
        release.wait(30)


def test_a_second_holder_waits_for_the_first_and_gives_up_with_a_clear_error(
    db_url: str,
) -> None:
    engine = create_engine(db_url)
    other = create_engine(db_url)  # another process's engine
    taken, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold, args=(engine, "checkout", taken, release))
    holder.start()
    try:
        assert taken.wait(10)
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"another training of 'checkout'.*train it again"):
            with promotion_lock(other, "checkout", timeout=0.5):
                pass
        assert time.monotonic() - started >= 0.5  # it waited before giving up
        if engine.dialect.name == "postgresql":  # per series there; one file on SQLite
            with promotion_lock(other, "payments", timeout=0.5):
                pass
    finally:
        release.set()
        holder.join(10)
    with promotion_lock(other, "checkout", timeout=5):  # free once the first is done
        pass
    engine.dispose()
    other.dispose()


@pytest.fixture
def spec_path(tmp_path: Path, write_spec: Any, nab: Path) -> Path:
    path: Path = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "elb", "file": str(nab / "realAWSCloudwatch" / "elb_request_count_8c0756.csv")}],
        step="5m",
        history="4d",
        horizon="2h",
        estimators=["seasonal_naive", "lightgbm"],
    )
    return path


def test_two_trainings_of_one_series_at_once_leave_mlflow_and_the_store_agreeing(
    db_url: str, make_settings: Any, spec_path: Path
) -> None:
    """The first training sets MLflow's champion alias and is slow to record it in the
    store; the second one, meanwhile, read no champion, promoted its own version in
    both, and the first then recorded its version in the store: MLflow served one
    version as champion, the store (and so every forecast) another."""
    settings = make_settings(db=db_url, spec=spec_path)
    first, second = JobContext.create(settings), JobContext.create(settings)
    (spec,) = first.select(None)
    assert run_ingest(first, [spec]).ok
    task = prepare_fit(first, spec=spec, name="elb", n_jobs=1)
    outcome = fit_history(task)

    set_alias = first.registry.set_alias
    aliased = threading.Event()

    def slow_after_alias(series: str, alias: str, version: str) -> None:
        set_alias(series, alias, version)
        aliased.set()
        time.sleep(1.5)  # the first training is slow to reach the store

    first.registry.set_alias = slow_after_alias  # type: ignore[method-assign]
    results: dict[str, Any] = {}

    def train(ctx: JobContext, key: str) -> None:
        results[key] = record_fit(ctx, spec=spec, task=task, outcome=outcome)

    one = threading.Thread(target=train, args=(first, "first"))
    one.start()
    assert aliased.wait(60)
    two = threading.Thread(target=train, args=(second, "second"))
    two.start()
    one.join(120)
    two.join(120)
    assert set(results) == {"first", "second"}

    # the second gated against the champion the first had just promoted
    assert results["first"].promoted
    assert "matches or beats the champion" in results["second"].reason, results["second"].reason
    champion = second.store.champion("elb")
    alias = second.registry.alias("elb", CHAMPION)
    assert champion is not None and alias is not None
    assert champion.model_version == alias.version
    assert champion.run_id == alias.run_id
    for ctx in (first, second):
        ctx.store.engine.dispose()
