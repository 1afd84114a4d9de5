"""Cache warming from forecasts: upcoming demand ramps of a series, and top-k members of a family.

Pure functions over plain values (no pandas, no database), so the API serves them
from its in-memory forecast view and the scheduler uses the same code to push
windows to a webhook.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


class BandPoint(Protocol):
    """One forecast step: time and central interval (what :class:`ForecastPoint` provides)."""

    @property
    def ds(self) -> datetime: ...

    @property
    def yhat(self) -> float: ...

    @property
    def yhat_lower(self) -> float: ...

    @property
    def yhat_upper(self) -> float: ...


@dataclass(frozen=True)
class Ramp:
    """A predicted rise of demand worth warming a cache for.

    Attributes:
        warm_at: When to start warming: ``ramp_start - lead`` (may lie in the past
            when the ramp has already begun: warm now).
        ramp_start: Forecast step at the trough before the rise (UTC).
        peak_at: Forecast step at the top of the rise (UTC).
        expected_peak: Point forecast at ``peak_at`` (series unit).
        peak_upper: Upper bound of the interval at ``peak_at``: the level to warm for.
        trough: Point forecast at ``ramp_start``.
        expected_increase_ratio: ``expected_peak / trough - 1``.
    """

    warm_at: datetime
    ramp_start: datetime
    peak_at: datetime
    expected_peak: float
    peak_upper: float
    trough: float
    expected_increase_ratio: float


@dataclass(frozen=True)
class RankedMember:
    """A family member with its predicted demand over a window (sum over the steps)."""

    series: str
    demand: float
    demand_upper: float
    steps: int


#: The smallest trough a ramp's relative rise is measured from, as a share of the
#: forecast's largest value: a ramp from zero reads as at most +9,900%.
TROUGH_FLOOR = 0.01


def _ratio(peak: float, trough: float, floor: float) -> float:
    return peak / max(trough, floor) - 1.0


def find_ramps(
    points: Sequence[BandPoint],
    *,
    now: datetime,
    within: timedelta,
    min_increase: float,
    lead: timedelta,
    use_upper: bool = True,
) -> list[Ramp]:
    """Upcoming ramps of a forecast: rises of at least ``min_increase`` from a trough.

    Swings are found ZigZag-style on a demand curve: a rise is confirmed when the
    curve climbs ``min_increase`` (relative) above the lowest value since the last
    peak, and ends at the highest value before it falls back by the same relative
    amount. The curve is the point forecast ``yhat``; with ``use_upper`` the rise
    must also hold for the upper quantile (``yhat_upper`` at the peak against
    ``yhat_upper`` at the trough), so a ramp that only the point forecast shows
    inside a widening interval is still reported, but one the upper quantile
    contradicts is not.

    Args:
        points: Forecast steps sorted by ``ds`` (tz-aware UTC).
        now: The current time; ramps whose peak is not after ``now`` are dropped.
        within: Only ramps starting no later than ``now + within`` are returned.
        min_increase: Minimum relative rise, e.g. 0.3 for +30 %.
        lead: Warm-up time before the ramp starts.
        use_upper: Require the upper quantile to rise by ``min_increase`` too.

    Returns:
        Ramps sorted by ``ramp_start``.
    """
    if min_increase <= 0:
        raise ValueError(f"min_increase must be positive, got {min_increase}")
    values = [float(p.yhat) for p in points]
    if len(values) < 2:
        return []
    scale = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    # a trough at or below zero (an idle service, a forecast dipping under 0) counts as
    # TROUGH_FLOOR of the forecast's largest value: a rise from it read +99999900%
    floor = max(1e-9, TROUGH_FLOOR * scale)
    horizon_end = now + within
    ramps: list[Ramp] = []
    low_i = 0
    high_i: int | None = None  # set while a rise is confirmed and climbing

    def emit(lo: int, hi: int) -> None:
        trough, peak = values[lo], values[hi]
        if _ratio(peak, trough, floor) < min_increase or hi <= lo:
            return
        if use_upper:
            upper_ratio = _ratio(float(points[hi].yhat_upper), float(points[lo].yhat_upper), floor)
            if upper_ratio < min_increase * 0.5:
                return
        start, top = points[lo].ds, points[hi].ds
        if top <= now or start > horizon_end:
            return
        ramps.append(
            Ramp(
                warm_at=start - lead,
                ramp_start=start,
                peak_at=top,
                expected_peak=peak,
                peak_upper=float(points[hi].yhat_upper),
                trough=trough,
                expected_increase_ratio=_ratio(peak, trough, floor),
            )
        )

    for i in range(1, len(values)):
        v = values[i]
        if high_i is None:
            if v <= values[low_i]:
                low_i = i
            elif _ratio(v, values[low_i], floor) >= min_increase:
                high_i = i
        else:
            if v > values[high_i]:
                high_i = i
            elif values[high_i] / max(v, floor) - 1.0 >= min_increase:
                emit(low_i, high_i)
                low_i, high_i = i, None
                # continue the search for the next trough from here
    if high_i is not None:
        emit(low_i, high_i)
    return sorted(ramps, key=lambda r: r.ramp_start)


def rank_members(
    forecasts: Mapping[str, Sequence[BandPoint]],
    *,
    start: datetime,
    end: datetime,
    k: int,
    current: Collection[str] = (),
    margin: float = 0.0,
) -> list[RankedMember]:
    """The ``k`` members with the highest predicted demand in ``(start, end]``.

    Demand is the sum of ``yhat`` over the forecast steps in the window (for a
    per-step rate this is proportional to the expected request count); ties are
    broken by the upper quantile, then by name. Members with no forecast step in
    the window are left out.

    Hysteresis: members in ``current`` (what the cache holds now) keep their place
    unless an outsider's predicted demand exceeds theirs by more than ``margin``
    (relative, e.g. 0.1 = 10 %). Near the boundary two keys with nearly equal
    forecasts would otherwise swap back and forth on noise, each swap costing a
    reload; with ``margin=0`` (or no ``current``) the ranking is the plain top-k.
    The result is sorted by demand either way.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if margin < 0:
        raise ValueError(f"margin must not be negative, got {margin}")
    ranked: list[RankedMember] = []
    for name, points in forecasts.items():
        inside = [p for p in points if start < p.ds <= end]
        if not inside:
            continue
        ranked.append(
            RankedMember(
                series=name,
                demand=float(sum(p.yhat for p in inside)),
                demand_upper=float(sum(p.yhat_upper for p in inside)),
                steps=len(inside),
            )
        )
    ranked.sort(key=lambda m: (-m.demand, -m.demand_upper, m.series))
    held = set(current)
    if not held or margin == 0:
        return ranked[:k]
    keep = [m for m in ranked if m.series in held][:k]
    outsiders = [m for m in ranked if m.series not in held]
    # top up from the best outsiders when fewer than k incumbents have a forecast
    chosen, outsiders = keep + outsiders[: k - len(keep)], outsiders[k - len(keep) :]
    while outsiders and chosen:
        weakest = min(chosen, key=lambda m: (m.demand, m.demand_upper))
        best = outsiders[0]
        if best.demand - weakest.demand <= margin * abs(weakest.demand):
            break
        chosen = [m for m in chosen if m is not weakest] + [best]
        outsiders = outsiders[1:]
    return sorted(chosen, key=lambda m: (-m.demand, -m.demand_upper, m.series))
