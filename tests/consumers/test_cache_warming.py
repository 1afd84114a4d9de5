"""Ramp finder and top-k ranking of family members."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.consumers.cache_warming import find_ramps, rank_members
from forecaster.store.repository import ForecastPoint

T0 = datetime(2026, 1, 5, tzinfo=UTC)
STEP = timedelta(minutes=5)


def _points(values: list[float], spread: float = 0.1) -> list[ForecastPoint]:
    return [
        ForecastPoint(
            step=i + 1,
            ds=T0 + (i + 1) * STEP,
            yhat=v,
            yhat_lower=v * (1 - spread),
            yhat_upper=v * (1 + spread),
        )
        for i, v in enumerate(values)
    ]


def test_single_ramp_is_found_with_warm_at_before_its_start() -> None:
    values = [100.0] * 10 + [100 + 20 * i for i in range(1, 11)] + [300.0] * 10
    ramps = find_ramps(
        _points(values),
        now=T0,
        within=timedelta(hours=24),
        min_increase=0.3,
        lead=timedelta(minutes=10),
    )
    assert len(ramps) == 1
    ramp = ramps[0]
    assert ramp.ramp_start == T0 + 10 * STEP  # last point of the flat trough
    assert ramp.peak_at == T0 + 20 * STEP
    assert ramp.warm_at == ramp.ramp_start - timedelta(minutes=10)
    assert ramp.expected_peak == 300.0
    assert ramp.expected_increase_ratio == pytest.approx(2.0)
    assert ramp.peak_upper == pytest.approx(330.0)


def test_a_ramp_from_zero_or_below_reads_a_bounded_rise() -> None:
    """A forecast rising from an idle 0 (or a point forecast dipping below it) had
    ``expected_increase_ratio`` ~999999 (the trough floored at a millionth of the
    scale); the trough now counts as 1% of the largest value."""
    for trough in (0.0, -5.0):
        values = [trough] * 5 + [trough + (24.0 - trough) * i / 5 for i in range(1, 6)]
        values += [24.0] * 5
        (ramp,) = find_ramps(
            _points(values, spread=0.0),
            now=T0,
            within=timedelta(hours=24),
            min_increase=0.3,
            lead=timedelta(0),
            use_upper=False,
        )
        assert ramp.expected_peak == 24.0
        assert ramp.expected_increase_ratio == pytest.approx(99.0)


def test_daily_cycle_gives_one_ramp_per_rise_and_small_wiggles_are_ignored() -> None:
    import math

    values = [200 - 100 * math.cos(2 * math.pi * i / 288) + 3 * ((-1) ** i) for i in range(2 * 288)]
    ramps = find_ramps(
        _points(values), now=T0, within=timedelta(days=3), min_increase=0.3, lead=timedelta(0)
    )
    assert len(ramps) == 2
    for ramp in ramps:
        assert ramp.expected_increase_ratio >= 0.3
        assert ramp.peak_at - ramp.ramp_start == pytest.approx(timedelta(hours=12), abs=STEP * 3)


def test_rise_below_threshold_and_ramps_outside_the_window_are_dropped() -> None:
    flat = [100.0] * 20 + [120.0] * 20
    assert (
        find_ramps(
            _points(flat), now=T0, within=timedelta(days=1), min_increase=0.3, lead=timedelta(0)
        )
        == []
    )
    late = [100.0] * 100 + [200.0] * 10
    assert (
        find_ramps(
            _points(late), now=T0, within=timedelta(hours=1), min_increase=0.3, lead=timedelta(0)
        )
        == []
    )
    assert (
        len(
            find_ramps(
                _points(late),
                now=T0,
                within=timedelta(hours=12),
                min_increase=0.3,
                lead=timedelta(0),
            )
        )
        == 1
    )


def test_upper_quantile_must_confirm_the_rise() -> None:
    # yhat rises 50 % but the interval narrows so much that the upper bound falls.
    values = [100.0] * 5 + [150.0] * 5
    points = [
        ForecastPoint(
            step=i + 1,
            ds=T0 + (i + 1) * STEP,
            yhat=v,
            yhat_lower=v * 0.9,
            yhat_upper=400.0 if v == 100 else 160.0,
        )
        for i, v in enumerate(values)
    ]
    kwargs = {"now": T0, "within": timedelta(days=1), "min_increase": 0.3, "lead": timedelta(0)}
    assert find_ramps(points, use_upper=True, **kwargs) == []  # type: ignore[arg-type]
    assert len(find_ramps(points, use_upper=False, **kwargs)) == 1  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=1e6, allow_nan=False), min_size=2, max_size=200),
    st.floats(min_value=0.05, max_value=3.0),
)
def test_every_ramp_rises_enough_and_is_ordered(values: list[float], min_increase: float) -> None:
    ramps = find_ramps(
        _points(values),
        now=T0,
        within=timedelta(days=30),
        min_increase=min_increase,
        lead=timedelta(minutes=10),
        use_upper=False,
    )
    for ramp in ramps:
        assert ramp.ramp_start < ramp.peak_at
        assert ramp.expected_increase_ratio >= min_increase
        assert ramp.warm_at == ramp.ramp_start - timedelta(minutes=10)
    starts = [r.ramp_start for r in ramps]
    assert starts == sorted(starts)
    for a, b in zip(ramps, ramps[1:], strict=False):
        assert a.peak_at <= b.ramp_start


def test_rank_members_by_predicted_demand_over_the_window() -> None:
    forecasts = {
        "hot_later": _points([1.0] * 12 + [100.0] * 12),
        "hot_now": _points([50.0] * 12 + [1.0] * 12),
        "medium": _points([20.0] * 24),
        "no_points": [],
    }
    first_hour = rank_members(forecasts, start=T0, end=T0 + timedelta(hours=1), k=2)
    assert [m.series for m in first_hour] == ["hot_now", "medium"]
    assert first_hour[0].demand == pytest.approx(600.0) and first_hour[0].steps == 12
    second_hour = rank_members(
        forecasts, start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2), k=1
    )
    assert [m.series for m in second_hour] == ["hot_later"]
    with pytest.raises(ValueError, match="k must be"):
        rank_members(forecasts, start=T0, end=T0, k=0)


def test_rank_members_keeps_incumbents_within_the_margin() -> None:
    forecasts = {
        "a": _points([100.0] * 12),
        "b": _points([50.0] * 12),
        "c": _points([52.0] * 12),  # 4 % above b: a near-tie
        "d": _points([80.0] * 12),  # 60 % above b
    }
    window = {"start": T0, "end": T0 + timedelta(hours=1), "k": 2}
    assert [m.series for m in rank_members(forecasts, **window)] == ["a", "d"]
    # b is held: c (within 10 %) does not replace it, d (60 % hotter) does
    sticky = rank_members(forecasts, **window, current=["a", "b"], margin=0.1)
    assert [m.series for m in sticky] == ["a", "d"]
    forecasts.pop("d")
    sticky = rank_members(forecasts, **window, current=["a", "b"], margin=0.1)
    assert [m.series for m in sticky] == ["a", "b"]
    assert [m.series for m in rank_members(forecasts, **window, current=["a", "b"])] == ["a", "c"]
    # fewer incumbents with a forecast than k: topped up from the best outsiders
    topped = rank_members(forecasts, **window, current=["gone", "b"], margin=0.1)
    assert [m.series for m in topped] == ["a", "b"]
    with pytest.raises(ValueError, match="margin"):
        rank_members(forecasts, **window, current=["a"], margin=-0.1)


@settings(max_examples=150, deadline=None)
@given(
    demands=st.lists(st.floats(0, 1000), min_size=1, max_size=12),
    held=st.sets(st.integers(0, 11), max_size=12),
    k=st.integers(1, 6),
    margin=st.floats(0, 2),
)
def test_sticky_ranking_never_keeps_a_member_an_outsider_beats_by_more_than_margin(
    demands: list[float], held: set[int], k: int, margin: float
) -> None:
    forecasts = {f"m{i}": _points([d / 12] * 12) for i, d in enumerate(demands)}
    current = [f"m{i}" for i in held]
    ranked = rank_members(
        forecasts, start=T0, end=T0 + timedelta(hours=1), k=k, current=current, margin=margin
    )
    chosen = {m.series for m in ranked}
    assert len(chosen) == min(k, len(demands))
    demand = {m.series: m.demand for m in ranked}
    plain = rank_members(forecasts, start=T0, end=T0 + timedelta(hours=1), k=len(demands))
    all_demand = {m.series: m.demand for m in plain}
    weakest = min(demand.values())
    for name, value in all_demand.items():
        if name not in chosen:
            # every outsider is within the margin of the weakest member kept
            assert value - weakest <= margin * abs(weakest) + 1e-6 * max(1.0, abs(value))
    for name in chosen - set(current):
        # a newcomer is never kept over a hotter outsider
        assert all(all_demand[o] <= demand[name] + 1e-9 for o in all_demand if o not in chosen)
