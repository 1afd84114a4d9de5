"""The publish job's reference band (what the regression detector judges against).

Unit tests at the estimator seam: a counting stand-in says whether it adds
recent-level terms, and the job asks it for a second forecast only when it does.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import pytest

from forecaster.jobs.publish import _reference_bands


class _Counting:
    def __init__(self, follows: bool) -> None:
        self.follows_recent_level = follows
        self.asked: list[bool] = []

    def predict(
        self, horizon: int, *, history: Any = None, level: float = 90.0, follow_level: bool = True
    ) -> pd.DataFrame:
        self.asked.append(follow_level)
        ds = pd.date_range("2026-01-01", periods=horizon, freq="5min", tz="UTC")
        centre = 10.0 if follow_level else 7.0
        return pd.DataFrame(
            {
                "ds": ds,
                "step": range(1, horizon + 1),
                "yhat": centre,
                "yhat_lower": centre - 1.0,
                "yhat_upper": centre + 1.0,
            }
        )


class _Spec:
    def __init__(self, watched: bool) -> None:
        self.watch = object() if watched else None
        self.horizon_steps = 3
        self.step = timedelta(minutes=5)


@pytest.mark.parametrize("follows", [True, False])
def test_a_second_forecast_only_for_an_estimator_with_level_terms(follows: bool) -> None:
    estimator = _Counting(follows)
    served = estimator.predict(3)
    estimator.asked.clear()
    bands = _reference_bands(estimator, _Spec(watched=True), history=None, served=served)
    if follows:
        assert estimator.asked == [False]
        assert bands == [(7.0, 6.0, 8.0)] * 3
    else:
        assert estimator.asked == []
        assert bands == [(10.0, 9.0, 11.0)] * 3  # the served band before recalibration


def test_unwatched_series_have_no_reference() -> None:
    estimator = _Counting(True)
    served = estimator.predict(3)
    estimator.asked.clear()
    assert (
        _reference_bands(estimator, _Spec(watched=False), history=None, served=served) == [None] * 3
    )
    assert estimator.asked == []


def test_an_estimator_that_does_not_say_is_asked() -> None:
    estimator = _Counting(False)
    del estimator.follows_recent_level
    served = estimator.predict(3)
    estimator.asked.clear()
    _reference_bands(estimator, _Spec(watched=True), history=None, served=served)
    assert estimator.asked == [False]
