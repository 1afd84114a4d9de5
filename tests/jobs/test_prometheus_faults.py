"""Prometheus going away mid-life: errors are recorded, nothing bad is written, and the
next successful ingest catches up without a gap (real Prometheus, real store).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from forecaster.jobs.context import JobContext
from forecaster.jobs.ingest import ingest_series
from forecaster.jobs.runner import run_ingest
from forecaster.timeseries import read_series_csv, to_grid
from tests.support.promserver import running_prometheus, shift_to_end_at, utc_now_floor

pytestmark = pytest.mark.integration
STEP = timedelta(minutes=5)


def test_outage_then_catch_up_without_gaps(
    tmp_path: Path, nab: Path, make_settings: Any, write_spec: Any
) -> None:
    trace = to_grid(read_series_csv(nab / "realTweets/Twitter_volume_KO.csv"), STEP).dropna()
    end = utc_now_floor(300) - STEP
    trace = shift_to_end_at(trace, end).iloc[-8 * 288 :]
    series = {'requests_rate{service="api"}': trace}
    spec = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "api_rps", "query": 'sum(requests_rate{service="api"})'}],
        history="5d",
        horizon="1h",
    )
    with running_prometheus(tmp_path / "p1", series) as first:
        settings = make_settings(
            spec=spec,
            prometheus={
                "url": first.url,
                "retries": 1,
                "backoff_seconds": 0.01,
                "timeout_seconds": 2,
            },
        )
        ctx = JobContext.create(settings)
        spec_obj = ctx.select(None)[0]
        two_days_ago: datetime = end - timedelta(days=2)
        ingest_series(ctx, spec=spec_obj, now=two_days_ago)
        before = ctx.store.history("api_rps")
        assert before[-1][0] == two_days_ago

    # Prometheus is down: the run fails, says which series and query, writes nothing.
    summary = run_ingest(ctx, [spec_obj])
    assert not summary.ok
    message = summary.errors["api_rps"]
    assert first.url.split("//")[1] in message and "requests_rate" in message
    assert ctx.store.history("api_rps") == before
    failed = [r for r in ctx.store.last_job_runs() if r["job"] == "ingest" and not r["ok"]]
    assert failed and "requests_rate" in failed[0]["detail"]

    # Prometheus is back (same data, new address): the next run fills the gap.
    with running_prometheus(tmp_path / "p2", series) as second:
        ctx2 = JobContext.create(
            settings.model_copy(
                update={"prometheus": settings.prometheus.model_copy(update={"url": second.url})}
            )
        )
        assert run_ingest(ctx2, [spec_obj]).ok
        stored = pd.Series(dict(ctx2.store.history("api_rps")))
    window = trace[(trace.index >= stored.index[0]) & (trace.index <= end)]
    # Prometheus repeats the last sample across short gaps (lookback), so compare on
    # the trace's own timestamps: every one of them is stored with its value.
    # (At the live edge Prometheus may also repeat the last sample one step past it.)
    assert end <= stored.index[-1] <= end + STEP
    assert len(stored) >= len(window)
    assert (stored.reindex(window.index) - window).abs().max() < 1e-9
    steps = stored.index.to_series().diff().dropna()
    assert (steps == STEP).all(), "a gap was left in the history"
    ctx.store.engine.dispose()
    ctx2.store.engine.dispose()


def test_a_query_matching_nothing_is_warned_about(
    tmp_path: Path, nab: Path, make_settings: Any, write_spec: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A typo in a metric name matches nothing: the run succeeds with 0 points, so it
    must at least say so (the first sign was 'no history yet' at training)."""
    trace = to_grid(read_series_csv(nab / "realTweets/Twitter_volume_KO.csv"), STEP).dropna()
    trace = shift_to_end_at(trace, utc_now_floor(300) - STEP).iloc[-288:]
    spec = write_spec(
        tmp_path / "spec.yaml",
        [
            {"name": "typo", "query": 'sum(request_rate{service="api"})'},
            {"name": "right", "query": 'sum(requests_rate{service="api"})'},
        ],
        history="1d",
        horizon="1h",
    )
    with running_prometheus(tmp_path / "p", {'requests_rate{service="api"}': trace}) as prom:
        ctx = JobContext.create(make_settings(spec=spec, prometheus={"url": prom.url}))
        summary = run_ingest(ctx, ctx.select(None))
    assert summary.ok
    warned = [r.getMessage() for r in caplog.records if "matched no series" in r.getMessage()]
    assert len(warned) == 1 and "typo" in warned[0] and "request_rate" in warned[0]
