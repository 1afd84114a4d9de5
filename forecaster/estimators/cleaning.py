"""Cleaning a history before training: outages, isolated spikes and counter resets.

What is cleaned (and what is not):

* **Outages** -- runs of zeros (at least ``min_outage_steps`` long) at times of day
  when the series normally carries traffic become missing (NaN). Runs that reach the
  end of the history are left alone: from the past alone they cannot be told apart
  from a real drop in load.
* **Isolated spikes** -- bursts of at most ``max_spike_duration`` (one hour) far from a
  centred rolling median (``spike_threshold`` robust deviations) are replaced by that
  median. A real level shift is sustained, so the centred median follows it and it
  is never flagged. The last few points are never touched for the same reason.
* **Counter resets** -- when the series is a cumulative counter (almost always
  non-decreasing) drops are undone, as Prometheus' ``increase()`` does. In a
  non-negative rate series, a handful of negative glitches become missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from forecaster.estimators import DAY, check_history, history_step, steps_in

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    FloatArray = npt.NDArray[np.float64]
    BoolArray = npt.NDArray[np.bool_]


@dataclass
class CleanedHistory:
    """Result of :func:`clean_history`.

    Attributes:
        series: The cleaned history (same index as the input).
        outage_points: Points turned into NaN because they were an outage.
        spike_points: Points replaced by the local median.
        counter_resets: Resets undone (cumulative counters only).
        negative_points: Negative glitches in a non-negative series turned into NaN.
        flags: Human-readable notes on what was changed.
    """

    series: pd.Series
    outage_points: int = 0
    spike_points: int = 0
    counter_resets: int = 0
    negative_points: int = 0
    flags: list[str] = field(default_factory=list)


def _runs(mask: BoolArray) -> list[tuple[int, int]]:
    """Half-open ``[start, stop)`` index ranges where ``mask`` is True."""
    import numpy as np

    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _undo_counter_resets(values: FloatArray) -> tuple[FloatArray, int]:
    import numpy as np

    finite = values[np.isfinite(values)]
    if len(finite) < 20:
        return values, 0
    diffs = np.diff(finite)
    if np.mean(diffs >= 0) < 0.98 or not (diffs < 0).any():
        return values, 0
    out = values.copy()
    offset = 0.0
    previous = np.nan
    resets = 0
    for i, v in enumerate(values):
        if not np.isfinite(v):
            continue
        if np.isfinite(previous) and v < previous:
            offset += previous
            resets += 1
        out[i] = v + offset
        previous = v
    return out, resets


def _daily_profile(values: FloatArray, season: int) -> FloatArray:
    """Median of each slot of the day over all days (NaN where never observed)."""
    import numpy as np

    n = len(values)
    days = -(-n // season)
    padded = np.full(days * season, np.nan)
    padded[:n] = values
    grid = padded.reshape(days, season)
    counts = np.isfinite(grid).sum(axis=0)
    filled = np.where(np.isfinite(grid), grid, np.inf)
    ordered = np.sort(filled, axis=0)
    medians = np.full(season, np.nan)
    for slot in range(season):
        c = int(counts[slot])
        if c:
            medians[slot] = float(np.median(ordered[:c, slot]))
    return np.resize(medians, n)


def _rolling_median(values: FloatArray, window: int) -> FloatArray:
    import pandas as pd

    result = (
        pd.Series(values).rolling(window, center=True, min_periods=1).median().to_numpy(dtype=float)
    )
    return result


def clean_history(
    history: pd.Series,
    *,
    min_outage_steps: int = 3,
    max_spike_duration: timedelta = timedelta(hours=1),
    spike_threshold: float = 8.0,
    spikes: bool = True,
) -> CleanedHistory:
    """Clean ``history`` (see the module docstring for the rules).

    Args:
        history: Float series on a regular UTC grid; NaN = missing.
        min_outage_steps: Shortest run of zeros treated as an outage.
        max_spike_duration: Longest run of outlying points treated as a spike (a
            burst); the centred median window is twice as long plus one step, so a
            sustained change (a level shift) always dominates it and is kept.
        spike_threshold: Outlier threshold in robust (MAD-based) deviations.
        spikes: Replace isolated spikes (False keeps them: a model that forecasts
            from the last hour must see how bursts rise and decay).

    Returns:
        The cleaned series and counts of what was changed.
    """
    import numpy as np
    import pandas as pd

    series = check_history(history)
    values = series.to_numpy(dtype=float).copy()
    result = CleanedHistory(series=series)
    n = len(values)
    if n < 4:
        return result
    step = history_step(series)
    day = steps_in(DAY, step)

    values, result.counter_resets = _undo_counter_resets(values)
    if result.counter_resets:
        result.flags.append(f"counter_resets: undid {result.counter_resets} counter reset(s)")

    finite = np.isfinite(values)
    negative = finite & (values < 0)
    if negative.any() and negative.sum() <= 0.01 * finite.sum():
        values[negative] = np.nan
        result.negative_points = int(negative.sum())
        result.flags.append(f"negatives: {result.negative_points} negative glitch(es) dropped")

    result.outage_points = _mark_outages(values, day, min_outage_steps)
    if result.outage_points:
        result.flags.append(
            f"outages: {result.outage_points} zero point(s) "
            f"({timedelta(seconds=result.outage_points * step.total_seconds())}) treated as missing"
        )

    max_spike_steps = steps_in(max_spike_duration, step)
    if spikes:
        result.spike_points = _replace_spikes(
            values, 2 * max_spike_steps + 1, max_spike_steps, spike_threshold, day
        )
    if result.spike_points:
        result.flags.append(f"spikes: {result.spike_points} isolated spike point(s) replaced")

    result.series = pd.Series(values, index=series.index, name=series.name)
    return result


def _mark_outages(values: FloatArray, day: int, min_steps: int) -> int:
    """Set zero runs where traffic is expected to NaN (in place); return how many."""
    import numpy as np

    finite = np.isfinite(values)
    zero = finite & (values == 0.0)
    runs = [(a, b) for a, b in _runs(zero) if b - a >= min_steps and b < len(values)]
    if not runs:
        return 0
    positive = values[finite & (values > 0)]
    if len(positive) == 0:
        return 0
    floor = 0.2 * float(np.median(positive))
    if len(values) >= 2 * day:
        # Median of the same time of day over all days, zeros included: a slot that is
        # zero on most days (a quiet night) is not expected to carry traffic.
        expected = _daily_profile(values, day)
    elif np.mean(zero[finite]) < 0.05:
        expected = np.full(len(values), float(np.median(positive)))
    else:
        return 0
    expected = np.where(np.isfinite(expected), expected, 0.0)
    marked = 0
    for a, b in runs:
        if float(np.mean(expected[a:b])) > floor:
            values[a:b] = np.nan
            marked += b - a
    return marked


def _replace_spikes(
    values: FloatArray, window: int, max_steps: int, threshold: float, day: int
) -> int:
    """Replace isolated outliers by the centred rolling median (in place); return how many."""
    import numpy as np
    import pandas as pd

    n = len(values)
    if n < window + 2:
        return 0
    median = _rolling_median(values, window)
    resid = values - median
    absres = pd.Series(np.abs(resid))
    # over a day, or the spike window when a day holds fewer steps (a 12-hour step)
    local = absres.rolling(min(max(day, window), n), center=True, min_periods=window).median()
    scale = 1.4826 * local.to_numpy(dtype=float)
    finite_abs = np.abs(resid[np.isfinite(resid)])
    global_scale = 1.4826 * float(np.median(finite_abs)) if len(finite_abs) else 0.0
    typical = float(np.nanmedian(np.abs(values))) if np.isfinite(values).any() else 0.0
    floor = max(global_scale * 0.5, 1e-3 * typical, 1e-9)
    scale = np.where(np.isfinite(scale), np.maximum(scale, floor), max(global_scale, floor))
    outlier = np.isfinite(resid) & (np.abs(resid) > threshold * scale)
    protect = window // 2 + 1
    outlier[n - protect :] = False
    replaced = 0
    for a, b in _runs(outlier):
        if b - a > max_steps:
            continue
        before = values[max(0, a - max_steps) : a]
        after = values[b : b + max_steps]
        before = before[np.isfinite(before)]
        after = after[np.isfinite(after)]
        if len(before) == 0 or len(after) == 0:
            continue
        left, right = float(np.median(before)), float(np.median(after))
        run = values[a:b]
        excursion = abs(float(np.nanmean(run)) - (left + right) / 2.0)
        # A spike leaves and returns to the same level; a level shift does not.
        if abs(left - right) <= 0.5 * excursion:
            values[a:b] = median[a:b]
            replaced += b - a
    return replaced
