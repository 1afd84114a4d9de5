"""The replica planner: unit cases and properties (monotone in the forecast, never below need)."""

from __future__ import annotations

import math
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.consumers.planner import (
    MAX_REPLICAS,
    MIN_METRIC_VALUE,
    ForecastErrors,
    ReplicaPlanner,
    ScalingPolicy,
    interval_quantile,
    interval_quantiles,
    plan_replicas,
    provisioned_load,
    replicas_for_load,
    target_too_fine,
)
from forecaster.errors import InputDataError

loads = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
targets = st.floats(min_value=0.1, max_value=1e4, allow_nan=False, allow_infinity=False)


def test_provisioned_load_is_max_of_forecast_and_observed() -> None:
    assert provisioned_load([10, 30, 20], 25) == 30
    assert provisioned_load([10, 30, 20], 45) == 45
    assert provisioned_load([], 7) == 7
    assert provisioned_load([-5], None) == 0
    with pytest.raises(InputDataError, match="nothing to plan from"):
        provisioned_load([], None)
    with pytest.raises(InputDataError, match="not finite"):
        provisioned_load([math.inf], None)


def test_replicas_for_load() -> None:
    assert replicas_for_load(0, 10) == 0
    assert replicas_for_load(0.01, 10) == 1
    assert replicas_for_load(100, 10) == 10
    assert replicas_for_load(100.0000001, 10) == 11
    assert replicas_for_load(0.3, 0.1) == 3  # float noise: 0.3 / 0.1 = 2.9999999999999996
    # a tiny target overflows load / target to inf: the count stops at Kubernetes' int32
    assert replicas_for_load(256, 1e-320) == MAX_REPLICAS
    assert replicas_for_load(1e6, 1e-6) == MAX_REPLICAS


def test_plan_with_a_tiny_target_is_finite() -> None:
    decision = plan_replicas(ScalingPolicy(target_per_replica=5e-324), forecast_peak=256)
    assert decision.replicas == MAX_REPLICAS and decision.value == 256


def test_plan_explains_and_clamps() -> None:
    policy = ScalingPolicy(target_per_replica=50, min_replicas=2, max_replicas=10)
    decision = plan_replicas(policy, forecast_peak=240, observed=120)
    assert decision.replicas == 5 and decision.value == 240
    assert "forecast peak 240" in decision.reason and "5 replicas" in decision.reason
    reactive = plan_replicas(policy, forecast_peak=100, observed=320)
    assert reactive.replicas == 7 and "observed load 320 above the forecast" in reactive.reason
    low = plan_replicas(policy, forecast_peak=10)
    assert low.replicas == 2 and low.value == 100 and "min_replicas=2" in low.reason
    high = plan_replicas(policy, forecast_peak=10_000)
    assert high.replicas == 10 and high.value == 500 and "max_replicas=10" in high.reason


def test_value_is_never_zero() -> None:
    policy = ScalingPolicy(target_per_replica=50, min_replicas=0)
    decision = plan_replicas(policy, forecast_peak=0.0, observed=0.0)
    assert decision.replicas == 0 and decision.value == MIN_METRIC_VALUE


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"target_per_replica": 0}, "target_per_replica"),
        ({"target_per_replica": math.nan}, "target_per_replica"),
        ({"target_per_replica": 1, "min_replicas": -1}, "min_replicas"),
        ({"target_per_replica": 1, "min_replicas": 3, "max_replicas": 2}, "max_replicas"),
        ({"target_per_replica": 1, "min_replicas": 2**31}, "min_replicas"),
        ({"target_per_replica": 1, "max_replicas": 10**21}, "max_replicas"),
        ({"target_per_replica": 1e300, "min_replicas": 2**30}, "min_replicas x target"),
        ({"target_per_replica": 1, "scale_down_max_fraction": 0}, "scale_down_max_fraction"),
        ({"target_per_replica": 1, "scale_down_window_seconds": -1}, "window"),
        ({"target_per_replica": 1, "scale_down_step_seconds": math.inf}, "scale_down_step"),
    ],
)
def test_policy_validation(kwargs: dict[str, float], needle: str) -> None:
    with pytest.raises(InputDataError, match=needle):
        ScalingPolicy(**kwargs)  # type: ignore[arg-type]


