"""Chunk-by-chunk ingestion of a Prometheus family (real Prometheus, real store).

Streaming ingestion must store exactly what a one-shot fetch-then-write ingest
stores, and a failure in a later chunk must leave the earlier chunks stored and let
the next run complete without gaps or duplicates.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from forecaster.errors import SourceUnavailable
from forecaster.jobs.context import JobContext
from forecaster.jobs.ingest import ChunkedSource, ingest_series
from forecaster.sources.base import FetchedSeries
from forecaster.sources.prometheus import PrometheusSource
from forecaster.specs import SeriesSpec
from forecaster.timeseries import read_series_csv, to_grid
from tests.support.promserver import running_prometheus, shift_to_end_at, utc_now_floor

pytestmark = pytest.mark.integration
STEP = timedelta(minutes=5)
MEMBERS = 8
TRACES = ("realTweets/Twitter_volume_GOOG.csv", "realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv")


class FetchOnly:
    """A Prometheus source seen through the plain ``Source`` protocol (no streaming)."""

    def __init__(self, inner: PrometheusSource) -> None:
        self.inner = inner

    def fetch(self, spec: SeriesSpec, start: datetime, end: datetime) -> list[FetchedSeries]:
        return self.inner.fetch(spec, start, end)


class FailingAfter:
    """Streams like the real source, then loses Prometheus after ``good`` chunks."""

    def __init__(self, inner: PrometheusSource, good: int) -> None:
        self.inner = inner
        self.good = good
        self.served = 0

    def iter_chunks(
        self, spec: SeriesSpec, start: datetime, end: datetime
    ) -> Iterator[list[FetchedSeries]]:
        for chunk in self.inner.iter_chunks(spec, start, end):
            if self.served == self.good:
                raise SourceUnavailable("Prometheus at http://test unavailable: connection reset")
            self.served += 1
            yield chunk

    def fetch(self, spec: SeriesSpec, start: datetime, end: datetime) -> list[FetchedSeries]:
        raise AssertionError("streaming sources are ingested chunk by chunk")


@pytest.fixture
def family(tmp_path: Path, nab: Path) -> Iterator[tuple[Any, datetime]]:
    """A 3-day, 8-member family (two real traces, scaled and offset) on a real Prometheus."""
    end = utc_now_floor(300) - STEP
    series = {}
    for i in range(MEMBERS):
        trace = to_grid(read_series_csv(nab / TRACES[i % 2]), STEP).dropna()
        trace = shift_to_end_at(trace.iloc[-(3 * 288 + 7 * i) :], end)
        series[f'queue_depth{{queue="q{i}",instance="a"}}'] = trace * (1 + i) + i
    with running_prometheus(tmp_path / "prom", series) as server:
        yield server, end


def _context(make_settings: Any, write_spec: Any, tmp_path: Path, url: str, name: str) -> Any:
    spec = write_spec(
        tmp_path / f"{name}.yaml",
        [{"name": "depth", "query": "sum by (queue) (queue_depth)", "split_by": ["queue"]}],
        step="5m",
        history="3d",
        horizon="1h",
    )
    settings = make_settings(
        db=f"sqlite:///{tmp_path / f'{name}.db'}",
        spec=spec,
        # 8 members x 50 points per chunk: about 18 chunks for 3 days.
        prometheus={"url": url, "max_samples_per_request": 400},
    )
    return JobContext.create(settings)


def _stored(ctx: JobContext) -> dict[str, pd.Series]:
    out = {}
    for info in ctx.store.list_series(family="depth"):
        rows = ctx.store.history(info.name)
        index = pd.DatetimeIndex([ts for ts, _ in rows]).tz_convert("UTC")
        out[info.name] = pd.Series([v for _, v in rows], index=index, dtype=float)
    return out


def test_chunk_by_chunk_equals_one_shot_and_survives_a_late_failure(
    family: tuple[Any, datetime], make_settings: Any, write_spec: Any, tmp_path: Path
) -> None:
    server, end = family
    one_shot = _context(make_settings, write_spec, tmp_path, server.url, "one_shot")
    streamed = _context(make_settings, write_spec, tmp_path, server.url, "streamed")
    resumed = _context(make_settings, write_spec, tmp_path, server.url, "resumed")
    try:
        spec = one_shot.select(["depth"])[0]
        source = PrometheusSource(one_shot.settings.prometheus)
        assert isinstance(source, ChunkedSource)
        one_shot._sources["prometheus"] = FetchOnly(source)
        assert not isinstance(one_shot.source_for(spec), ChunkedSource)

        reference = ingest_series(one_shot, spec=spec, now=end)
        result = ingest_series(streamed, spec=spec, now=end)

        assert result.written == reference.written
        assert len(result.written) == MEMBERS
        expected = _stored(one_shot)
        got = _stored(streamed)
        assert sorted(got) == sorted(expected)
        for name, values in expected.items():
            pd.testing.assert_series_equal(got[name], values)
            assert values.index.is_unique

        # Prometheus goes away after 5 chunks: those stay stored, the run fails.
        failing = FailingAfter(PrometheusSource(resumed.settings.prometheus), good=5)
        resumed._sources["prometheus"] = failing
        with pytest.raises(SourceUnavailable, match="connection reset"):
            ingest_series(resumed, spec=spec, now=end)
        partial = _stored(resumed)
        assert len(partial) == MEMBERS
        for name, values in partial.items():
            assert 0 < len(values) < len(expected[name])
            pd.testing.assert_series_equal(values, expected[name].loc[: values.index[-1]])

        # The next run resumes from the laggiest member and completes the history.
        resumed._sources.clear()
        again = ingest_series(resumed, spec=spec, now=end)
        laggiest = min(values.index[-1] for values in partial.values())
        assert again.start == laggiest - 3 * STEP
        final = _stored(resumed)
        for name, values in expected.items():
            # Same timestamps as the one-shot ingest: no gap, nothing twice.
            pd.testing.assert_series_equal(final[name], values)
            assert final[name].index.is_unique
    finally:
        for ctx in (one_shot, streamed, resumed):
            ctx.store.engine.dispose()
