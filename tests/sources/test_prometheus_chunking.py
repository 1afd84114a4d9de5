"""Sample-budgeted chunking and streaming of PrometheusSource.

A real Prometheus (a 40-member family backfilled from a NAB trace) checks that no
answer exceeds ``max_samples_per_request`` and that streaming equals ``fetch``; a fake
``_query_range`` (the HTTP seam) drives the edge cases and a property test.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.config import PrometheusSettings
from forecaster.errors import SourceQueryError
from forecaster.sources.base import FetchedSeries
from forecaster.sources.prometheus import PROBE_FAMILY_SERIES, PrometheusSource
from forecaster.specs import ScheduleSpec, SeriesSpec
from forecaster.timeseries import read_series_csv, to_grid
from tests.support.promserver import (
    PromServer,
    make_prometheus_fixture,
    running_prometheus,
    shift_to_end_at,
    utc_now_floor,
)

STEP = timedelta(minutes=5)
MEMBERS = 40
NAB_TRACE = Path(__file__).resolve().parents[2] / "data/nab/realTweets/Twitter_volume_AMZN.csv"


def make_spec(name: str, query: str, *, split_by: tuple[str, ...] = ()) -> SeriesSpec:
    return SeriesSpec(
        name=name,
        query=query,
        split_by=split_by,
        step=STEP,
        history=timedelta(days=28),
        horizon=timedelta(hours=1),
        estimators=("seasonal_naive",),
        schedule=ScheduleSpec(),
    )


_TRACE: dict[str, pd.Series] = {}


def trace() -> pd.Series:
    """Two days of a real trace on a 5-minute grid, ending 10 minutes ago (per session)."""
    if "trace" not in _TRACE:
        series = to_grid(read_series_csv(NAB_TRACE), STEP).dropna().iloc[-576:]
        _TRACE["trace"] = shift_to_end_at(series, utc_now_floor(300) - 2 * STEP)
    return _TRACE["trace"]


def backfill() -> dict[str, pd.Series]:
    base = trace()
    return {f'pods_rps{{pod="p{i:02d}"}}': base * (1 + i / 10) + i for i in range(MEMBERS)}


prometheus = make_prometheus_fixture(backfill, scope="module")


def stitched(chunks: list[list[FetchedSeries]]) -> dict[str, pd.Series]:
    """Concatenate streamed chunks per series name."""
    parts: dict[str, list[pd.Series]] = {}
    for chunk in chunks:
        for item in chunk:
            assert item.values is not None
            parts.setdefault(item.name, []).append(item.values)
    return {name: pd.concat(pieces) for name, pieces in parts.items()}


# -- real Prometheus -----------------------------------------------------------------


@pytest.mark.integration
def test_requests_stay_under_the_sample_budget_and_streaming_equals_fetch(
    prometheus: PromServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_api_client.prometheus_connect import PrometheusConnect

    original = PrometheusConnect.custom_query_range
    requests: list[tuple[int, int]] = []  # (series answered, grid points asked)

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        span = (kwargs["end_time"] - kwargs["start_time"]).total_seconds()
        requests.append((len(result), int(span // STEP.total_seconds()) + 1))
        return result

    monkeypatch.setattr(PrometheusConnect, "custom_query_range", spy)
    budget = 2_000
    source = PrometheusSource(
        PrometheusSettings(url=prometheus.url, max_samples_per_request=budget)
    )
    series = trace()
    start, end = series.index[0].to_pydatetime(), series.index[-1].to_pydatetime()
    spec = make_spec("pods", "pods_rps", split_by=("pod",))

    chunks = list(source.iter_chunks(spec, start, end))
    streamed_requests = list(requests)
    fetched = source.fetch(spec, start, end)

    # The probe chunk is sized for PROBE_FAMILY_SERIES series (1 point here), every
    # later one for the 40 series the probe found: 50 points, 2,000 samples.
    per_chunk = budget // MEMBERS
    assert streamed_requests[0] == (MEMBERS, max(1, budget // PROBE_FAMILY_SERIES))
    assert all(answered * points <= budget for answered, points in streamed_requests)
    assert [points for _, points in streamed_requests[1:-1]] == [per_chunk] * (
        len(streamed_requests) - 2
    )
    assert len(streamed_requests) == 1 + math.ceil((len(series) - 1) / per_chunk)
    assert requests[len(streamed_requests) :] == streamed_requests  # fetch chunks the same
    assert len(chunks) == len(streamed_requests)
    # Streaming, stitched, equals fetch: same members, same points, nothing twice.
    assert [f.name for f in fetched] == [f'pods{{pod="p{i:02d}"}}' for i in range(MEMBERS)]
    joined = stitched(chunks)
    for item in fetched:
        assert item.values is not None
        pd.testing.assert_series_equal(joined[item.name], item.values)
        assert item.values.index.is_monotonic_increasing and item.values.index.is_unique
    member = next(f for f in fetched if f.labels == {"pod": "p03"})
    assert member.values is not None
    expected = series * 1.3 + 3
    pd.testing.assert_series_equal(
        member.values.reindex(expected.index), expected, check_names=False, check_freq=False
    )


@pytest.mark.integration
def test_chunks_prometheus_finds_too_heavy_are_halved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Prometheus with a low --query.max-samples refused the first chunk (HTTP 422,
    "too many samples"), and so every ingest of the series, for good."""
    grid = trace().index
    counting = pd.Series(range(len(grid)), index=grid, dtype=float)
    # sum(parts) holds 10 series x the chunk's steps before summing: 5,760 samples
    # for the whole range, over Prometheus' limit of 2,000; a quarter of it passes.
    parts = {f'parts{{i="{i}"}}': counting + i for i in range(10)}
    start, end = grid[0].to_pydatetime(), grid[-1].to_pydatetime()
    with running_prometheus(tmp_path, parts, flags=["--query.max-samples=2000"]) as prom:
        source = PrometheusSource(PrometheusSettings(url=prom.url, retries=0))
        with caplog.at_level(logging.WARNING, logger="forecaster.sources.prometheus"):
            (fetched,) = source.fetch(make_spec("total", "sum(parts)"), start, end)
        # the subquery holds 10 series x 864 steps for every step: no chunk is small enough
        heavy = make_spec("heavy", "sum(max_over_time(parts[3d:5m]))")
        with pytest.raises(SourceQueryError) as caught:
            source.fetch(heavy, start, end)

    assert fetched.values is not None
    expected = counting * 10 + sum(range(10))
    pd.testing.assert_series_equal(
        fetched.values, expected, check_names=False, check_freq=False, check_index_type=False
    )
    assert "too many samples" in caplog.text and "retrying in chunks of" in caplog.text
    message = str(caught.value)
    assert "too many samples" in message and "--query.max-samples" in message
    assert "even a single step" in message


