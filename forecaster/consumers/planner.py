"""The replica planner: from a forecast window and the observed load to a replica count.

Pure Python (no pandas, no I/O), shared by the KEDA scaler, the ``/v1/scaling`` route
and ``forecaster simulate``:

* provisioned load = max(forecast quantile over ``[now, now + lead time]``, observed load),
  so capacity is ready before a peak and never below what the current load needs;
* replicas = ``ceil(load / target_per_replica)``, clamped to ``[min_replicas, max_replicas]``;
* scaling up is immediate; scaling down waits until every recommendation of the
  stabilisation window is lower, then goes down in bounded steps
  (:class:`ReplicaPlanner`);
* optionally (``ScalingPolicy.error_headroom``), the stateful planner adds headroom
  proportional to its recent forecast error: it remembers the median forecast for the
  end of each lead window and compares it with the load later observed at that time
  (:class:`ForecastErrors`), so a series whose forecast has lately been missing by a
  lot gets more headroom, and a well-forecast one less;
* every :class:`Decision` carries a human ``reason``.

Loads are in the series' unit (e.g. requests per second); times are Unix seconds.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from statistics import NormalDist
from typing import Any

from forecaster.errors import InputDataError

#: Smallest metric value ever reported to KEDA (1 milli-unit, KEDA's quantity resolution).
#: KEDA treats 0 as "scale to the minimum", so the planner never reports it.
MIN_METRIC_VALUE = 0.001
#: Most replicas ever planned: Kubernetes counts replicas in an int32.
MAX_REPLICAS = 2**31 - 1
#: KEDA hands targets (targetPerReplica, a metrics-api targetValue) to the HPA in
#: thousandths: a finer target is rounded there.
TARGET_RESOLUTION = 0.001


def target_too_fine(target: float) -> bool:
    """Whether KEDA cannot pass ``target`` on to the HPA as it is: it sends thousandths,
    so 0.0004 became a target of 0 (the HPA refused it, and no fallback applied) and
    0.0015 one of 0.001 or 0.002 (1.5x or 0.75x the planned replicas)."""
    scaled = target / TARGET_RESOLUTION
    if scaled >= 2**53:  # whole thousandths anyway (1e305 overflowed round() to a 500)
        return False
    milli = round(scaled)
    return milli < 1 or abs(milli * TARGET_RESOLUTION - target) > 0.001 * target


#: Largest error headroom accepted: 100 times the mean forecast error is already far
#: past any useful plan, and a larger factor can overflow the planned load to inf.
MAX_ERROR_HEADROOM = 100.0

_EPS = 1e-9
_STANDARD_NORMAL = NormalDist()


@dataclass(frozen=True)
class ScalingPolicy:
    """How loads become replicas.

    Attributes:
        target_per_replica: Load one replica handles (series unit, > 0).
        min_replicas: Lower clamp (0 only when scale-to-zero is wanted).
        max_replicas: Upper clamp, or None for no limit.
        scale_down_window_seconds: Scale down only to the highest recommendation of
            this trailing window (HPA-style stabilisation); 0 disables it.
        scale_down_max_fraction: At most this fraction of the current replicas (and
            at least one replica) is removed per step.
        scale_down_step_seconds: At most one scale-down step per this many seconds
            (KEDA asks on its polling loop and again each time the HPA reads the
            metric: stepping per call removed replicas several times faster).
        error_headroom: Stateful planner only: add this many times the mean absolute
            error of the recent lead-time forecasts to the forecast peak (0 = off).
        error_window: How many recent forecast errors that mean is taken over.
    """

    target_per_replica: float
    min_replicas: int = 1
    max_replicas: int | None = None
    scale_down_window_seconds: float = 300.0
    scale_down_max_fraction: float = 0.25
    scale_down_step_seconds: float = 30.0
    error_headroom: float = 0.0
    error_window: int = 96

    def __post_init__(self) -> None:
        target = self.target_per_replica
        if not (math.isfinite(target) and target > 0):
            raise InputDataError(f"target_per_replica must be a positive number, got {target!r}")
        if not 0 <= self.min_replicas <= MAX_REPLICAS:
            raise InputDataError(
                f"min_replicas must be between 0 and {MAX_REPLICAS}, got {self.min_replicas}"
            )
        if self.max_replicas is not None and self.max_replicas > MAX_REPLICAS:
            raise InputDataError(
                f"max_replicas must be at most {MAX_REPLICAS}, got {self.max_replicas}"
            )
        if not math.isfinite(self.min_replicas * target):
            raise InputDataError(
                f"min_replicas x target_per_replica ({self.min_replicas} x {target!r}) "
                "is not a finite load"
            )
        if self.max_replicas is not None and self.max_replicas < max(self.min_replicas, 1):
            raise InputDataError(
                f"max_replicas ({self.max_replicas}) must be >= 1 and >= min_replicas "
                f"({self.min_replicas})"
            )
        window = self.scale_down_window_seconds
        if not (math.isfinite(window) and window >= 0):
            raise InputDataError(f"scale_down_window_seconds must be >= 0, got {window!r}")
        fraction = self.scale_down_max_fraction
        if not (0 < fraction <= 1):
            raise InputDataError(f"scale_down_max_fraction must be in (0, 1], got {fraction!r}")
        every = self.scale_down_step_seconds
        if not (math.isfinite(every) and every >= 0):
            raise InputDataError(f"scale_down_step_seconds must be >= 0, got {every!r}")
        headroom = self.error_headroom
        if not (math.isfinite(headroom) and 0 <= headroom <= MAX_ERROR_HEADROOM):
            raise InputDataError(
                f"error_headroom must be a number from 0 to {MAX_ERROR_HEADROOM:g}, "
                f"got {headroom!r}"
            )
        if self.error_window < 1:
            raise InputDataError(f"error_window must be >= 1, got {self.error_window}")

    def clamp(self, replicas: int) -> int:
        """``replicas`` within ``[min_replicas, max_replicas]``."""
        replicas = max(replicas, self.min_replicas)
        if self.max_replicas is not None:
            replicas = min(replicas, self.max_replicas)
        return replicas


@dataclass(frozen=True)
class Decision:
    """One planning decision.

    Attributes:
        load: Provisioned load, max(forecast peak, observed) in the series' unit.
        replicas: Replicas to run (after clamps, stabilisation and step limits).
        value: Metric value for an HPA ``AverageValue`` target of
            ``target_per_replica``: ``ceil(value / target) == replicas``; always
            finite and >= :data:`MIN_METRIC_VALUE`.
        forecast_peak: Max of the forecast quantile over the lead window, if known.
        observed: Currently observed load, if known.
        reason: Why this many replicas, in one sentence.
        headroom: Load added to the forecast peak for recent forecast error (0 if none).
    """

    load: float
    replicas: int
    value: float
    forecast_peak: float | None
    observed: float | None
    reason: str
    headroom: float = 0.0


def interval_quantiles(level: float) -> tuple[float, float]:
    """Lowest and highest quantile a central ``level`` % interval provides.

    A forecast published at level 90 has ``yhat_lower`` = quantile 0.05, ``yhat``
    = 0.5 (the median) and ``yhat_upper`` = 0.95.
    """
    if not 0 < level < 100:
        raise InputDataError(f"interval level must be in (0, 100), got {level!r}")
    tail = (100.0 - level) / 200.0
    return tail, 1.0 - tail


def interval_quantile(
    q: float, *, yhat: float, yhat_lower: float, yhat_upper: float, level: float
) -> float:
    """The ``q`` quantile of a forecast step published as a central interval.

    ``q`` = 0.5 is ``yhat`` and the interval's ends are ``yhat_lower``/``yhat_upper``
    exactly; quantiles in between are interpolated assuming a normal shape on each
    side of ``yhat`` (each side keeps its own spread, so skewed intervals stay skewed).

    Raises:
        InputDataError: If ``q`` is outside the quantiles the interval provides.
    """
    return interval_quantile_steps(q, [(yhat, yhat_lower, yhat_upper)], level=level)[0]


def interval_quantile_steps(
    q: float, steps: Sequence[tuple[float, float, float]], *, level: float
) -> list[float]:
    """:func:`interval_quantile` of every ``(yhat, yhat_lower, yhat_upper)`` step.

    Raises:
        InputDataError: If ``q`` is outside the quantiles the interval provides.
    """
    low_q, high_q = interval_quantiles(level)
    if not low_q - _EPS <= q <= high_q + _EPS:
        raise InputDataError(
            f"quantile {q:g} is not available: forecasts are published with a {level:g}% "
            f"interval, which covers quantiles {low_q:.3g} to {high_q:.3g}"
        )
    if abs(q - 0.5) < _EPS:
        return [yhat for yhat, _, _ in steps]
    if q > 0.5:
        if abs(q - high_q) < _EPS:
            return [upper for _, _, upper in steps]
        share = _normal_share(q, high_q)
        return [yhat + (upper - yhat) * share for yhat, _, upper in steps]
    if abs(q - low_q) < _EPS:
        return [lower for _, lower, _ in steps]
    share = _normal_share(q, low_q)
    return [yhat + (lower - yhat) * share for yhat, lower, _ in steps]


@lru_cache(maxsize=256)
def _normal_share(q: float, end: float) -> float:
    """z(q) / z(end): where quantile ``q`` sits between the median and an interval end."""
    return _STANDARD_NORMAL.inv_cdf(q) / _STANDARD_NORMAL.inv_cdf(end)


def provisioned_load(forecast: Iterable[float], observed: float | None) -> float:
    """max(forecast values, observed load); negative values count as 0.

    Raises:
        InputDataError: If neither a forecast value nor an observation is given, or
            a value is not finite.
    """
    values = [float(v) for v in forecast]
    if observed is not None:
        values.append(float(observed))
    if not values:
        raise InputDataError("nothing to plan from: no forecast values and no observed load")
    if not all(math.isfinite(v) for v in values):
        raise InputDataError("forecast or observed load is not finite")
    return max(0.0, *values)


def replicas_for_load(load: float, target_per_replica: float) -> int:
    """``ceil(load / target_per_replica)`` (0 for no load), robust to float noise.

    At most :data:`MAX_REPLICAS` (a tiny target can make the ratio overflow to inf).
    """
    if load <= 0:
        return 0
    ratio = load / target_per_replica - _EPS
    if ratio >= MAX_REPLICAS:
        return MAX_REPLICAS
    return max(1, math.ceil(ratio))


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _describe_load(load: float, peak: float | None, observed: float | None) -> str:
    if peak is not None and (observed is None or peak >= observed):
        text = f"forecast peak {_fmt(peak)} over the lead time"
        if observed is not None:
            text += f" (observed {_fmt(observed)})"
        return text
    if observed is not None and peak is not None:
        return f"observed load {_fmt(observed)} above the forecast peak {_fmt(peak)}"
    return f"observed load {_fmt(load)} (no forecast: reactive)"


def _metric_value(load: float, replicas: int, policy: ScalingPolicy) -> float:
    if replicas_for_load(load, policy.target_per_replica) == replicas and load > 0:
        value = load
    else:
        value = replicas * policy.target_per_replica
    return max(value, MIN_METRIC_VALUE)


def plan_replicas(
    policy: ScalingPolicy, *, forecast_peak: float | None, observed: float | None = None
) -> Decision:
    """Stateless plan: replicas for max(forecast peak, observed), clamped.

    Raises:
        InputDataError: If neither ``forecast_peak`` nor ``observed`` is given.
    """
    load = provisioned_load([] if forecast_peak is None else [forecast_peak], observed)
    raw = replicas_for_load(load, policy.target_per_replica)
    replicas = policy.clamp(raw)
    reason = (
        f"{_describe_load(load, forecast_peak, observed)} / "
        f"{_fmt(policy.target_per_replica)} per replica = {raw} replicas"
    )
    if replicas != raw:
        bound = "min_replicas" if replicas > raw else "max_replicas"
        reason += f", clamped to {bound}={replicas}"
    return Decision(
        load=load,
        replicas=replicas,
        value=_metric_value(load, replicas, policy),
        forecast_peak=forecast_peak,
        observed=observed,
        reason=reason,
    )


class ForecastErrors:
    """Recent absolute errors of the lead-time forecast of one series.

    :meth:`expect` records the median forecast for a future time (the end of the
    lead window; the first forecast seen for a time is kept, i.e. the one made a
    lead time ahead); :meth:`observe` matches an observation with the latest
    expected time at or before it and records ``|observed - forecast|``. Feeding
    the same observation again (every poll between two observations) is a no-op.
    """

    #: Fewer errors than this give no estimate (no headroom).
    MIN_ERRORS = 3
    #: Pending expectations kept at most (oldest dropped first).
    MAX_PENDING = 10_000

    def __init__(self, window: int) -> None:
        self._errors: deque[float] = deque(maxlen=window)
        self._pending: dict[float, float] = {}
        self._observed_at: float | None = None

    def expect(self, at: float, median: float) -> None:
        """The median forecast for time ``at`` (ignored if not finite or already known)."""
        if not math.isfinite(median) or at in self._pending:
            return
        if self._observed_at is not None and at <= self._observed_at:
            return  # already observed: not a forecast any more
        if len(self._pending) >= self.MAX_PENDING:
            del self._pending[min(self._pending)]
        self._pending[at] = median

    def observe(self, at: float, value: float) -> None:
        """The load observed at time ``at``."""
        if not math.isfinite(value) or (self._observed_at is not None and at <= self._observed_at):
            return
        self._observed_at = at
        due = [t for t in self._pending if t <= at]
        if not due:
            return
        forecast = self._pending[max(due)]
        for t in due:
            del self._pending[t]
        self._errors.append(abs(value - forecast))

    def __len__(self) -> int:
        return len(self._errors)

    def mean_absolute_error(self) -> float | None:
        """Mean of the recent absolute errors, or None with fewer than :data:`MIN_ERRORS`."""
        if len(self._errors) < self.MIN_ERRORS:
            return None
        return sum(self._errors) / len(self._errors)

    #: Pending expectations a snapshot keeps (the newest): a lead window holds a few.
    SNAPSHOT_PENDING = 256

    def snapshot(self) -> dict[str, Any]:
        """The recent errors, pending expectations and last observation time, as JSON
        values (:meth:`restore` reads them back)."""
        pending = sorted(self._pending.items())[-self.SNAPSHOT_PENDING :]
        return {
            "errors": list(self._errors),
            "pending": [[at, median] for at, median in pending],
            "observed_at": self._observed_at,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`snapshot` returned (non-finite numbers are dropped)."""
        self._errors.clear()
        self._errors.extend(_finite(v) for v in state["errors"] if _finite_or_none(v) is not None)
        self._pending = {
            _finite(at): _finite(median)
            for at, median in state["pending"]
            if _finite_or_none(at) is not None and _finite_or_none(median) is not None
        }
        observed_at = state["observed_at"]
        self._observed_at = None if observed_at is None else _finite(observed_at)


