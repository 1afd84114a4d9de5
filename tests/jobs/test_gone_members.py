"""A split_by member that stops reporting: the family's ingest window does not wait for
it, and no forecast ending in the past is published for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from forecaster.errors import InputDataError
from forecaster.jobs import ingest
from forecaster.jobs.context import JobContext
from forecaster.jobs.publish import _check_reaches_ahead

STEP = timedelta(minutes=1)


def test_the_ingest_window_waits_for_reporting_members_only(
    tmp_path: Path, make_settings: Any, write_spec: Any
) -> None:
    spec_path = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "fam", "query": "sum by (pod) (up)", "split_by": ["pod"]}],
        step="1m",
        history="1d",
        horizon="30m",
    )
    ctx = JobContext.create(make_settings(spec=spec_path))
    spec = ctx.select(None)[0]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    last_seen = {"a": now - 2 * STEP, "b": now - 5 * STEP, "gone": now - timedelta(hours=3)}
    for pod, seen in last_seen.items():
        sid = ctx.store.ensure_series(
            name=f'fam{{pod="{pod}"}}',
            family="fam",
            labels={"pod": pod},
            step_seconds=60,
            horizon_steps=30,
        )
        ctx.store.upsert_observations(sid, [(seen - STEP, 1.0), (seen, 2.0)])
    # the laggiest member still reporting decides; the one gone for 3 h does not
    assert ingest._latest_observation(ctx, spec) == last_seen["b"]
    ctx.store.engine.dispose()


def test_no_forecast_ending_in_the_past_is_published(
    tmp_path: Path, make_settings: Any, write_spec: Any
) -> None:
    spec_path = write_spec(
        tmp_path / "spec.yaml", [{"name": "s", "query": "up"}], step="1m", horizon="30m"
    )
    spec = JobContext.create(make_settings(spec=spec_path)).select(None)[0]
    now = datetime(2026, 11, 29, 14, 0, tzinfo=UTC)
    _check_reaches_ahead(now - timedelta(minutes=29), spec, "s", now)  # still reaches now
    with pytest.raises(InputDataError, match="has it stopped reporting"):
        _check_reaches_ahead(now - timedelta(hours=3), spec, "s", now)
