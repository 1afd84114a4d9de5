"""Anomaly score and the event open/close logic (persistence, direction, state round trip)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.consumers.regressions import (
    EventTracker,
    RefitSchedule,
    ScoreBaseline,
    anomaly_score,
)

T0 = datetime(2026, 1, 5, tzinfo=UTC)
STEP = timedelta(minutes=5)


def test_score_is_zero_inside_and_above_one_outside_scaled_by_width() -> None:
    assert anomaly_score(5.0, 0.0, 10.0) == (0.0, 0)
    assert anomaly_score(10.0, 0.0, 10.0) == (0.0, 0)
    assert anomaly_score(15.0, 0.0, 10.0) == (1.5, 1)
    assert anomaly_score(-20.0, 0.0, 10.0) == (3.0, -1)
    score, side = anomaly_score(10.000001, 0.0, 10.0)
    assert score > 1.0 and side == 1
    with pytest.raises(ValueError, match="above upper"):
        anomaly_score(1.0, 2.0, 1.0)


@given(
    st.floats(min_value=-1e6, max_value=1e6),
    st.floats(min_value=-1e6, max_value=1e6),
    st.floats(min_value=0.0, max_value=1e6),
)
def test_score_properties(value: float, lower: float, width: float) -> None:
    upper = lower + width
    score, side = anomaly_score(value, lower, upper)
    inside = lower <= value <= upper
    assert (score == 0.0) == inside and (side == 0) == inside
    if not inside:
        assert score > 1.0
        assert side == (1 if value > upper else -1)


def _feed(tracker: EventTracker, scores: list[float], sides: list[int] | None = None) -> list[Any]:
    out = []
    for i, score in enumerate(scores):
        side = sides[i] if sides else (1 if score > 0 else 0)
        out.extend(tracker.update(T0 + i * STEP, score, side, "m"))
    return out


def test_event_opens_after_persistence_and_closes_when_back() -> None:
    tracker = EventTracker(step=STEP, direction="up", persist=timedelta(minutes=15))
    changes = _feed(tracker, [0, 2, 3, 0, 2, 4, 3, 5, 0, 0])
    kinds = [c.kind for c in changes]
    assert kinds == ["opened", "updated", "closed"]
    opened, _, closed = changes
    assert opened.event.start == T0 + 4 * STEP  # the first 2-step burst never opened
    assert opened.event.detected_at == T0 + 6 * STEP  # three steps cover 15 minutes
    assert closed.event.end == T0 + 8 * STEP
    assert closed.event.peak_score == 5.0 and closed.event.direction == "up"


def test_direction_filters_and_zero_persistence_opens_at_once() -> None:
    tracker = EventTracker(step=STEP, direction="up", persist=timedelta(0))
    assert _feed(tracker, [3, 3, 3], sides=[-1, -1, -1]) == []
    both = EventTracker(step=STEP, direction="both", persist=timedelta(0))
    changes = _feed(both, [3, 3, 0], sides=[-1, -1, 0])
    assert [c.kind for c in changes] == ["opened", "closed"]
    assert changes[0].event.direction == "down"


def test_close_after_tolerates_short_returns() -> None:
    tracker = EventTracker(step=STEP, persist=timedelta(0), close_after=timedelta(minutes=15))
    changes = _feed(tracker, [2, 0, 0, 2, 0, 0, 0, 0])
    assert [c.kind for c in changes] == ["opened", "closed"]
    assert changes[1].event.end == T0 + 4 * STEP


def test_state_round_trip_resumes_exactly() -> None:
    scores = [0, 2, 2, 0, 2, 2, 2, 6, 2, 0, 2, 2, 2, 0]
    whole = EventTracker(step=STEP, persist=timedelta(minutes=15))
    expected = _feed(whole, scores)
    for cut in range(len(scores)):
        first = EventTracker(step=STEP, persist=timedelta(minutes=15))
        got = [
            c
            for i, s in enumerate(scores[:cut])
            for c in first.update(T0 + i * STEP, s, 1 if s else 0, "m")
        ]
        second = EventTracker(step=STEP, persist=timedelta(minutes=15))
        second.set_state(first.get_state())
        got += [
            c
            for i, s in enumerate(scores[cut:], start=cut)
            for c in second.update(T0 + i * STEP, s, 1 if s else 0, "m")
        ]
        assert got == expected
    # replays of already seen observations change nothing
    assert whole.update(T0, 9.0, 1, "m") == []


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([0.0, 1.5, 3.0]), max_size=80),
    st.integers(min_value=0, max_value=6),
)
def test_events_never_overlap_and_persist_long_enough(scores: list[float], persist: int) -> None:
    tracker = EventTracker(step=STEP, persist=persist * STEP)
    changes = _feed(tracker, scores)
    opened = [c.event for c in changes if c.kind == "opened"]
    closed = [c.event for c in changes if c.kind == "closed"]
    assert len(closed) in (len(opened), len(opened) - 1)
    for event in opened:
        assert event.detected_at - event.start + STEP >= persist * STEP
    for a, b in zip(closed, opened[1:], strict=False):
        assert a.end is not None and a.end <= b.start


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=50.0), min_size=1, max_size=200),
    st.sampled_from([0.5, 0.9, 0.999]),
)
def test_baseline_bar_is_the_quantile_of_the_window_before(
    scores: list[float], quantile: float
) -> None:
    import numpy as np

    window = 40 * STEP
    baseline = ScoreBaseline(
        step=STEP, quantile=quantile, window=window, learning=10 * STEP, refresh=timedelta(0)
    )
    for i, score in enumerate(scores):
        now = T0 + i * STEP
        earlier = [s for j, s in enumerate(scores[:i]) if T0 + j * STEP >= now - window]
        bar = baseline.threshold(now)
        if len(earlier) < 10:
            assert bar == float("inf")  # still learning
        else:
            assert bar == pytest.approx(float(np.quantile(earlier, quantile)))
        baseline.add(now, score)


def test_baseline_bar_is_kept_until_it_is_due() -> None:
    baseline = ScoreBaseline(step=STEP, learning=2 * STEP, refresh=timedelta(hours=1))
    assert baseline.threshold(T0) == float("inf") and baseline.fresh(T0 + 55 * timedelta(minutes=1))
    for i in range(1, 4):
        baseline.add(T0 + i * STEP, 5.0)
    assert baseline.threshold(T0 + 4 * STEP) == float("inf")  # learnt, but not due yet
    due = T0 + timedelta(hours=1)
    assert not baseline.fresh(due) and baseline.threshold(due) == pytest.approx(5.0)
    baseline.add(due, 50.0)
    assert baseline.threshold(due + STEP) == pytest.approx(5.0)  # kept for the hour
    # a bar kept elsewhere (the detector state) is reused until due, with no scores
    other = ScoreBaseline(step=STEP, refresh=timedelta(hours=1))
    other.restore(7.5, due)
    assert other.fresh(due + 59 * timedelta(minutes=1)) and other.threshold(due + STEP) == 7.5
    assert other.threshold(due + timedelta(hours=1)) == float("inf")  # due, no scores held
    # the kept bar round-trips through JSON state; a learning bar is kept as None
    again = ScoreBaseline(step=STEP, refresh=timedelta(hours=1))
    again.set_state(baseline.get_state())
    assert again.fresh(due + STEP) and again.threshold(due + STEP) == pytest.approx(5.0)
    assert other.get_state()["bar"] is None
    fresh_one = ScoreBaseline(step=STEP)
    fresh_one.set_state({})
    assert fresh_one.bar_at is None


def test_baseline_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="quantile"):
        ScoreBaseline(step=STEP, quantile=1.0)
    with pytest.raises(ValueError, match="learning"):
        ScoreBaseline(step=STEP, window=timedelta(days=1), learning=timedelta(days=2))
    with pytest.raises(ValueError, match="shorter than one step"):
        ScoreBaseline(step=STEP, window=timedelta(minutes=1))
    with pytest.raises(ValueError, match="instant_factor"):
        EventTracker(step=STEP, instant_factor=0.5)


def _feed_bar(tracker: EventTracker, scores: list[float], bar: float) -> list[Any]:
    out = []
    for i, score in enumerate(scores):
        side = 1 if score > 0 else 0
        out.extend(tracker.update(T0 + i * STEP, score, side, "m", threshold=bar))
    return out


def test_adaptive_bar_gates_persistent_runs_and_opens_on_extreme_scores() -> None:
    persist = 3 * STEP
    # a persistent run whose peak stays under the bar opens nothing ...
    quiet = EventTracker(step=STEP, persist=persist, min_score=2.0)
    assert _feed_bar(quiet, [0, 3, 4, 3.5, 4, 0], bar=5.0) == []
    # ... the same run opens once its peak passes the bar, back-dated to the run's start
    loud = EventTracker(step=STEP, persist=persist, min_score=2.0)
    (opened,) = _feed_bar(loud, [0, 3, 4, 6, 4, 4], bar=5.0)
    assert opened.kind == "opened" and opened.event.start == T0 + STEP
    assert opened.event.detected_at == T0 + 3 * STEP
    # a single score above instant_factor x bar opens at once, before persistence
    spike = EventTracker(step=STEP, persist=persist, min_score=2.0, instant_factor=2.0)
    at_once, closed = _feed_bar(spike, [0, 11, 0], bar=5.0)
    assert (at_once.kind, closed.kind) == ("opened", "closed")
    assert at_once.event.start == at_once.event.detected_at == T0 + STEP
    assert _feed_bar(EventTracker(step=STEP, persist=persist), [0, 9.9, 0], bar=5.0) == []
    # the bar never drops below min_score, and an infinite bar (learning) opens nothing
    low = EventTracker(step=STEP, persist=persist, min_score=2.0)
    assert _feed_bar(low, [1.5, 1.8, 1.9, 1.7], bar=1.0) == []
    learning = EventTracker(step=STEP, persist=persist)
    assert _feed_bar(learning, [50.0] * 10, bar=float("inf")) == []
    # without a bar, persistence alone opens (the legacy rule)
    legacy = EventTracker(step=STEP, persist=persist, min_score=2.0)
    assert [c.kind for c in _feed(legacy, [0, 3, 3, 3])] == ["opened"]


def test_refit_schedule_follows_cron() -> None:
    daily = RefitSchedule(cron="0 3 * * *")
    assert daily.next_after(T0) == T0.replace(hour=3)
    assert daily.next_after(T0.replace(hour=3)) == T0.replace(hour=3) + timedelta(days=1)
    weekly = RefitSchedule(cron=None, every=timedelta(days=7))
    assert weekly.next_after(T0) == T0 + timedelta(days=7)
    with pytest.raises(ValueError, match="invalid refit cron"):
        RefitSchedule(cron="every day")


class _LevelFollower:
    """A fake estimator whose served forecast follows the last observation and whose
    reference (``follow_level=False``) stays at the level it was fitted on."""

    name = "fake"

    def __init__(self) -> None:
        self.asked: list[bool] = []
        self.level = 0.0

    def fit(self, history: Any) -> _LevelFollower:
        self.level = float(history.dropna().mean())
        return self

    def predict(
        self, horizon: int, *, history: Any = None, level: float = 90.0, follow_level: bool = True
    ) -> Any:
        import pandas as pd

        self.asked.append(follow_level)
        centre = float(history.iloc[-1]) if follow_level else self.level
        stamps = pd.date_range(history.index[-1] + STEP, periods=horizon, freq=STEP)
        return pd.DataFrame(
            {
                "ds": stamps,
                "step": range(1, horizon + 1),
                "yhat": centre,
                "yhat_lower": centre - 1.0,
                "yhat_upper": centre + 1.0,
            }
        )


def test_detect_history_judges_against_the_reference_forecast() -> None:
    """A lasting shift is an event against the reference; the served forecast, which
    follows the last observation, would have absorbed it after one step."""
    import pandas as pd

    from forecaster.consumers.regressions import detect_history

    index = pd.date_range(T0, periods=48, freq=STEP)
    values = [10.0] * 24 + [30.0] * 24  # latency doubles and stays
    history = pd.Series(values, index=index, dtype=float)
    history.index.freq = STEP
    fake = _LevelFollower()
    result = detect_history(
        history,
        make_estimator=lambda: fake,
        tracker=EventTracker(step=STEP, direction="up", persist=timedelta(minutes=15)),
        refit=RefitSchedule(cron=None, every=timedelta(days=1)),
        min_history=timedelta(hours=2),
    )
    assert fake.asked and not any(fake.asked)  # every forecast asked for the reference
    (event,) = result.events
    assert event.start == index[24] and event.end is None


def test_detect_history_steps_over_empty_stretches_without_fitting_or_forecasting() -> None:
    """A stray row years before the data put a million empty steps in front of it, each
    tried as a fit (minutes of nothing); now the run jumps to the data, skips
    forecasts for blocks without observations, and judges the data the same."""
    import numpy as np
    import pandas as pd

    from forecaster.consumers.regressions import detect_history
    from forecaster.estimators.naive import LastValue

    index = pd.date_range(T0, periods=600, freq=STEP)
    values = 10.0 + np.sin(np.arange(600) / 12.0)
    values[200:240] = np.nan  # an outage inside the data
    dense = pd.Series(values, index=index)
    dense.index.freq = STEP
    stray = pd.concat([pd.Series([5.0], index=[T0 - timedelta(days=3 * 365)]), dense])
    stray = stray.resample(STEP).mean()

    def run(history: pd.Series) -> Any:
        return detect_history(
            history,
            make_estimator=LastValue,
            tracker=EventTracker(step=STEP, direction="up", persist=timedelta(minutes=15)),
            refit=RefitSchedule(cron=None, every=timedelta(hours=6)),
            min_history=timedelta(hours=2),
            start_at=index[24].to_pydatetime(),
        )

    plain, padded = run(dense), run(stray)
    assert len(stray) > 300_000 and padded.refits == plain.refits
    assert padded.forecasts == plain.forecasts < 600 - 24  # none for the outage's steps
    pd.testing.assert_frame_equal(padded.scores, plain.scores)
    starts = [e.start for e in padded.events]
    assert starts and starts == [e.start for e in plain.events]
