"""LightGBM estimator: contract, conditioning on new data without refit, state, threads."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forecaster.errors import EstimatorError
from forecaster.estimators.base import dump_estimator, load_estimator
from forecaster.estimators.gbm import FEATURES, LightGBMEstimator, build_features

ELB = "realAWSCloudwatch/elb_request_count_8c0756.csv"


@pytest.fixture(scope="module")
def fitted() -> tuple[LightGBMEstimator, pd.Series]:
    from conftest import load_nab

    history = load_nab("realTweets/Twitter_volume_AMZN.csv", days=9)
    estimator = LightGBMEstimator(max_horizon=48, n_pairs=6000, n_estimators=60).fit(history)
    return estimator, history


def test_forecast_contract(fitted, assert_forecast):
    estimator, history = fitted
    forecast = estimator.predict(60)
    assert_forecast(forecast, 60, last=history.index[-1])
    assert (forecast["yhat_lower"] >= 0).all()


def test_beats_last_value_on_held_out_day(nab_slice):
    series = nab_slice("realKnownCause/nyc_taxi.csv", days=22, freq="30min")
    history, future = series.iloc[:-48], series.iloc[-48:].to_numpy()
    forecast = LightGBMEstimator(max_horizon=48, n_estimators=120).fit(history).predict(48)
    mae = np.abs(forecast["yhat"].to_numpy() - future).mean()
    naive_mae = np.abs(history.iloc[-1] - future).mean()
    assert mae < 0.7 * naive_mae


def test_conditions_on_newer_history_without_refit(fitted):
    estimator, history = fitted
    booster = estimator.booster_
    base = estimator.predict(12, history=history)
    doubled = estimator.predict(12, history=history * 2.0)
    assert estimator.booster_ is booster
    # Scale-free target: a series twice as large gets a forecast twice as large.
    np.testing.assert_allclose(doubled["yhat"], 2.0 * base["yhat"], rtol=1e-6)
    later = estimator.predict(12, history=history.iloc[:-24])
    assert later["ds"].iloc[0] == history.index[-24]


def test_features_never_read_after_the_anchor():
    rng = np.random.default_rng(3)
    values = rng.random(5000)
    anchors = np.array([3000, 3500, 4000], dtype=np.int64)
    leads = np.array([1, 150, 288], dtype=np.int64)
    x1, _ = build_features(values, 0.0, 300.0, anchors, leads, fallback_level=1.0)
    changed = values.copy()
    changed[4001:] = 1e6
    x2, _ = build_features(changed, 0.0, 300.0, anchors, leads, fallback_level=1.0)
    np.testing.assert_array_equal(np.isnan(x1), np.isnan(x2))
    np.testing.assert_allclose(np.nan_to_num(x1), np.nan_to_num(x2))
    assert x1.shape == (3, len(FEATURES))


def test_state_round_trip_uses_model_text(fitted):
    estimator, history = fitted
    document = json.loads(json.dumps(dump_estimator(estimator)))
    assert document["state"]["booster"].startswith("tree")
    loaded = load_estimator(document)
    pd.testing.assert_frame_equal(loaded.predict(30), estimator.predict(30))
    pd.testing.assert_frame_equal(
        loaded.predict(30, history=history.iloc[:-5]),
        estimator.predict(30, history=history.iloc[:-5]),
    )


def test_threads_are_explicit():
    assert LightGBMEstimator()._params()["num_threads"] == 1
    assert LightGBMEstimator(n_jobs=2)._params()["num_threads"] == 2


def test_too_short_history_raises(nab_slice):
    with pytest.raises(EstimatorError, match="at least 12 points"):
        LightGBMEstimator().fit(nab_slice(ELB, days=0.02))


def test_level_window_follows_the_horizon(fitted, nab_slice):
    estimator, _ = fitted
    assert estimator.level_window_ == 48  # 4 hours of 5-minute steps
    history = nab_slice(ELB, days=4)
    short = LightGBMEstimator(max_horizon=3, n_pairs=2000, n_estimators=20).fit(history)
    assert short.level_window_ == 12  # never shorter than an hour
    long = LightGBMEstimator(max_horizon=600, n_pairs=2000, n_estimators=20).fit(history)
    assert long.level_window_ == 288  # never longer than a day


def test_hour_ahead_model_follows_a_sudden_collapse(nab_slice):
    """A short-horizon model forecasts relative to the last hour: when load collapses
    (nyc_taxi's blizzard), the next hour is forecast near the new level, not the usual one."""
    series = nab_slice("realKnownCause/nyc_taxi.csv", days=22, freq="30min")
    estimator = LightGBMEstimator(max_horizon=2, n_estimators=120).fit(series.iloc[:-48])
    history = series.iloc[:-24].copy()
    usual = estimator.predict(2, history=history)["yhat"].to_numpy()
    history.iloc[-4:] *= 0.1  # the last two hours at a tenth of the usual load
    collapsed = estimator.predict(2, history=history)["yhat"].to_numpy()
    assert collapsed.mean() < 0.3 * usual.mean()


def test_model_saved_with_the_first_feature_set_still_loads(fitted):
    import lightgbm as lgb

    from forecaster.estimators.gbm import LEGACY_FEATURES

    estimator, history = fitted
    state = json.loads(json.dumps(estimator.get_state()))
    rng = np.random.default_rng(0)
    x = rng.random((500, LEGACY_FEATURES))
    legacy = lgb.train(
        {"objective": "l1", "verbose": -1, "num_threads": 1},
        lgb.Dataset(x, label=1.0 + x[:, 3]),
        num_boost_round=5,
    )
    state["booster"] = legacy.model_to_string()
    del state["level_window"]  # saved before the level followed the horizon
    loaded = LightGBMEstimator.from_state(state)
    assert loaded.level_window_ is None
    forecast = loaded.predict(24, history=history)
    assert np.isfinite(forecast["yhat"]).all()

    wrong = lgb.train(
        {"objective": "l1", "verbose": -1, "num_threads": 1},
        lgb.Dataset(x[:, :5], label=x[:, 3]),
        num_boost_round=2,
    )
    state["booster"] = wrong.model_to_string()
    with pytest.raises(EstimatorError, match="5 features"):
        LightGBMEstimator.from_state(state)
