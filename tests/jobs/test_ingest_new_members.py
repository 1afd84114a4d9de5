"""Members a family's incremental ingest meets for the first time, on a real Prometheus.

The family's window starts where its stored members left off. A member the store had
not seen got only that window's last few steps, though Prometheus had its history:
after a change of ``split_by`` every member was new, and none could be trained for
days. A member that first appears inside the window has no older history.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from forecaster.jobs.context import JobContext
from forecaster.jobs.ingest import ingest_series
from forecaster.timeseries import read_series_csv, to_grid
from tests.support.promserver import running_prometheus, shift_to_end_at, utc_now_floor

pytestmark = pytest.mark.integration
STEP = timedelta(minutes=5)


def test_members_new_to_the_store_get_their_history_and_a_new_one_its_own(
    tmp_path: Path, nab: Path, write_spec: Any, make_settings: Any
) -> None:
    end = utc_now_floor(300) - STEP
    trace = to_grid(read_series_csv(nab / "realTweets/Twitter_volume_GOOG.csv"), STEP).dropna()
    trace = shift_to_end_at(trace.iloc[-2 * 288 :], end)  # two days
    late = trace[trace.index > pd.Timestamp(end - timedelta(hours=2))]  # a new route
    series = {
        'req{route="/pay",code="200"}': trace,
        'req{route="/pay",code="500"}': trace * 0.1,
        'req{route="/cart",code="200"}': trace * 0.5,
        'req{route="/new",code="200"}': late,
    }

    def context(query: str, split_by: list[str]) -> tuple[JobContext, Any]:
        path = write_spec(
            tmp_path / "spec.yaml",
            [{"name": "shop", "query": query, "split_by": split_by}],
            step="5m",
            history="1d",
            horizon="1h",
        )
        ctx = JobContext.create(make_settings(spec=path, prometheus={"url": server.url}))
        return ctx, ctx.select(None)[0]

    with running_prometheus(tmp_path / "prom", series) as server:
        ctx, spec = context("sum by (route) (req)", ["route"])
        ingest_series(ctx, spec=spec, now=end - timedelta(hours=6))
        ctx.store.engine.dispose()

        # the family is now split by route and code: every member's name is new
        ctx, spec = context("sum by (route, code) (req)", ["route", "code"])
        ingest_series(ctx, spec=spec, now=end)
        members = [info.name for info in ctx.store.list_series(family="shop")]
        counts = {name: len(ctx.store.history(name)) for name in members}
        ctx.store.engine.dispose()

    a_day = 288
    for name in (
        'shop{code="200",route="/pay"}',
        'shop{code="500",route="/pay"}',
        'shop{code="200",route="/cart"}',
    ):
        assert counts[name] >= a_day, (name, counts[name])  # was 6 h and 3 steps: 75
    assert counts['shop{code="200",route="/new"}'] == len(late)
    assert counts['shop{route="/pay"}'] >= a_day  # the old members are left as they were
