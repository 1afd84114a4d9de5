"""ForecastColumns: a forecast held as arrays reads back exactly as its points."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecaster.store.repository import ForecastColumns, ForecastPoint

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
START = datetime(2026, 11, 29, 3, 0, 0, 123457, tzinfo=UTC)


@st.composite
def forecasts(draw: st.DrawFn) -> list[ForecastPoint]:
    n = draw(st.integers(0, 40))
    watched = draw(st.booleans())
    step = timedelta(microseconds=draw(st.integers(1, 10**11)))
    points = []
    for i in range(n):
        yhat, lower, upper = draw(finite), draw(finite), draw(finite)
        reference = (draw(finite), draw(finite), draw(finite)) if watched else None
        points.append(ForecastPoint(i + 1, START + i * step, yhat, lower, upper, reference))
    return points


@given(forecasts())
def test_columns_read_back_every_point_exactly(points: list[ForecastPoint]) -> None:
    columns = ForecastColumns(points)
    assert len(columns) == len(points)
    assert list(columns) == points
    assert columns[:] == points and columns[1:-1:2] == points[1:-1:2]
    for i, point in enumerate(points):
        assert columns[i] == point and columns[i - len(points)] == point
        assert columns.ds(i) == point.ds
        assert columns.ds_epoch[i] == pytest.approx(point.ds.timestamp(), abs=1e-6)
        assert (columns.yhat[i], columns.yhat_lower[i], columns.yhat_upper[i]) == (
            point.yhat,
            point.yhat_lower,
            point.yhat_upper,
        )


def test_out_of_range_and_missing_references() -> None:
    points = [
        ForecastPoint(1, START, 1.0, 0.5, 1.5, (1.0, 0.8, 1.2)),
        ForecastPoint(2, START + timedelta(minutes=5), 2.0, 1.5, 2.5, None),
    ]
    columns = ForecastColumns(points)
    assert columns[1].reference is None and columns[0].reference == (1.0, 0.8, 1.2)
    assert ForecastColumns(points[1:]).reference is None
    for index in (2, -3):
        with pytest.raises(IndexError):
            columns[index]
    assert len(ForecastColumns([])) == 0 and list(ForecastColumns([])) == []


def test_a_day_of_five_minute_steps_is_small() -> None:
    points = [
        ForecastPoint(i, START + timedelta(minutes=5 * i), 100.0 + i, 90.0, 110.0 + i)
        for i in range(1, 289)
    ]
    columns = ForecastColumns(points)
    held = sum(
        sys.getsizeof(getattr(columns, name))
        for name in ("step", "ds_us", "ds_epoch", "yhat", "yhat_lower", "yhat_upper")
    )
    as_objects = sum(
        sys.getsizeof(p) + sys.getsizeof(p.__dict__) + sys.getsizeof(p.ds) + 3 * 24 for p in points
    )
    assert held < 16_000  # 48 bytes a step plus array headers
    assert held * 5 < as_objects


def test_the_view_shares_one_iso_string_per_instant_across_series() -> None:
    from forecaster.api.view import CachedForecast
    from forecaster.store.repository import PublishedForecast

    def published(series: str) -> PublishedForecast:
        points = [
            ForecastPoint(i, START + timedelta(minutes=5 * i), float(i), 0.0, 2.0 * i)
            for i in range(1, 13)
        ]
        return PublishedForecast(
            publication_id=1, series=series, generated_at=START, origin=START,
            step_seconds=300, level=90.0, model_name="m", model_version="1", run_id="r",
            points=points,
        )  # fmt: skip

    a, b = CachedForecast.of(published("a")), CachedForecast.of(published("b"))
    assert a.ds_iso[0] == "2026-11-29T03:05:00.123457Z"
    assert all(x is y for x, y in zip(a.ds_iso, b.ds_iso, strict=True))
    assert a.forecast.points is a.columns and list(a.columns) == list(published("a").points)
    assert list(a.ds_epoch) == [p.ds.timestamp() for p in published("a").points]