def test_interval_quantiles() -> None:
    assert interval_quantiles(90) == pytest.approx((0.05, 0.95))
    assert interval_quantiles(80) == pytest.approx((0.1, 0.9))
    kw = {"yhat": 100.0, "yhat_lower": 80.0, "yhat_upper": 140.0, "level": 90.0}
    assert interval_quantile(0.5, **kw) == 100
    assert interval_quantile(0.95, **kw) == 140
    assert interval_quantile(0.05, **kw) == 80
    q90 = interval_quantile(0.9, **kw)
    assert 100 < q90 < 140
    assert q90 == pytest.approx(100 + 40 * 1.2816 / 1.6449, rel=1e-3)
    assert 80 < interval_quantile(0.2, **kw) < 100
    assert interval_quantile(0.9, **{**kw, "level": 80.0}) == 140
    with pytest.raises(InputDataError, match="covers quantiles 0.05 to 0.95"):
        interval_quantile(0.99, **kw)


def test_scale_up_is_immediate_scale_down_waits_then_steps() -> None:
    policy = ScalingPolicy(
        target_per_replica=10, scale_down_window_seconds=300, scale_down_max_fraction=0.25
    )
    planner = ReplicaPlanner(policy)
    assert planner.decide(0, forecast_peak=200).replicas == 20
    assert planner.decide(60, forecast_peak=400).replicas == 40  # up at once
    held = planner.decide(120, forecast_peak=50)
    assert held.replicas == 40 and "holding 40" in held.reason
    assert planner.decide(300, forecast_peak=50).replicas == 40  # 400 still within 5 min
    first = planner.decide(361, forecast_peak=50)  # window has passed: one bounded step
    assert first.replicas == 30 and "at most 10 per decision" in first.reason
    steps = [planner.decide(361 + 60 * i, forecast_peak=50).replicas for i in range(1, 6)]
    assert steps == [22, 16, 12, 9, 6]  # 25% of the current replicas per decision
    assert planner.decide(2000, forecast_peak=50).replicas == 5


def test_scale_down_steps_at_most_once_per_step_interval() -> None:
    """KEDA asks on its polling loop and again each time the HPA reads the metric:
    stepping on every call took 275 replicas to 53 within a millisecond."""
    policy = ScalingPolicy(target_per_replica=1, scale_down_window_seconds=1)
    planner = ReplicaPlanner(policy)
    assert planner.decide(0, forecast_peak=275).replicas == 275
    calls = [planner.decide(2 + i / 1000, forecast_peak=50) for i in range(6)]
    assert [c.replicas for c in calls] == [206] * 6
    assert "the last scale-down step was" in calls[1].reason
    assert "at most one per 30s" in calls[1].reason
    assert planner.decide(32, forecast_peak=50).replicas == 154  # 30 s later: the next step
    every_call = ReplicaPlanner(
        ScalingPolicy(target_per_replica=1, scale_down_window_seconds=1, scale_down_step_seconds=0)
    )
    every_call.decide(0, forecast_peak=275)
    assert [every_call.decide(2, forecast_peak=50).replicas for _ in range(3)] == [206, 154, 115]


def test_planner_rejects_time_going_backwards() -> None:
    planner = ReplicaPlanner(ScalingPolicy(target_per_replica=1))
    planner.decide(10, forecast_peak=1)
    with pytest.raises(InputDataError, match="backwards"):
        planner.decide(5, forecast_peak=1)


@settings(max_examples=200, deadline=None)
@given(peak=loads, extra=loads, observed=st.one_of(st.none(), loads), target=targets)
def test_stateless_plan_is_monotone_in_the_forecast(
    peak: float, extra: float, observed: float | None, target: float
) -> None:
    policy = ScalingPolicy(target_per_replica=target)
    lower = plan_replicas(policy, forecast_peak=peak, observed=observed)
    higher = plan_replicas(policy, forecast_peak=peak + extra, observed=observed)
    assert higher.replicas >= lower.replicas
    assert higher.load >= lower.load


@settings(max_examples=200, deadline=None)
@given(
    ticks=st.lists(st.tuples(loads, loads, loads), min_size=1, max_size=40),
    target=targets,
    window=st.sampled_from([0.0, 60.0, 300.0, 900.0]),
    fraction=st.sampled_from([0.1, 0.25, 0.5, 1.0]),
    min_replicas=st.integers(0, 3),
)
def test_stateful_planner_properties(
    ticks: list[tuple[float, float, float]],
    target: float,
    window: float,
    fraction: float,
    min_replicas: int,
) -> None:
    policy = ScalingPolicy(
        target_per_replica=target,
        min_replicas=min_replicas,
        scale_down_window_seconds=window,
        scale_down_max_fraction=fraction,
    )
    low, high = ReplicaPlanner(policy), ReplicaPlanner(policy)
    for i, (peak, extra, observed) in enumerate(ticks):
        now = 60.0 * i
        a = low.decide(now, forecast_peak=peak, observed=observed)
        b = high.decide(now, forecast_peak=peak + extra, observed=observed)
        # monotone in the forecast: a pointwise higher forecast never plans fewer replicas
        assert b.replicas >= a.replicas
        for decision in (a, b):
            # never below what the observed load (or the forecast) needs right now
            assert decision.replicas >= replicas_for_load(observed, target)
            assert decision.replicas >= max(min_replicas, replicas_for_load(decision.load, target))
            assert math.isfinite(decision.value) and decision.value > 0
            assert decision.reason
            if decision.replicas > 0:
                assert math.ceil(decision.value / target - 1e-9) == decision.replicas


