"""Circuit-breaker limits from forecasts by Little's law, and their Envoy shape.

Little's law: in a stable system the mean number of requests in flight equals the
arrival rate times the mean time each spends inside, ``L = lambda * W``. With the
*upper* quantile of the predicted request rate and of the predicted latency over
the validity window, the limits are::

    concurrency          = rate_upper [req/s] * latency_upper [s]
    max_requests         = ceil(headroom * concurrency)
    timeout              = timeout_factor * latency_upper
    max_pending_requests = ceil(rate_upper * max(min_timeout, timeout - latency_upper))
    max_connections      = max_requests
    max_retries          = max(min_retries, ceil(retry_fraction * max_requests))

``max_pending_requests`` is Little's law again, applied to the queue: a request
that waits longer than ``timeout - latency_upper`` for a slot cannot finish
within the timeout, so that is the longest useful wait, and ``rate * wait``
requests queue up over it. Pure functions; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class SizingPolicy:
    """Tunables of the sizing.

    Attributes:
        headroom: Multiplier on the Little's-law concurrency (>= 1).
        timeout_factor: Request timeout as a multiple of the upper latency (> 1).
        retry_fraction: Share of ``max_requests`` that may be retries at once.
        min_requests: Lower bound for ``max_requests`` (and connections).
        min_pending: Lower bound for ``max_pending_requests``.
        min_retries: Lower bound for ``max_retries``.
        min_timeout_ms: Lower bound for the timeout.
    """

    headroom: float = 1.5
    timeout_factor: float = 3.0
    retry_fraction: float = 0.2
    min_requests: int = 1
    min_pending: int = 1
    min_retries: int = 3
    min_timeout_ms: int = 10

    def __post_init__(self) -> None:
        if not self.headroom >= 1.0:
            raise ValueError(f"headroom must be >= 1, got {self.headroom}")
        if not self.timeout_factor > 1.0:
            raise ValueError(f"timeout_factor must be > 1, got {self.timeout_factor}")
        if not 0.0 <= self.retry_fraction <= 1.0:
            raise ValueError(f"retry_fraction must be in [0, 1], got {self.retry_fraction}")


@dataclass(frozen=True)
class BreakerLimits:
    """Recommended circuit-breaker limits for ``[valid_from, valid_until]``."""

    valid_from: datetime
    valid_until: datetime
    max_requests: int
    max_pending_requests: int
    max_connections: int
    max_retries: int
    timeout_ms: int
    basis: dict[str, Any]


#: Largest threshold Envoy takes (its circuit-breaker thresholds are ``UInt32Value``);
#: larger sizes are capped to it and named in ``basis["capped_at_uint32"]``.
MAX_THRESHOLD = 2**32 - 1


def size_limits(
    *,
    rate_per_second: float,
    latency_seconds: float,
    valid_from: datetime,
    valid_until: datetime,
    policy: SizingPolicy | None = None,
    basis: dict[str, Any] | None = None,
) -> BreakerLimits:
    """Size circuit-breaker limits by Little's law with headroom.

    Args:
        rate_per_second: Upper quantile of the predicted arrival rate (req/s, >= 0).
        latency_seconds: Upper quantile of the predicted latency (s, >= 0).
        valid_from: Start of the window the prediction covers (UTC).
        valid_until: End of that window (UTC).
        policy: Headroom and bounds (defaults: :class:`SizingPolicy`).
        basis: Extra provenance merged into ``basis`` (series, models, ...).

    Raises:
        ValueError: On negative or non-finite inputs.
    """
    policy = policy or SizingPolicy()
    for name, value in (("rate_per_second", rate_per_second), ("latency_seconds", latency_seconds)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {value}")
    concurrency = rate_per_second * latency_seconds
    max_requests = max(policy.min_requests, math.ceil(policy.headroom * concurrency - 1e-9))
    timeout_s = max(policy.min_timeout_ms / 1000.0, policy.timeout_factor * latency_seconds)
    timeout_ms = max(policy.min_timeout_ms, math.ceil(timeout_s * 1000.0 - 1e-9))
    # The longest useful wait in the queue. Computed from the unrounded timeout and
    # floored at the minimum timeout so that it never shrinks as latency grows.
    queue_wait = max(policy.min_timeout_ms / 1000.0, timeout_s - latency_seconds)
    max_pending = max(policy.min_pending, math.ceil(rate_per_second * queue_wait - 1e-9))
    max_retries = max(policy.min_retries, math.ceil(policy.retry_fraction * max_requests - 1e-9))
    counts = {
        "max_requests": max_requests,
        "max_pending_requests": max_pending,
        "max_retries": max_retries,
    }
    capped = sorted(name for name, value in counts.items() if value > MAX_THRESHOLD)
    counts = {name: min(value, MAX_THRESHOLD) for name, value in counts.items()}
    return BreakerLimits(
        valid_from=valid_from,
        valid_until=valid_until,
        max_requests=counts["max_requests"],
        max_pending_requests=counts["max_pending_requests"],
        max_connections=counts["max_requests"],
        max_retries=counts["max_retries"],
        timeout_ms=timeout_ms,
        basis={
            "rate_per_second_upper": rate_per_second,
            "latency_seconds_upper": latency_seconds,
            "concurrency": concurrency,
            "max_queue_wait_seconds": queue_wait,
            **({"capped_at_uint32": capped} if capped else {}),
            **asdict(policy),
            **(basis or {}),
        },
    )


def envoy_thresholds(limits: BreakerLimits) -> dict[str, Any]:
    """The limits shaped as Envoy configuration.

    Returns:
        ``{"cluster": {"circuit_breakers": {"thresholds": [...]}}, "route": {"timeout": ...}}``:
        the ``cluster`` part drops into an Envoy ``Cluster`` (v3), the ``route`` part
        into a ``RouteAction``; durations are Envoy's ``"0.300s"`` strings.
    """
    return {
        "cluster": {
            "circuit_breakers": {
                "thresholds": [
                    {
                        "priority": "DEFAULT",
                        "max_connections": limits.max_connections,
                        "max_pending_requests": limits.max_pending_requests,
                        "max_requests": limits.max_requests,
                        "max_retries": limits.max_retries,
                        "track_remaining": True,
                    }
                ]
            }
        },
        "route": {"timeout": f"{limits.timeout_ms / 1000:.3f}s"},
    }


_PER = {
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}
#: Singular and plural spellings alike (Prometheus names its base unit ``seconds``).
_LATENCY = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("ms", "msec", "msecs", "millisecond", "milliseconds"), 1e-3),
    **dict.fromkeys(("us", "µs", "usec", "microsecond", "microseconds"), 1e-6),
}


def rate_period_from_unit(unit: str) -> float | None:
    """Seconds the rate unit counts over: ``req/s`` -> 1, ``requests/5min`` -> 300.

    Returns ``None`` when the unit does not say.
    """
    import re

    match = re.search(r"/\s*(\d+(?:\.\d+)?)?\s*([a-zµ]+)\s*$", unit.strip().lower())
    if not match:
        return None
    count = float(match.group(1) or 1.0)
    per = _PER.get(match.group(2))
    return None if per is None else count * per


def latency_scale_from_unit(unit: str) -> float | None:
    """Seconds per latency unit: ``s`` -> 1, ``ms`` -> 0.001; ``None`` if unknown."""
    return _LATENCY.get(unit.strip().lower())
