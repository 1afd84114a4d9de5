"""``answer`` feeds the stateful planner its lead-time forecasts and observations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from forecaster.api.view import CachedForecast, ForecastView, ViewState
from forecaster.consumers.planner import ReplicaPlanner, ScalingPolicy
from forecaster.consumers.scaling import ScalingQuery, answer
from forecaster.store.repository import ForecastPoint, PublishedForecast

STEP = 300


@dataclass
class FakeView:
    """Just what ``answer`` reads: the state, one cached forecast and the window."""

    cached: CachedForecast | None = None
    state: ViewState = field(default_factory=ViewState)
    window = staticmethod(ForecastView.window)
    window_ahead = staticmethod(ForecastView.window_ahead)

    def forecast(self, name: str) -> CachedForecast:
        assert self.cached is not None
        return self.cached


@dataclass
class FakeObservations:
    latest: tuple[float, float] | None = None

    def get(self, series: str) -> tuple[float, float] | None:
        return self.latest


def publish(view: FakeView, origin: float, yhat: float) -> None:
    """A forecast of ``yhat`` for the 12 steps after ``origin`` (interval +-10%)."""
    at = datetime.fromtimestamp(origin, UTC)
    points = [
        ForecastPoint(
            step=i,
            ds=at + timedelta(seconds=STEP * i),
            yhat=yhat,
            yhat_lower=0.9 * yhat,
            yhat_upper=1.1 * yhat,
        )
        for i in range(1, 13)
    ]
    forecast = PublishedForecast(
        publication_id=1, series="rps", generated_at=at, origin=at, step_seconds=STEP,
        level=90.0, model_name="m", model_version="1", run_id="r", points=points,
    )  # fmt: skip
    view.cached = CachedForecast.of(forecast)
    view.state = ViewState(refreshed_at=at)


@pytest.mark.parametrize("factor", [0.0, 1.0])
def test_answer_scores_lead_time_forecasts_for_the_error_headroom(factor: float) -> None:
    policy = ScalingPolicy(target_per_replica=10, error_headroom=factor)
    query = ScalingQuery(series="rps", policy=policy, lead_seconds=2 * STEP, quantile=0.5)
    planner = ReplicaPlanner(policy)
    view, observations = FakeView(), FakeObservations()
    start = 1_700_000_100.0 - 1_700_000_100.0 % STEP
    decision = None
    for i in range(8):
        now = start + STEP * i
        observations.latest = (now, 100.0)  # the forecast of 50 keeps missing by 50
        publish(view, now, 50.0)
        for poll in range(0, STEP, 30):  # KEDA polls every 30 s between observations
            decision = answer(
                view,  # type: ignore[arg-type]
                query,
                now=now + poll,
                stale_after_seconds=3600,
                max_view_age_seconds=3600,
                observations=observations,  # type: ignore[arg-type]
                planner=planner,
            ).decision
    assert decision is not None
    # forecasts were made for the ends of the lead windows and then observed: one
    # error per observation, however many polls came in between
    assert len(planner.errors) == 6
    assert planner.errors.mean_absolute_error() == pytest.approx(50.0)
    assert decision.headroom == pytest.approx(50.0 * factor)
    assert decision.load == pytest.approx(max(50.0 + 50.0 * factor, 100.0))
    if factor:
        assert "includes headroom 50" in decision.reason