@settings(max_examples=100, deadline=None)
@given(
    peaks=st.lists(loads, min_size=2, max_size=30),
    target=targets,
    max_replicas=st.integers(1, 50),
)
def test_max_clamp_always_holds(peaks: list[float], target: float, max_replicas: int) -> None:
    planner = ReplicaPlanner(ScalingPolicy(target_per_replica=target, max_replicas=max_replicas))
    for i, peak in enumerate(peaks):
        assert 1 <= planner.decide(30.0 * i, forecast_peak=peak).replicas <= max_replicas


def test_forecast_errors_match_observations_to_lead_time_forecasts() -> None:
    errors = ForecastErrors(window=3)
    errors.expect(600, 100)
    errors.expect(600, 999)  # a later forecast for the same time: the first one counts
    errors.expect(900, 110)
    errors.observe(300, 50)  # nothing was forecast for 300 or before
    assert len(errors) == 0 and errors.mean_absolute_error() is None
    errors.observe(600, 130)
    errors.observe(600, 130)  # the same observation polled again: no second error
    assert len(errors) == 1
    errors.expect(600, 1)  # already observed: not a forecast any more
    errors.observe(960, 100)  # matched with the latest forecast time at or before it
    errors.expect(1200, float("nan"))  # ignored
    errors.expect(1200, 100)
    errors.observe(1200, 120)
    assert len(errors) == 3 and errors.mean_absolute_error() == pytest.approx((30 + 10 + 20) / 3)
    errors.expect(1500, 100)
    errors.observe(1500, 100)  # the window keeps the last 3
    assert errors.mean_absolute_error() == pytest.approx((10 + 20 + 0) / 3)


def test_error_headroom_adds_recent_error_to_the_forecast_peak() -> None:
    policy = ScalingPolicy(target_per_replica=10, error_headroom=2.0, scale_down_window_seconds=0)
    planner = ReplicaPlanner(policy)
    first = planner.decide(0, forecast_peak=50, observed=20)
    assert first.replicas == 5 and first.headroom == 0
    assert "no error headroom yet (0 of 3" in first.reason
    for i, actual in enumerate((70.0, 30.0, 65.0), start=1):
        planner.expect(300.0 * i, 50.0)
        planner.observe(300.0 * i, actual)
    decision = planner.decide(1000, forecast_peak=50, observed=20)
    # mean absolute error (20 + 20 + 15) / 3 = 18.33, x 2 = 36.7 on top of the peak 50
    assert decision.headroom == pytest.approx(2 * 55 / 3)
    assert decision.replicas == 9 and decision.forecast_peak == 50
    assert "includes headroom 36.67 (2 x the mean absolute error 18.33" in decision.reason
    # off by default: the same errors add nothing
    plain = ReplicaPlanner(ScalingPolicy(target_per_replica=10))
    for i in range(1, 4):
        plain.expect(300.0 * i, 50.0)
        plain.observe(300.0 * i, 90.0)
    assert plain.decide(1000, forecast_peak=50).replicas == 5
    # without a forecast the headroom does not apply (observed load only)
    reactive = planner.decide(1300, forecast_peak=None, observed=20)
    assert reactive.headroom == 0


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"error_headroom": -1.0}, "error_headroom must be a number from 0 to 100"),
        ({"error_headroom": 1e308}, "error_headroom must be a number from 0 to 100"),
        ({"error_headroom": math.nan}, "error_headroom"),
        ({"error_window": 0}, "error_window must be >= 1"),
    ],
)
def test_error_headroom_validation(kwargs: dict[str, float], needle: str) -> None:
    with pytest.raises(InputDataError, match=needle):
        ScalingPolicy(target_per_replica=1, **kwargs)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    ticks=st.lists(st.tuples(loads, loads, loads, loads), min_size=1, max_size=40),
    target=targets,
    factor=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
)
def test_error_headroom_keeps_the_planner_properties(
    ticks: list[tuple[float, float, float, float]], target: float, factor: float
) -> None:
    policy = ScalingPolicy(target_per_replica=target, error_headroom=factor, error_window=5)
    low, high = ReplicaPlanner(policy), ReplicaPlanner(policy)
    for i, (peak, extra, observed, median) in enumerate(ticks):
        now = 300.0 * i
        for planner in (low, high):
            planner.observe(now, observed)
            planner.expect(now + 600, median)
        a = low.decide(now, forecast_peak=peak, observed=observed)
        b = high.decide(now, forecast_peak=peak + extra, observed=observed)
        assert b.replicas >= a.replicas  # still monotone in the forecast
        for decision in (a, b):
            assert decision.headroom >= 0
            assert decision.replicas >= replicas_for_load(observed, target)
            assert decision.replicas >= replicas_for_load(decision.load, target)
            assert math.isfinite(decision.value) and decision.value > 0


