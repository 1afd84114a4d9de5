"""Label values with control characters (a NUL, a tab, a carriage return) in a family.

Prometheus label values are any UTF-8 text. A member's name carried them raw: on
PostgreSQL a NUL failed the whole family's ingest on every run ("text fields cannot
contain NUL"), and on SQLite the name held invisible characters.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from forecaster.jobs.context import JobContext
from forecaster.jobs.runner import run_ingest
from forecaster.timeseries import read_series_csv, to_grid
from tests.support.promserver import running_prometheus, shift_to_end_at, utc_now_floor

pytestmark = pytest.mark.integration
STEP = timedelta(minutes=5)
VALUES = {"nul\x00byte": 1.0, "tab\there": 2.0, "cr\rhere": 3.0, "plain": 4.0}


def test_members_with_control_characters_in_labels_are_stored(
    tmp_path: Path, nab: Path, make_settings: Any, write_spec: Any, db_url: str
) -> None:
    end = utc_now_floor(300) - STEP
    trace = to_grid(read_series_csv(nab / "realTweets/Twitter_volume_IBM.csv"), STEP).dropna()
    trace = shift_to_end_at(trace.iloc[-48:], end)
    series = {f'odd_rps{{route="{value}"}}': trace * k for value, k in VALUES.items()}
    spec = write_spec(
        tmp_path / "spec.yaml",
        [{"name": "odd", "query": "sum by (route) (odd_rps)", "split_by": ["route"]}],
        step="5m",
        history="1d",
        horizon="1h",
    )
    with running_prometheus(tmp_path / "prom", series) as server:
        ctx = JobContext.create(make_settings(db=db_url, spec=spec, prometheus={"url": server.url}))
        try:
            summary = run_ingest(ctx, ctx.select(None))
            stored = {info.name: info for info in ctx.store.list_series()}
        finally:
            ctx.store.engine.dispose()

    assert summary.ok, summary.errors
    assert sorted(stored) == [
        'odd{route="cr\\rhere"}',
        'odd{route="nul\\x00byte"}',
        'odd{route="plain"}',
        'odd{route="tab\\there"}',
    ]
    for name, info in stored.items():
        assert name.isprintable()
        assert info.labels["route"] in VALUES  # the labels keep the real value
