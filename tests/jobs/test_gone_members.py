"""A split_by member that stops reporting: the family's ingest window does not wait for
it, no forecast ending in the past is published for it, and after ``retire_after`` it
is retired (not trained, published or watched) until it reports again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from forecaster.errors import InputDataError, SpecError
from forecaster.jobs import ingest
from forecaster.jobs.context import JobContext
from forecaster.jobs.publish import _check_reaches_ahead
from forecaster.jobs.runner import run_publish, run_train
from forecaster.specs import SeriesSpec, parse_spec

STEP = timedelta(minutes=1)


def test_the_ingest_window_waits_for_reporting_members_only(
    tmp_path: Path, make_settings: Any, write_spec: Any
) -> None:
    ctx, spec = _family(tmp_path, make_settings, write_spec)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    last_seen = {"a": now - 2 * STEP, "b": now - 5 * STEP, "gone": now - timedelta(hours=3)}
    _observe(ctx, last_seen)
    # the laggiest member still reporting decides; the one gone for 3 h does not
    assert ingest._latest_observation(ctx.member_infos(spec)[0], spec) == last_seen["b"]
    ctx.store.engine.dispose()


def _family(
    tmp_path: Path, make_settings: Any, write_spec: Any, **extra: str
) -> tuple[JobContext, SeriesSpec]:
    """A context whose spec is one family ``fam`` split by ``pod`` (1-minute steps, a
    30-minute horizon), with ``extra`` keys, and that spec."""
    entry = {"name": "fam", "query": "sum by (pod) (up)", "split_by": ["pod"], **extra}
    spec_path = write_spec(tmp_path / "spec.yaml", [entry], step="1m", history="1d", horizon="30m")
    ctx = JobContext.create(make_settings(spec=spec_path))
    return ctx, ctx.select(None)[0]


def _observe(ctx: JobContext, last_seen: dict[str, datetime]) -> None:
    """Store two observations ending at ``last_seen[pod]`` for each member ``pod``."""
    for pod, seen in last_seen.items():
        sid = ctx.store.ensure_series(
            name=f'fam{{pod="{pod}"}}',
            family="fam",
            labels={"pod": pod},
            step_seconds=60,
            horizon_steps=30,
        )
        ctx.store.upsert_observations(sid, [(seen - STEP, 1.0), (seen, 2.0)])


def test_a_member_gone_longer_than_retire_after_is_retired_until_it_reports_again(
    tmp_path: Path, make_settings: Any, write_spec: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ctx, spec = _family(tmp_path, make_settings, write_spec, retire_after="2h")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    _observe(ctx, {"a": now, "late": now - timedelta(minutes=90), "gone": now - timedelta(hours=3)})
    caplog.set_level("INFO", logger="forecaster.jobs.context")
    reporting, retired = ctx.family_members(spec)
    assert sorted(reporting) == ['fam{pod="a"}', 'fam{pod="late"}']  # 90 min < 2 h
    assert retired == ['fam{pod="gone"}']
    assert ctx.members(spec) == reporting
    # neither trained nor published: the runs do not even try it (no champions here,
    # so each member tried fails with its own error)
    assert set(run_publish(ctx, [spec]).errors) == set(reporting)
    assert set(run_train(ctx, [spec]).errors) == set(reporting)
    retirements = [r.getMessage() for r in caplog.records if "retired" in r.getMessage()]
    assert len(retirements) == 1  # logged once, not on every run
    assert 'fam{pod="gone"} retired' in retirements[0]
    assert "3h behind the freshest member of fam (retire_after 2h)" in retirements[0]

    _observe(ctx, {"gone": now})  # the pod is back
    assert sorted(ctx.members(spec)) == ['fam{pod="a"}', 'fam{pod="gone"}', 'fam{pod="late"}']
    assert any("reports again" in r.getMessage() for r in caplog.records)
    ctx.store.engine.dispose()


def test_retirement_defaults_to_the_horizon_and_ignores_a_whole_family_outage(
    tmp_path: Path, make_settings: Any, write_spec: Any
) -> None:
    ctx, spec = _family(tmp_path, make_settings, write_spec)
    assert spec.retire_members_after == timedelta(minutes=30)
    # the whole source silent for two days: measured against the freshest member, so
    # nobody is retired
    days_ago = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)
    _observe(ctx, {"a": days_ago, "b": days_ago - timedelta(minutes=20)})
    assert ctx.family_members(spec) == (['fam{pod="a"}', 'fam{pod="b"}'], [])
    _observe(ctx, {"c": days_ago + timedelta(minutes=31)})
    assert ctx.family_members(spec) == (['fam{pod="c"}'], ['fam{pod="a"}', 'fam{pod="b"}'])
    ctx.store.engine.dispose()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "s", "query": "up", "retire_after": "1h"}, "split_by families only"),
        (
            {"name": "f", "query": "up", "split_by": ["pod"], "retire_after": "30s"},
            "retire_after 30s is shorter than one step",
        ),
        (
            {"name": "f", "query": "up", "split_by": ["pod"], "retire_after": "soon"},
            "retire_after",
        ),
    ],
)
def test_bad_retire_after_is_refused_by_name(entry: dict[str, Any], message: str) -> None:
    data = {"defaults": {"step": "1m", "history": "1d", "horizon": "30m"}, "series": [entry]}
    with pytest.raises(SpecError, match=message):
        parse_spec(data)


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