@pytest.mark.integration
def test_a_single_series_spec_uses_full_chunks(
    prometheus: PromServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_api_client.prometheus_connect import PrometheusConnect

    original = PrometheusConnect.custom_query_range
    answered: list[int] = []

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        answered.append(sum(len(item["values"]) for item in result))
        return result

    monkeypatch.setattr(PrometheusConnect, "custom_query_range", spy)
    source = PrometheusSource(PrometheusSettings(url=prometheus.url, max_points_per_query=200))
    series = trace()

    (fetched,) = source.fetch(
        make_spec("one", 'pods_rps{pod="p00"}'),
        series.index[0].to_pydatetime(),
        series.index[-1].to_pydatetime(),
    )

    assert fetched.values is not None and len(fetched.values) == len(series)
    assert answered == [200, 200, 176]  # no probe: one series needs no family size


# -- fake query_range (the HTTP seam) ------------------------------------------------

T0 = 1_700_000_100  # a multiple of 300 s


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class FakeRange:
    """Stands in for ``PrometheusSource._query_range``: series born at given times."""

    def __init__(self, born: dict[str, int], *, misbehave: bool = False) -> None:
        self.born = born  # pod -> first timestamp (Unix seconds) it has samples
        self.misbehave = misbehave  # also answer the grid point before each chunk
        self.calls: list[tuple[int, int, int]] = []  # (start, end, series answered)

    def __call__(self, query: str, start: int, end: int, step_seconds: int) -> Any:
        del query
        first = start - step_seconds if self.misbehave else start
        result = []
        for pod, born in sorted(self.born.items()):
            stamps = [t for t in range(first, end + 1, step_seconds) if t >= born]
            values = [[t, str(t % 7919 + len(pod))] for t in stamps]
            if values:
                result.append({"metric": {"pod": pod, "job": "x"}, "values": values})
        self.calls.append((start, end, len(result)))
        return result


def fake_source(fake: FakeRange, **overrides: Any) -> PrometheusSource:
    source = PrometheusSource(PrometheusSettings(url="http://127.0.0.1:9", **overrides))
    source._query_range = fake  # type: ignore[method-assign]
    return source


def test_an_empty_range_is_probed_until_the_family_shows_up() -> None:
    # Nothing for the first 20 steps, then 100 pods: an empty answer tells nothing
    # about the family's size, so probing continues until the pods answer, then
    # chunks are sized for 100 series.
    fake = FakeRange({f"p{i:03d}": T0 + 20 * 300 for i in range(100)})
    source = fake_source(fake, max_samples_per_request=1_000)
    spec = make_spec("pods", "pods_rps", split_by=("pod",))

    chunks = list(source.iter_chunks(spec, _at(T0), _at(T0 + 99 * 300)))

    points = [(end - start) // 300 + 1 for start, end, _ in fake.calls]
    assert points == [1] * 21 + [10] * 7 + [9]
    assert all(p * n <= 1_000 for p, (_, _, n) in zip(points, fake.calls, strict=True))
    assert [len(chunk) for chunk in chunks[:21]] == [0] * 20 + [100]
    joined = stitched(chunks)
    assert len(joined) == 100 and all(len(v) == 80 for v in joined.values())


def test_boundary_points_answered_twice_are_streamed_once() -> None:
    fake = FakeRange({"a": 0, "b": 0}, misbehave=True)
    source = fake_source(fake, max_points_per_query=10)
    spec = make_spec("pods", "pods_rps", split_by=("pod",))
    window = (_at(T0 - 100), _at(T0 + 24 * 300 + 50))

    chunks = list(source.iter_chunks(spec, *window))
    fetched = source.fetch(spec, *window)

    joined = stitched(chunks)
    for item in fetched:
        assert item.values is not None
        pd.testing.assert_series_equal(joined[item.name], item.values)
        stamps = [int(t.timestamp()) for t in item.values.index]
        assert stamps == list(range(T0 - 300, T0 + 24 * 300 + 1, 300))


def test_a_label_conflict_in_a_later_chunk_raises_there() -> None:
    # Without split_by, a second series appearing later makes the query ambiguous:
    # the earlier chunks were valid and have been handed out; the later one raises.
    fake = FakeRange({"a": 0, "b": T0 + 30 * 300})
    source = fake_source(fake, max_points_per_query=10)
    spec = make_spec("one", "pods_rps")
    stream = source.iter_chunks(spec, _at(T0), _at(T0 + 59 * 300))

    first = [next(stream) for _ in range(3)]
    with pytest.raises(SourceQueryError, match=r"returned 2 series.*pod=\"b\""):
        next(stream)

    assert [[item.name for item in chunk] for chunk in first] == [["one"]] * 3
    with pytest.raises(SourceQueryError, match="2 series"):
        source.fetch(spec, _at(T0), _at(T0 + 59 * 300))


def test_a_duplicate_split_key_in_a_later_chunk_raises() -> None:
    calls = {"n": 0}

    def answer(query: str, start: int, end: int, step_seconds: int) -> Any:
        del query
        calls["n"] += 1
        instance = "1" if calls["n"] == 1 else "2"
        values = [[t, "1"] for t in range(start, end + 1, step_seconds)]
        return [{"metric": {"route": "/a", "instance": instance}, "values": values}]

    source = PrometheusSource(
        PrometheusSettings(url="http://127.0.0.1:9", max_samples_per_request=100)
    )
    source._query_range = answer  # type: ignore[method-assign]
    spec = make_spec("r", "rps", split_by=("route",))

    with pytest.raises(SourceQueryError, match=r'split_by label set \{route="/a"\}') as caught:
        list(source.iter_chunks(spec, _at(T0), _at(T0 + 10 * 300)))

    assert 'instance="1"' in str(caught.value) and 'instance="2"' in str(caught.value)


@settings(max_examples=40, deadline=None)
@given(
    pods=st.integers(min_value=1, max_value=60),
    budget=st.integers(min_value=100, max_value=5_000),
    max_points=st.integers(min_value=10, max_value=300),
    steps=st.integers(min_value=1, max_value=400),
    late=st.integers(min_value=0, max_value=400),
)
def test_budget_and_stitching_hold_for_any_family(
    pods: int, budget: int, max_points: int, steps: int, late: int
) -> None:
    born = {f"p{i:02d}": T0 + (late * 300 if i % 2 else 0) for i in range(pods)}
    fake = FakeRange(born)
    source = fake_source(fake, max_samples_per_request=budget, max_points_per_query=max_points)
    spec = make_spec("pods", "pods_rps", split_by=("pod",))
    window = (_at(T0), _at(T0 + (steps - 1) * 300))

    chunks = list(source.iter_chunks(spec, *window))

    spans = [((end - start) // 300 + 1, n) for start, end, n in fake.calls]
    assert sum(points for points, _ in spans) == steps  # every grid point asked once
    assert all(points <= max_points for points, _ in spans)
    # Each chunk is sized from the previous non-empty answer, so only the chunk in
    # which the late half of the family joins may exceed the budget.
    before = 0
    for points, answered in spans:
        if not (before and answered > before):
            assert points * answered <= max(budget, answered)
        before = answered or before
    fake.calls.clear()
    fetched = source.fetch(spec, *window)
    joined = stitched(chunks)
    assert sorted(joined) == [item.name for item in fetched]
    for item in fetched:
        assert item.values is not None
        pd.testing.assert_series_equal(joined[item.name], item.values)
        assert item.values.index.is_unique and item.values.index.is_monotonic_increasing
