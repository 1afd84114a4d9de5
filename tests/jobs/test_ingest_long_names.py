"""A split_by member whose name is too long to store does not stop its family.

Prometheus label values have no length limit (a route, a URL, a SQL digest); a
member's stored name is the family plus its label values and the store keeps at
most ``SERIES_NAME_MAX`` characters. On PostgreSQL the over-long name used to fail
``ensure_series`` for the whole family on every run (no member was ever ingested),
while SQLite stored it silently.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from forecaster.errors import InputDataError
from forecaster.jobs.context import JobContext
from forecaster.jobs.runner import run_ingest
from forecaster.store.tables import SERIES_NAME_MAX
from forecaster.timeseries import read_series_csv, to_grid
from tests.support.promserver import running_prometheus, shift_to_end_at, utc_now_floor

pytestmark = pytest.mark.integration
STEP = timedelta(minutes=5)
LONG_ROUTE = "/search?" + "q=" + "x" * 400


def test_an_over_long_member_is_skipped_named_and_the_others_ingested(
    tmp_path: Path, nab: Path, make_settings: Any, write_spec: Any, db_url: str
) -> None:
    end = utc_now_floor(300) - STEP
    trace = to_grid(read_series_csv(nab / "realTweets/Twitter_volume_GOOG.csv"), STEP).dropna()
    trace = shift_to_end_at(trace.iloc[-288:], end)
    series = {
        'http_rps{route="/pay"}': trace,
        'http_rps{route="/cart"}': trace * 2,
        f'http_rps{{route="{LONG_ROUTE}"}}': trace * 3,
    }
    spec = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "rps", "query": "sum by (route) (http_rps)", "split_by": ["route"]}],
        step="5m",
        history="1d",
        horizon="1h",
    )
    with running_prometheus(tmp_path / "prom", series) as server:
        ctx = JobContext.create(make_settings(db=db_url, spec=spec, prometheus={"url": server.url}))
        try:
            specs = ctx.select(None)
            first = run_ingest(ctx, specs)
            stored = {
                info.name: ctx.store.count_observations(info.name)
                for info in ctx.store.list_series()
            }
            # The next run resumes from the stored members: nothing duplicated or lost.
            second = run_ingest(ctx, specs)
            again = {
                info.name: ctx.store.count_observations(info.name)
                for info in ctx.store.list_series()
            }
        finally:
            ctx.store.engine.dispose()

    assert stored == {'rps{route="/cart"}': 288, 'rps{route="/pay"}': 288}
    assert again == stored
    long_name = f'rps{{route="{LONG_ROUTE}"}}'
    for summary in (first, second):
        message = summary.errors["rps"]
        assert "1 member(s) not stored" in message
        assert f"longer than the {SERIES_NAME_MAX} characters" in message
        assert (
            "'rps{route=\"/search?q=xxx" in message and f"({len(long_name)} characters)" in message
        )
        assert "the other 2 member(s) were ingested" in message
        assert "label_replace" in message


def test_the_store_refuses_an_over_long_name_on_every_database(db_url: str) -> None:
    from forecaster.config import DatabaseSettings
    from forecaster.store.db import make_engine, upgrade
    from forecaster.store.repository import Store

    engine = make_engine(DatabaseSettings(url=db_url))
    upgrade(engine)
    store = Store(engine)
    try:
        name = "a" * (SERIES_NAME_MAX + 1)
        with pytest.raises(InputDataError, match=f"is {SERIES_NAME_MAX + 1} characters long"):
            store.ensure_series(name=name, family="a", step_seconds=300, horizon_steps=3)
        assert store.list_series() == []
        exact = "a" * SERIES_NAME_MAX
        store.ensure_series(name=exact, family="a", step_seconds=300, horizon_steps=3)
        assert [info.name for info in store.list_series()] == [exact]
    finally:
        engine.dispose()
