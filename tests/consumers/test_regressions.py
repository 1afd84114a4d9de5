"""Anomaly score and the event open/close logic (persistence, direction, state round trip)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.consumers.regressions import EventTracker, RefitSchedule, anomaly_score

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


def test_refit_schedule_follows_cron() -> None:
    daily = RefitSchedule(cron="0 3 * * *")
    assert daily.next_after(T0) == T0.replace(hour=3)
    assert daily.next_after(T0.replace(hour=3)) == T0.replace(hour=3) + timedelta(days=1)
    weekly = RefitSchedule(cron=None, every=timedelta(days=7))
    assert weekly.next_after(T0) == T0 + timedelta(days=7)
    with pytest.raises(ValueError, match="invalid refit cron"):
        RefitSchedule(cron="every day")