@lru_cache(maxsize=1024)
def _policy_items(policy: ScalingPolicy) -> tuple[tuple[str, Any], ...]:
    return tuple((f.name, getattr(policy, f.name)) for f in fields(policy))


def _policy_fields(policy: ScalingPolicy) -> dict[str, Any]:
    """The policy's fields by name (``dataclasses.asdict`` deep-copies: slow per save)."""
    return dict(_policy_items(policy))


def _finite_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _finite(value: Any) -> float:
    """``value`` as a finite float.

    Raises:
        ValueError: It is not a finite number.
    """
    number = _finite_or_none(value)
    if number is None:
        raise ValueError(f"not a finite number: {value!r}")
    return number


class ReplicaPlanner:
    """Stateful planner: immediate scale-up, stabilised and step-limited scale-down.

    Feed it one decision per planning tick (``decide``); ``now`` must not go
    backwards. With ``policy.error_headroom`` > 0, also feed it the median forecast
    for the end of the lead window (:meth:`expect`) and the observations
    (:meth:`observe`) so it can size the headroom from its recent forecast errors.
    Not thread-safe: use one planner per scaled workload.
    """

    def __init__(self, policy: ScalingPolicy) -> None:
        self.policy = policy
        self.current: int | None = None
        self.errors = ForecastErrors(policy.error_window)
        # the window's recommendations that can still be its highest: each is above
        # every later one (a lower or equal earlier one never is), so the first is the
        # window's high and the deque stays short however often the planner is asked
        self._recent: deque[tuple[float, int]] = deque()
        self._last_now: float | None = None
        self._last_step_at: float | None = None  # when replicas last went down

    #: Version of :meth:`snapshot`'s layout (a snapshot of another is not restored).
    SNAPSHOT_VERSION = 1

    def snapshot(self) -> dict[str, Any]:
        """The planner's memory as JSON values: its policy, current replicas, the
        recommendations of its stabilisation window, its last scale-down step and its
        forecast errors. :meth:`restore` rebuilds the planner from it, so a restarted
        process keeps stabilising and stepping a scale-down it had started."""
        return {
            "version": self.SNAPSHOT_VERSION,
            "policy": _policy_fields(self.policy),
            "current": self.current,
            "recent": [[at, replicas] for at, replicas in self._recent],
            "last_now": self._last_now,
            "last_step_at": self._last_step_at,
            "errors": self.errors.snapshot(),
        }

    @classmethod
    def restore(cls, policy: ScalingPolicy, state: dict[str, Any], *, now: float) -> ReplicaPlanner:
        """A planner for ``policy`` with the memory of :meth:`snapshot`'s ``state``.

        A time later than ``now`` in it (another host's clock ahead of this one) is
        taken as ``now``, so the first decision cannot fail with time going backwards.

        Raises:
            ValueError: ``state`` is not a snapshot of this version or is of
                another policy (the caller starts a fresh planner instead).
        """
        if state.get("version") != cls.SNAPSHOT_VERSION:
            raise ValueError(f"planner snapshot version {state.get('version')!r}")
        if state.get("policy") != _policy_fields(policy):
            raise ValueError("planner snapshot of another policy")
        planner = cls(policy)
        current = state["current"]
        if current is not None:
            if isinstance(current, bool) or not isinstance(current, int) or current < 0:
                raise ValueError(f"planner snapshot current={current!r}")
            planner.current = policy.clamp(current)
        for at, replicas in state["recent"]:
            if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
                raise ValueError(f"planner snapshot recommendation {replicas!r}")
            planner._remember(min(_finite(at), now), replicas)
        if state["last_now"] is not None:
            planner._last_now = min(_finite(state["last_now"]), now)
        if state["last_step_at"] is not None:
            planner._last_step_at = min(_finite(state["last_step_at"]), now)
        planner.errors.restore(state["errors"])
        return planner

    def carried_over(self, policy: ScalingPolicy) -> ReplicaPlanner:
        """A planner for ``policy`` that keeps this one's replica memory (current
        replicas, window, last step; clamped to the new policy) but not its forecast
        errors: for a trigger whose metadata was edited, which otherwise started without
        memory and could drop its replicas at once right behind a peak."""
        planner = ReplicaPlanner(policy)
        if self.current is not None:
            planner.current = policy.clamp(self.current)
        planner._recent = deque(self._recent)
        planner._last_now = self._last_now
        planner._last_step_at = self._last_step_at
        return planner

    def _remember(self, at: float, replicas: int) -> None:
        """Add a recommendation to the window (dropping those it outlasts and equals)."""
        recent = self._recent
        while recent and recent[-1][1] <= replicas:
            recent.pop()
        recent.append((at, replicas))

    def expect(self, at: float, median: float) -> None:
        """Remember the median forecast for time ``at`` (the end of the lead window)."""
        self.errors.expect(at, median)

    def observe(self, at: float, value: float) -> None:
        """Record the load observed at time ``at`` (scores the forecast made for it)."""
        self.errors.observe(at, value)

    def headroom(self) -> tuple[float, str]:
        """Load to add to the forecast peak for recent forecast error, and why."""
        factor = self.policy.error_headroom
        if factor <= 0:
            return 0.0, ""
        error = self.errors.mean_absolute_error()
        if error is None:
            return 0.0, (
                f"; no error headroom yet ({len(self.errors)} of {ForecastErrors.MIN_ERRORS} "
                "forecast errors known)"
            )
        headroom = factor * error
        return headroom, (
            f"; the forecast peak includes headroom {_fmt(headroom)} ({factor:g} x the mean "
            f"absolute error {_fmt(error)} of the last {len(self.errors)} lead-time forecasts)"
        )

    def decide(
        self, now: float, *, forecast_peak: float | None, observed: float | None = None
    ) -> Decision:
        """Replicas for ``now`` given the forecast peak over the lead time and the observed load.

        Raises:
            InputDataError: If neither value is given or ``now`` went backwards.
        """
        if self._last_now is not None and now < self._last_now:
            raise InputDataError(f"planner time went backwards: {now} < {self._last_now}")
        self._last_now = now
        headroom, why = self.headroom() if forecast_peak is not None else (0.0, "")
        planned_peak = None if forecast_peak is None else forecast_peak + headroom
        target = plan_replicas(self.policy, forecast_peak=planned_peak, observed=observed)
        if why:
            target = replace(target, reason=target.reason + why)
        wanted = target.replicas
        window = self.policy.scale_down_window_seconds
        self._remember(now, wanted)
        while self._recent[0][0] < now - window:  # the newest (now) always stays
            self._recent.popleft()
        current = self.current
        if current is None or wanted >= current:
            replicas = wanted
            reason = target.reason
            if current is not None and wanted > current:
                reason += f"; scaling up from {current}"
        else:
            stabilised = self._recent[0][1]
            step = max(1, math.ceil(current * self.policy.scale_down_max_fraction))
            replicas = min(current, max(stabilised, current - step))
            every = self.policy.scale_down_step_seconds
            since = None if self._last_step_at is None else now - self._last_step_at
            if replicas < current and since is not None and since < every - 1e-6:
                replicas = current
                reason = (
                    f"{target.reason}; holding {current}: the last scale-down step was "
                    f"{since:g}s ago (at most one per {every:g}s)"
                )
            elif replicas == current:
                reason = (
                    f"{target.reason}; holding {current}: a recommendation of {stabilised} "
                    f"within the {window:g}s scale-down stabilisation window"
                )
            elif replicas > wanted:
                reason = (
                    f"{target.reason}; scaling down gradually from {current} to {replicas} "
                    f"(at most {step} per decision, window high {stabilised})"
                )
            else:
                reason = f"{target.reason}; scaling down from {current}"
        if current is not None and replicas < current:
            self._last_step_at = now
        self.current = replicas
        return Decision(
            load=target.load,
            replicas=replicas,
            value=_metric_value(target.load, replicas, self.policy),
            forecast_peak=forecast_peak,
            observed=observed,
            reason=reason,
            headroom=headroom,
        )
