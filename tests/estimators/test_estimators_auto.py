"""AutoEstimator: cold start, selection by backtest, calibration, state."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pytest

from forecaster.errors import EstimatorError
from forecaster.estimators.auto import AutoEstimator
from forecaster.estimators.base import dump_estimator, load_estimator

TAXI = "realKnownCause/nyc_taxi.csv"


@pytest.fixture(scope="module")
def fitted() -> tuple[AutoEstimator, pd.Series]:
    from conftest import load_nab

    history = load_nab(TAXI, days=16, freq="1h")
    history.iloc[100:106] = 0.0  # an outage to be cleaned
    return AutoEstimator(horizon=12).fit(history), history


def test_cold_start_uses_seasonal_naive(make_series):
    auto = AutoEstimator(horizon=12).fit(make_series(days=1.2))
    assert auto.chosen == "seasonal_naive"
    assert any(
        f.startswith("cold_start: history 1.2 days < 2 days, using seasonal_naive")
        for f in auto.flags
    )
    very_short = AutoEstimator(horizon=12).fit(make_series(days=0.5))
    assert very_short.chosen == "last_value"


def test_selection_exposes_scores_and_backtest(fitted, assert_forecast):
    auto, history = fitted
    assert auto.chosen is not None
    assert auto.chosen in auto.scores
    assert {"seasonal_naive", "prophet", "lightgbm"} <= set(auto.scores)
    for score in auto.scores.values():
        assert set(score) >= {"mase", "smape", "coverage", "width", "fit_seconds"}
    best = min(auto.scores, key=lambda k: auto.scores[k]["mase_median"])
    assert auto.chosen == best
    frame = auto.selection_backtest
    assert frame is not None
    assert {"origin", "ds", "step", "yhat", "yhat_lower", "yhat_upper", "model", "y"} <= set(
        frame.columns
    )
    # Selection is out of sample: every inner origin lies inside the fit history.
    assert frame["ds"].max() <= history.index[-1]
    assert any(f.startswith("outages") for f in auto.flags)
    assert_forecast(auto.predict(12), 12, last=history.index[-1])


def test_predict_from_newer_history_without_refit(fitted):
    auto, history = fitted
    members = list(auto.members_)
    newer = history.iloc[:-3]
    forecast = auto.predict(12, history=newer)
    assert auto.members_ == members
    assert forecast["ds"].iloc[0] == history.index[-3]


def test_interval_uses_conformal_calibration(fitted):
    auto, _ = fitted
    assert auto.calibration_ is not None
    wide = auto.predict(12, level=99.0)
    narrow = auto.predict(12, level=50.0)
    assert (
        (wide["yhat_upper"] - wide["yhat_lower"]) >= (narrow["yhat_upper"] - narrow["yhat_lower"])
    ).all()


def test_state_round_trip(fitted):
    auto, history = fitted
    document = json.loads(json.dumps(dump_estimator(auto)))
    loaded = load_estimator(document)
    assert isinstance(loaded, AutoEstimator)
    assert loaded.chosen == auto.chosen
    pd.testing.assert_frame_equal(
        loaded.predict(12, history=history), auto.predict(12, history=history)
    )


def test_selection_uses_only_the_fit_history(nab_slice):
    history = nab_slice(TAXI, days=6, freq="1h")
    candidates = ("seasonal_naive", "last_value")
    auto = AutoEstimator(candidates=candidates, horizon=6).fit(history.iloc[:-24])
    assert auto.selection_backtest is not None
    assert auto.selection_backtest["ds"].max() == history.index[-25]
    altered = history.copy()
    altered.iloc[-24:] *= 10.0
    again = AutoEstimator(candidates=candidates, horizon=6).fit(altered.iloc[:-24])
    for name, score in auto.scores.items():
        assert again.scores[name]["mase"] == score["mase"]
        assert again.scores[name]["coverage"] == score["coverage"]


def test_unknown_candidate_rejected():
    with pytest.raises(EstimatorError, match="unknown auto candidate"):
        AutoEstimator(candidates=("arima",))


def test_history_window_is_respected(make_series):
    auto = AutoEstimator(
        candidates=("seasonal_naive",), horizon=12, history_window=timedelta(days=3)
    ).fit(make_series(days=8))
    assert auto.selection_backtest is not None
    assert auto.selection_backtest["origin"].min() >= make_series(days=8).index[-1] - pd.Timedelta(
        days=3
    )