def test_a_planner_restored_from_its_snapshot_decides_like_the_original() -> None:
    """The snapshot goes through JSON (the store's column) and back: the restored
    planner keeps the window, the step limit and the forecast errors."""
    import json

    policy = ScalingPolicy(target_per_replica=10, scale_down_window_seconds=300, error_headroom=1)
    original = ReplicaPlanner(policy)
    for i, (peak, observed) in enumerate([(300, 290), (200, 250), (80, 120), (60, 70)]):
        original.expect(1000 + 60 * i + 300, peak)
        original.observe(1000 + 60 * i, observed)
        original.decide(1000 + 60 * i, forecast_peak=peak, observed=observed)
    state = json.loads(json.dumps(original.snapshot()))
    restored = ReplicaPlanner.restore(policy, state, now=1200)
    assert restored.current == original.current == 30
    assert len(restored.errors) == len(original.errors)
    for t in (1240, 1280, 1330, 1400, 1600):
        a = original.decide(t, forecast_peak=50, observed=40)
        b = restored.decide(t, forecast_peak=50, observed=40)
        assert (a.replicas, a.value, a.reason) == (b.replicas, b.value, b.reason)
    # a snapshot of another policy, or of another layout, is not restored
    with pytest.raises(ValueError, match="another policy"):
        ReplicaPlanner.restore(ScalingPolicy(target_per_replica=20), state, now=1200)
    with pytest.raises(ValueError, match="version"):
        ReplicaPlanner.restore(policy, {**state, "version": 0}, now=1200)


def test_a_restored_planner_from_a_clock_ahead_does_not_fail() -> None:
    """Saved by a scaler whose clock ran ahead: time would go backwards on the first
    decision (an error to KEDA); the restored planner takes those times as now."""
    policy = ScalingPolicy(target_per_replica=10)
    ahead = ReplicaPlanner(policy)
    ahead.decide(5000, forecast_peak=300)
    ahead.decide(5100, forecast_peak=100)
    restored = ReplicaPlanner.restore(policy, ahead.snapshot(), now=4000)
    decision = restored.decide(4000, forecast_peak=100)
    assert decision.replicas == 30  # still holding the window's high


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(min_value=0, max_value=200), st.floats(min_value=0, max_value=500)),
        min_size=1,
        max_size=60,
    )
)
def test_the_window_high_is_the_highest_recommendation_of_the_window(
    steps: list[tuple[float, float]],
) -> None:
    """The planner keeps only the recommendations that can still be the window's high
    (a short memory to save however often it is asked); the high is still exactly
    the highest recommendation of the window."""
    policy = ScalingPolicy(target_per_replica=10, scale_down_window_seconds=300)
    planner = ReplicaPlanner(policy)
    seen: list[tuple[float, int]] = []
    now = 0.0
    for dt, peak in steps:
        now += dt
        planner.decide(now, forecast_peak=peak)
        seen.append((now, plan_replicas(policy, forecast_peak=peak).replicas))
        high = max(r for t, r in seen if t >= now - 300)
        assert planner.snapshot()["recent"][0][1] == high
        assert len(planner.snapshot()["recent"]) <= len(seen)


@pytest.mark.parametrize(
    ("target", "too_fine"),
    [
        (0.001, False),
        (50.0, False),
        (12.345, False),
        (0.0004, True),
        (0.0015, True),
        (5e-324, True),
        (1e15, False),
        (1.797693134862316e305, False),  # overflowed round(): a 500 from the fuzzer
        (sys.float_info.max, False),
    ],
)
def test_targets_keda_cannot_pass_on_as_they_are(target: float, too_fine: bool) -> None:
    assert target_too_fine(target) is too_fine
