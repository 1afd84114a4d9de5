"""Little's-law sizing of circuit-breaker limits and its Envoy shape."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecaster.consumers.circuit_breaker import (
    SizingPolicy,
    envoy_thresholds,
    latency_scale_from_unit,
    rate_period_from_unit,
    size_limits,
)

T0 = datetime(2026, 1, 5, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)


def test_littles_law_worked_example() -> None:
    # 200 req/s at 250 ms keeps 50 requests in flight; 1.5x headroom -> 75.
    limits = size_limits(rate_per_second=200.0, latency_seconds=0.25, valid_from=T0, valid_until=T1)
    assert limits.basis["concurrency"] == pytest.approx(50.0)
    assert limits.max_requests == 75
    assert limits.timeout_ms == 750  # 3 x 250 ms
    # queue wait allowed: 750 - 250 = 500 ms; 200 req/s x 0.5 s = 100 pending
    assert limits.max_pending_requests == 100
    assert limits.max_connections == 75
    assert limits.max_retries == 15


def test_floors_apply_at_zero_load() -> None:
    limits = size_limits(rate_per_second=0.0, latency_seconds=0.0, valid_from=T0, valid_until=T1)
    assert limits.max_requests == 1 and limits.max_pending_requests == 1
    assert limits.timeout_ms == 10 and limits.max_retries == 3


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan])
def test_rejects_bad_inputs(bad: float) -> None:
    with pytest.raises(ValueError, match="rate_per_second"):
        size_limits(rate_per_second=bad, latency_seconds=0.1, valid_from=T0, valid_until=T1)
    with pytest.raises(ValueError, match="headroom"):
        SizingPolicy(headroom=0.5)


@given(
    rate=st.floats(min_value=0, max_value=1e5),
    latency=st.floats(min_value=0, max_value=60),
    extra_rate=st.floats(min_value=0, max_value=1e4),
    extra_latency=st.floats(min_value=0, max_value=10),
    headroom=st.floats(min_value=1.0, max_value=4.0),
)
def test_limits_cover_littles_law_and_are_monotone(
    rate: float, latency: float, extra_rate: float, extra_latency: float, headroom: float
) -> None:
    policy = SizingPolicy(headroom=headroom)
    low = size_limits(
        rate_per_second=rate, latency_seconds=latency, valid_from=T0, valid_until=T1, policy=policy
    )
    high = size_limits(
        rate_per_second=rate + extra_rate,
        latency_seconds=latency + extra_latency,
        valid_from=T0,
        valid_until=T1,
        policy=policy,
    )
    assert low.max_requests >= rate * latency * headroom - 1e-6
    assert low.timeout_ms / 1000 >= latency * policy.timeout_factor - 1e-3
    for field in ("max_requests", "max_pending_requests", "timeout_ms", "max_retries"):
        assert getattr(high, field) >= getattr(low, field)


def test_envoy_shape() -> None:
    limits = size_limits(rate_per_second=200.0, latency_seconds=0.25, valid_from=T0, valid_until=T1)
    envoy = envoy_thresholds(limits)
    (threshold,) = envoy["cluster"]["circuit_breakers"]["thresholds"]
    assert threshold == {
        "priority": "DEFAULT",
        "max_connections": 75,
        "max_pending_requests": 100,
        "max_requests": 75,
        "max_retries": 15,
        "track_remaining": True,
    }
    assert envoy["route"] == {"timeout": "0.750s"}


def test_limits_beyond_envoys_uint32_are_capped_and_named() -> None:
    # 1e9 req/s for 20 s: 3e10 requests in flight (x1.5), past Envoy's UInt32Value
    limits = size_limits(rate_per_second=1e9, latency_seconds=20.0, valid_from=T0, valid_until=T1)
    assert limits.max_requests == limits.max_connections == 2**32 - 1
    assert limits.max_pending_requests == 2**32 - 1
    assert limits.max_retries == 2**32 - 1  # 20% of the uncapped max_requests is past it too
    assert limits.basis["capped_at_uint32"] == [
        "max_pending_requests",
        "max_requests",
        "max_retries",
    ]
    assert (
        "capped_at_uint32"
        not in size_limits(
            rate_per_second=200.0, latency_seconds=0.25, valid_from=T0, valid_until=T1
        ).basis
    )


@pytest.mark.parametrize(
    ("unit", "seconds"),
    [
        ("req/s", 1.0),
        ("requests/5min", 300.0),
        ("mentions/5m", 300.0),
        ("rpm / min", 60.0),
        ("req/h", 3600.0),
        ("", None),
        ("ms", None),
        # plurals were not read: a 422 asking for rate_per
        ("requests/minutes", 60.0),
        ("req/seconds", 1.0),
        ("calls / 2 hours", 7200.0),
    ],
)
def test_rate_period_from_unit(unit: str, seconds: float | None) -> None:
    assert rate_period_from_unit(unit) == seconds


def test_latency_scale_from_unit() -> None:
    assert latency_scale_from_unit("ms") == 1e-3
    assert latency_scale_from_unit("s") == 1.0
    assert latency_scale_from_unit("req/s") is None
    # "seconds" was read but not "second", nor "milliseconds" (a 422 asking for
    # latency_unit, on a series whose unit said it plainly)
    for unit, scale in (("second", 1.0), ("Milliseconds", 1e-3), ("msec", 1e-3), ("us", 1e-6)):
        assert latency_scale_from_unit(unit) == scale, unit
