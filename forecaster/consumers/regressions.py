"""Performance-regression detection: anomaly scores against forecast bands, and events.

The score of an observation ``y`` against the interval ``[lower, upper]`` that a
forecast published *before* ``y`` gave for its time is::

    0                                   if lower <= y <= upper
    1 + (y - upper) / (upper - lower)   above the band ("up")
    1 + (lower - y) / (upper - lower)   below the band ("down")

so it is above 1 exactly when the observation is outside the band, and one more
unit per band width of distance. A regression *event* opens when qualifying
scores (above ``min_score``, on the watched side) persist for ``persist``, and
closes when the series has been back for ``close_after``.

With a :class:`ScoreBaseline` (the service's default) the bar adapts to each
series: a 90 % band is left by some 10 % of observations of any series, and how
far they land outside differs widely (a bursty tweet count leaves it by 10 band
widths every day, a CPU gauge rarely by 2). The baseline keeps the series' own
scores of the last ``window`` (14 days) and its ``quantile`` (99.9 %: about one
5-minute step in 3.5 days) is the bar: a persistent run opens an event only once
its peak is above the bar, and a single score above ``instant_factor`` times the
bar (2x) opens one at once (an outage or a spike that is over before
``persist``). Until the baseline holds ``learning`` (1 day) of scores the bar is
infinite: a newly watched series raises nothing while its normal is learnt.

:class:`EventTracker` is the online state machine the scheduler's detection job
runs per series (its state is JSON, kept in the store between runs);
:func:`detect_history` replays a whole file through the same tracker with the
production estimator refitted on the service's schedule (``forecaster detect``).

The band is the estimator's *reference* forecast (``predict(follow_level=False)``):
the served forecast starts from the current level (its Prophet and seasonal-naive
parts carry the last hour's offset into the next steps), which would absorb a
lasting regression within the hour and hide it. The publish job stores that
reference band beside the served one for every watched series.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from forecaster.durations import format_duration

if TYPE_CHECKING:
    import pandas as pd

    from forecaster.estimators.base import Estimator

Direction = Literal["up", "down", "both"]
DIRECTIONS: tuple[str, ...] = ("up", "down", "both")
_SIDE_NAME = {1: "up", -1: "down"}


def anomaly_score(value: float, lower: float, upper: float) -> tuple[float, int]:
    """Score ``value`` against the band ``[lower, upper]``.

    Returns:
        ``(score, side)``: score 0 inside the band, above 1 outside it (distance
        to the band in band widths, plus one); side is +1 above, -1 below, 0 inside.

    Raises:
        ValueError: On non-finite inputs or ``lower > upper``.
    """
    if not (math.isfinite(value) and math.isfinite(lower) and math.isfinite(upper)):
        raise ValueError(f"non-finite input: value={value}, band=[{lower}, {upper}]")
    if lower > upper:
        raise ValueError(f"band lower {lower} is above upper {upper}")
    width = max(upper - lower, 1e-9 * max(1.0, abs(lower), abs(upper)))
    above_one = math.nextafter(1.0, math.inf)  # outside is above 1 even when tiny
    if value > upper:
        return max(above_one, 1.0 + (value - upper) / width), 1
    if value < lower:
        return max(above_one, 1.0 + (lower - value) / width), -1
    return 0.0, 0


@dataclass(frozen=True)
class RegressionEvent:
    """A persistent deviation of a series from its forecast band.

    Attributes:
        start: First qualifying observation (UTC).
        end: When the series returned (first observation of the closing quiet
            spell); ``None`` while the event is open.
        peak_score: Highest score seen during the event.
        direction: ``"up"`` or ``"down"``.
        model: The forecast model that judged the first observation (``name vN``).
        detected_at: The observation at which persistence was satisfied.
    """

    start: datetime
    end: datetime | None
    peak_score: float
    direction: str
    model: str
    detected_at: datetime


@dataclass(frozen=True)
class Transition:
    """What one observation did to the tracker: ``opened``, ``updated`` or ``closed``."""

    kind: Literal["opened", "updated", "closed"]
    event: RegressionEvent


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _parse(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value)).astimezone(UTC)


class EventTracker:
    """Online open/close logic with persistence and direction, for one series.

    Args:
        step: The series step (one observation covers one step).
        direction: Which deviations count: ``up`` (e.g. latency), ``down`` or ``both``.
        persist: How long qualifying scores must last before an event opens
            (covered time: ``n`` observations cover ``n * step``); 0 opens at once.
        min_score: Scores above this qualify (1.0: anything outside the band).
        close_after: How long the series must be back before the event closes
            (default: one step, i.e. the first observation back closes it).
        instant_factor: With an adaptive bar (``threshold`` in :meth:`update`), a
            qualifying score above this many times the bar opens an event at once.
    """

    def __init__(
        self,
        *,
        step: timedelta,
        direction: str = "both",
        persist: timedelta = timedelta(minutes=15),
        min_score: float = 1.0,
        close_after: timedelta | None = None,
        instant_factor: float = 2.0,
    ) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if step <= timedelta(0):
            raise ValueError(f"step must be positive, got {step}")
        if persist < timedelta(0):
            raise ValueError(f"persist must be >= 0, got {persist}")
        if min_score < 1.0:
            raise ValueError(f"min_score must be >= 1 (outside the band), got {min_score}")
        if not instant_factor >= 1.0:
            raise ValueError(f"instant_factor must be >= 1, got {instant_factor}")
        self.instant_factor = instant_factor
        self.step = step
        self.direction = direction
        self.persist = persist
        self.min_score = min_score
        self.close_after = close_after if close_after is not None else step
        self.last_ts: datetime | None = None
        self.run_start: datetime | None = None
        self.run_side = 0
        self.run_peak = 0.0
        self.run_model = ""
        self.open: RegressionEvent | None = None
        self.quiet_since: datetime | None = None

    def _qualifies(self, score: float, side: int) -> bool:
        if side == 0 or not score > self.min_score:
            return False
        return self.direction == "both" or _SIDE_NAME[side] == self.direction

    def update(
        self,
        ts: datetime,
        score: float,
        side: int,
        model: str = "",
        *,
        threshold: float | None = None,
    ) -> list[Transition]:
        """Feed one scored observation (in time order); returns what changed.

        Observations at or before the last one seen are ignored (idempotent replays).
        A gap longer than ``close_after`` in the data breaks a pending run.

        Args:
            threshold: The adaptive bar (:meth:`ScoreBaseline.threshold`) before this
                observation: a persistent run opens an event only once its peak is
                above it, and a score above ``instant_factor`` times it opens one at
                once; ``inf`` opens nothing (still learning). ``None``: persistence
                alone opens events.
        """
        if self.last_ts is not None and ts <= self.last_ts:
            return []
        if self.last_ts is not None and ts - self.last_ts > max(self.close_after, self.step):
            self.run_start = None
        self.last_ts = ts
        qualifies = self._qualifies(score, side)
        out: list[Transition] = []
        if self.open is not None:
            same_side = qualifies and _SIDE_NAME[side] == self.open.direction
            if same_side:
                self.quiet_since = None
                if score > self.open.peak_score:
                    self.open = replace(self.open, peak_score=score)
                    out.append(Transition("updated", self.open))
                return out
            if self.quiet_since is None:
                self.quiet_since = ts
            if ts - self.quiet_since + self.step >= self.close_after:
                closed = replace(self.open, end=self.quiet_since)
                out.append(Transition("closed", closed))
                self.open = None
                self.quiet_since = None
                self.run_start = None
            else:
                return out
        if not qualifies:
            self.run_start = None
            return out
        if self.run_start is None or side != self.run_side:
            self.run_start, self.run_side, self.run_peak, self.run_model = ts, side, score, model
        else:
            self.run_peak = max(self.run_peak, score)
        opens = ts - self.run_start + self.step >= self.persist
        if threshold is not None:
            bar = max(threshold, self.min_score)
            opens = (opens and self.run_peak > bar) or score > self.instant_factor * bar
        if opens:
            self.open = RegressionEvent(
                start=self.run_start,
                end=None,
                peak_score=self.run_peak,
                direction=_SIDE_NAME[side],
                model=self.run_model,
                detected_at=ts,
            )
            self.run_start = None
            out.append(Transition("opened", self.open))
        return out

    def stop(self) -> list[Transition]:
        """Stop judging (the series is no longer watched): an open event closes at the
        last observation judged, since nothing after it is known; a pending run is
        dropped. Returns the ``closed`` transition, if an event was open."""
        out: list[Transition] = []
        if self.open is not None:
            end = self.last_ts if self.last_ts is not None else self.open.detected_at
            out.append(Transition("closed", replace(self.open, end=end)))
        self.open = None
        self.quiet_since = None
        self.run_start = None
        return out

    # -- persistence of the online state -------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable state (the settings are not included: they come from the spec)."""
        return {
            "last_ts": _iso(self.last_ts),
            "run_start": _iso(self.run_start),
            "run_side": self.run_side,
            "run_peak": self.run_peak,
            "run_model": self.run_model,
            "quiet_since": _iso(self.quiet_since),
            "open": None
            if self.open is None
            else {
                "start": _iso(self.open.start),
                "peak_score": self.open.peak_score,
                "direction": self.open.direction,
                "model": self.open.model,
                "detected_at": _iso(self.open.detected_at),
            },
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` returned."""
        self.last_ts = _parse(state.get("last_ts"))
        self.run_start = _parse(state.get("run_start"))
        self.run_side = int(state.get("run_side", 0))
        self.run_peak = float(state.get("run_peak", 0.0))
        self.run_model = str(state.get("run_model", ""))
        self.quiet_since = _parse(state.get("quiet_since"))
        raw = state.get("open")
        if raw is None:
            self.open = None
        else:
            start = _parse(raw["start"])
            detected = _parse(raw["detected_at"])
            assert start is not None and detected is not None
            self.open = RegressionEvent(
                start=start,
                end=None,
                peak_score=float(raw["peak_score"]),
                direction=str(raw["direction"]),
                model=str(raw["model"]),
                detected_at=detected,
            )


class ScoreBaseline:
    """A series' own recent anomaly scores, whose high quantile is its adaptive bar.

    Args:
        step: The series step (``learning`` is counted in observations of a step).
        quantile: The bar is this quantile of the scores in the window.
        window: How far back scores count.
        learning: Until the window holds this much (in scored steps), the bar is
            infinite: nothing opens while the series' normal is learnt.
        refresh: Recompute the bar at most this often (default 0: before every
            observation, exact). An hour cuts the service's reads of stored scores
            to one per series per hour, at a small cost measured on NAB (pooled F1
            0.503 exact, 0.496 hourly).
    """

    def __init__(
        self,
        *,
        step: timedelta,
        quantile: float = 0.999,
        window: timedelta = timedelta(days=14),
        learning: timedelta = timedelta(days=1),
        refresh: timedelta = timedelta(0),
    ) -> None:
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"baseline quantile must be in (0, 1), got {quantile}")
        if step <= timedelta(0):
            raise ValueError(f"step must be positive, got {step}")
        if window < step:
            raise ValueError(
                f"baseline window {format_duration(window)} is shorter than one step "
                f"({format_duration(step)})"
            )
        if learning < timedelta(0) or learning > window:
            raise ValueError(
                f"learning {format_duration(learning)} must be between 0 and the window "
                f"({format_duration(window)})"
            )
        self.quantile = quantile
        self.window = window
        self.min_count = math.ceil(learning / step)
        self.refresh = refresh
        self.bar = math.inf
        self.bar_at: datetime | None = None
        self._scores: deque[tuple[datetime, float]] = deque()
        self._sorted: list[float] = []  # the same scores, sorted (quantile by index)

    def restore(self, bar: float, at: datetime) -> None:
        """Reuse a bar computed at ``at`` (e.g. kept in the detector state) until it is due."""
        self.bar, self.bar_at = bar, at

    def get_state(self) -> dict[str, Any]:
        """The kept bar (``None`` while learning) and when it was computed, as JSON."""
        return {"bar": self.bar if math.isfinite(self.bar) else None, "bar_at": _iso(self.bar_at)}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` returned (a missing bar is simply due)."""
        at = _parse(state.get("bar_at"))
        if at is not None:
            bar = state.get("bar")
            self.restore(math.inf if bar is None else float(bar), at)

    def fresh(self, now: datetime) -> bool:
        """Whether the bar at ``now`` is the kept one (no scores needed to answer)."""
        return self.bar_at is not None and now - self.bar_at < self.refresh

    def add(self, ts: datetime, score: float) -> None:
        """Record the score of the observation at ``ts`` (in time order)."""
        self._scores.append((ts, score))
        bisect.insort(self._sorted, score)

    def threshold(self, now: datetime) -> float:
        """The bar for the observation at ``now``: the quantile of the window before it.

        Recomputed when the last one is ``refresh`` old; linear interpolation between
        order statistics (numpy's default method).
        """
        if self.fresh(now):
            return self.bar
        start = now - self.window
        while self._scores and self._scores[0][0] < start:
            _, old = self._scores.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        n = len(self._sorted)
        self.bar_at = now
        if n < max(self.min_count, 1):
            self.bar = math.inf
        else:
            pos = (n - 1) * self.quantile
            low = math.floor(pos)
            high = min(low + 1, n - 1)
            self.bar = self._sorted[low] + (pos - low) * (self._sorted[high] - self._sorted[low])
        return self.bar


def judge(
    tracker: EventTracker,
    baseline: ScoreBaseline | None,
    ts: datetime,
    score: float,
    side: int,
    model: str = "",
) -> list[Transition]:
    """Feed one scored observation to ``tracker`` against ``baseline``'s bar, then record it."""
    bar = None if baseline is None else baseline.threshold(ts)
    out = tracker.update(ts, score, side, model, threshold=bar)
    if baseline is not None:
        baseline.add(ts, score)
    return out


class RefitSchedule:
    """When the estimator is refitted: a 5-field cron (the service's train schedule) or a period.

    Args:
        cron: e.g. ``"0 3 * * *"`` (UTC), as in the pipeline spec's ``schedule.train``.
        every: A fixed period instead (used by benchmarks to subsample refits).
    """

    def __init__(self, *, cron: str | None = "0 3 * * *", every: timedelta | None = None) -> None:
        if (cron is None) == (every is None):
            raise ValueError("give exactly one of cron or every")
        self.cron = cron
        self.every = every
        self._trigger: Any = None
        if cron is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                self._trigger = CronTrigger.from_crontab(cron, timezone="UTC")
            except ValueError as exc:
                raise ValueError(f"invalid refit cron {cron!r}: {exc}") from None

    def next_after(self, when: datetime) -> datetime:
        """The first refit time strictly after ``when``."""
        if self.every is not None:
            return when + self.every
        fire = self._trigger.get_next_fire_time(None, when + timedelta(seconds=1))
        return fire.astimezone(UTC)  # type: ignore[no-any-return]


#: Columns of :attr:`DetectionResult.scores` (``bar``: the adaptive bar the
#: observation was judged against; NaN without a baseline or while learning).
SCORE_COLUMNS = ("ds", "y", "yhat", "yhat_lower", "yhat_upper", "score", "side", "bar")


@dataclass
class DetectionResult:
    """Output of :func:`detect_history`."""

    events: list[RegressionEvent]
    scores: pd.DataFrame
    refits: int
    forecasts: int


def detect_history(
    history: pd.Series,
    *,
    make_estimator: Callable[[], Estimator],
    tracker: EventTracker,
    refit: RefitSchedule,
    start_at: datetime | None = None,
    min_history: timedelta = timedelta(days=1),
    train_window: timedelta = timedelta(days=28),
    publish_every: int = 1,
    level: float = 90.0,
    model_label: str = "",
    on_progress: Callable[[int], None] | None = None,
    baseline: ScoreBaseline | None = None,
) -> DetectionResult:
    """Run the online detector over a whole history, as the service would have.

    Each decision at time ``t`` uses a reference forecast (``follow_level=False``,
    as the service publishes beside the served one for watched series) made from
    observations strictly before ``t``: the estimator is fitted on the
    ``train_window`` before each refit time and, between refits, re-forecasts every
    ``publish_every`` steps from the observations available then (production
    publishes every minute, so ``publish_every=1`` is exact for steps of a minute
    or more).

    Args:
        history: Float series on a regular UTC grid (``index.freq`` set); NaN = missing.
        make_estimator: Builds an unfitted estimator for each refit.
        tracker: The event tracker (fresh).
        refit: When to refit.
        start_at: First decision time (default: ``min_history`` after the first point).
        min_history: Least history before the first decision.
        train_window: History used per fit.
        publish_every: Steps between forecasts.
        level: Interval level in percent.
        model_label: Suffix for the model name in events (e.g. the refit time).
        on_progress: Called with the number of steps handled since the last call.
        baseline: The adaptive bar (fresh); ``None`` opens events on persistence alone.

    Returns:
        Events (still-open ones with ``end=None``), per-step scores and counts.

    Raises:
        EstimatorError: An observation to judge after a gap in the data longer than
            ``train_window`` (nothing to forecast it from), naming the decision and the gap.
    """
    import numpy as np
    import pandas as pd

    from forecaster.errors import EstimatorError

    if publish_every < 1:
        raise ValueError(f"publish_every must be >= 1, got {publish_every}")
    index = history.index
    values = history.to_numpy(dtype=float)
    step = tracker.step
    first = index[0] + pd.Timedelta(min_history)
    if start_at is not None:
        first = max(first, pd.Timestamp(start_at))
    begin = int(index.searchsorted(first))
    events: list[RegressionEvent] = []
    rows: list[tuple[Any, float, float, float, float, float, int, float]] = []
    estimator: Estimator | None = None
    model = ""
    next_refit: datetime | None = None
    refits = forecasts = 0
    pos = begin
    n = len(values)
    while pos < n:
        now = index[pos].to_pydatetime()
        if estimator is None or (next_refit is not None and now >= next_refit):
            train = history.iloc[int(index.searchsorted(now - train_window)) : pos]
            if int(train.notna().sum()) >= 2:
                estimator = make_estimator().fit(train)
                refits += 1
                chosen = getattr(estimator, "chosen", None) or estimator.name
                model = f"{chosen} fit {now:%Y-%m-%dT%H:%MZ}{model_label}"
            next_refit = refit.next_after(now)
        if estimator is None:
            # nothing to fit yet: nothing can be judged before the next observation
            # (a stray early row put years of empty steps here, each tried as a fit)
            ahead = np.flatnonzero(np.isfinite(values[pos + 1 :]))
            skip = int(ahead[0]) + 1 if len(ahead) else n - pos
            if on_progress is not None:
                on_progress(skip)
            pos += skip
            continue
        block = min(publish_every, n - pos)
        # The next refit may fall inside this block: stop the block there.
        if next_refit is not None:
            limit = int(index.searchsorted(pd.Timestamp(next_refit)))
            block = max(1, min(block, limit - pos))
        if np.isfinite(values[pos : pos + block]).any():  # else nothing to judge
            recent = history.iloc[max(0, pos - int(train_window / step)) : pos]
            if not recent.notna().any():
                # the estimator's bare "history has no finite values" said neither which
                # decision nor what to change (sparse data, a short --history)
                seen = np.flatnonzero(np.isfinite(values[:pos]))
                gap = now - index[int(seen[-1])].to_pydatetime() if len(seen) else None
                raise EstimatorError(
                    f"decision at {now.isoformat()}: history has no finite values (the "
                    f"--history window of {format_duration(train_window)} before it has no "
                    "observed point: the data has a gap"
                    + ("" if gap is None else f" of {format_duration(gap)}")
                    + " there; use a --history longer than that gap)"
                )
            frame = estimator.predict(block, history=recent, level=level, follow_level=False)
            forecasts += 1
            bands = {
                pd.Timestamp(ds): (float(lo), float(hi), float(yh))
                for ds, lo, hi, yh in zip(
                    frame["ds"],
                    frame["yhat_lower"],
                    frame["yhat_upper"],
                    frame["yhat"],
                    strict=True,
                )
            }
            for j in range(pos, pos + block):
                y = values[j]
                band = bands.get(index[j])
                if band is None or not np.isfinite(y):
                    continue
                lo, hi, yh = band
                score, side = anomaly_score(float(y), min(lo, yh), max(hi, yh))
                ts = index[j].to_pydatetime()
                for change in judge(tracker, baseline, ts, score, side, model):
                    if change.kind == "closed":
                        events.append(change.event)
                bar = math.nan if baseline is None or math.isinf(baseline.bar) else baseline.bar
                rows.append((ts, float(y), yh, lo, hi, score, side, bar))
        if on_progress is not None:
            on_progress(block)
        pos += block
    if tracker.open is not None:
        events.append(tracker.open)
    scores = pd.DataFrame(rows, columns=list(SCORE_COLUMNS))
    return DetectionResult(events=events, scores=scores, refits=refits, forecasts=forecasts)


def plot_detection(
    result: DetectionResult, path: str | Path, *, title: str, min_score: float = 1.0
) -> Path:
    """Write a PNG: the series against its forecast band with the events shaded, and
    below it each observation's score against the bar (log scale above 1).

    Returns:
        The path written.
    """
    import numpy as np

    from forecaster.plotting import agg_figure, fill_band, save_figure

    frame = result.scores
    fig = agg_figure(12, 6.4)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ds = frame["ds"].to_numpy()
    if len(frame):  # matplotlib cannot draw empty columns of objects (nothing scored)
        fill_band(top, ds, frame, alpha=0.25, label="reference band (judged against)")
        top.plot(ds, frame["y"].to_numpy(dtype=float), color="black", lw=0.7, label="actual")
        bottom.plot(
            ds, frame["score"].to_numpy(dtype=float), color="tab:gray", lw=0.6, label="score"
        )
    else:
        top.text(0.5, 0.5, "no step was scored", transform=top.transAxes, ha="center")
    end = frame["ds"].max() if len(frame) else None
    for i, event in enumerate(result.events):
        for ax in (top, bottom):
            ax.axvspan(
                event.start,
                event.end or end,
                color="tab:red",
                alpha=0.2,
                lw=0,
                label="regression event" if i == 0 and ax is top else None,
            )
    bars = frame["bar"].to_numpy(dtype=float)
    if np.isfinite(bars).any():
        bottom.plot(ds, bars, color="tab:orange", lw=1.2, ls="--", label="bar")
    bottom.axhline(min_score, color="tab:green", lw=0.8, ls=":", label=f"min score {min_score:g}")
    bottom.set_yscale("symlog", linthresh=1.0)
    bottom.set_ylabel("anomaly score")
    top.set_title(title)
    if len(frame):
        top.legend(loc="upper left", fontsize=8)
    bottom.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return save_figure(fig, path)
