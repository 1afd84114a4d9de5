"""SeasonalNaive and LastValue: season defaults, fallbacks, conditioning, state."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from forecaster.errors import EstimatorError
from forecaster.estimators.base import dump_estimator, load_estimator
from forecaster.estimators.naive import LastValue, SeasonalNaive


def test_season_defaults_to_one_day_of_the_step(make_series):
    five_min = SeasonalNaive().fit(make_series(days=3))
    hourly = SeasonalNaive().fit(make_series(days=3, step=timedelta(hours=1)))
    weekly = SeasonalNaive(period=timedelta(days=7)).fit(make_series(days=15))
    assert five_min.season_steps_ == 288
    assert hourly.season_steps_ == 24
    assert weekly.season_steps_ == 2016


def test_repeats_the_previous_day(make_series, assert_forecast):
    history = make_series(days=3)
    forecast = SeasonalNaive().fit(history).predict(300)
    assert_forecast(forecast, 300, last=history.index[-1])
    last_day = history.to_numpy()[-288:]
    np.testing.assert_allclose(forecast["yhat"].to_numpy()[:288], last_day)
    np.testing.assert_allclose(forecast["yhat"].to_numpy()[288:], last_day[:12])
    assert forecast["ds"].iloc[0] == history.index[-1] + pd.Timedelta(minutes=5)


def test_falls_back_to_last_value_when_shorter_than_a_season(make_series):
    history = make_series(days=0.5)
    estimator = SeasonalNaive().fit(history)
    assert estimator.fallback
    forecast = estimator.predict(10)
    assert (forecast["yhat"] == history.iloc[-1]).all()


def test_missing_value_uses_an_earlier_season(make_series):
    history = make_series(days=3)
    history.iloc[-288] = np.nan
    forecast = SeasonalNaive().fit(history).predict(1)
    assert forecast["yhat"].iloc[0] == pytest.approx(history.iloc[-576])


def test_predict_with_newer_history_does_not_refit(make_series):
    history = make_series(days=4)
    estimator = SeasonalNaive().fit(history.iloc[:-100])
    newer = history * 3.0
    forecast = estimator.predict(5, history=newer)
    assert forecast["ds"].iloc[0] == history.index[-1] + pd.Timedelta(minutes=5)
    np.testing.assert_allclose(forecast["yhat"], newer.to_numpy()[-288 : -288 + 5])


def test_intervals_cover_most_of_next_day_on_a_real_trace(nab_slice):
    series = nab_slice("realKnownCause/nyc_taxi.csv", days=15, freq="30min")
    history, future = series.iloc[:-48], series.iloc[-48:]
    forecast = SeasonalNaive().fit(history).predict(48)
    inside = (future.to_numpy() >= forecast["yhat_lower"]) & (
        future.to_numpy() <= forecast["yhat_upper"]
    )
    assert inside.mean() >= 0.75


def test_clips_at_zero_for_nonnegative_history(make_series):
    history = make_series(days=2) * 0 + 1.0
    history.iloc[-1] = 0.0
    forecast = LastValue().fit(history).predict(20)
    assert (forecast[["yhat", "yhat_lower"]] >= 0).all().all()


def test_last_value_interval_widens_with_the_lead(nab_slice, assert_forecast):
    history = nab_slice("realAWSCloudwatch/elb_request_count_8c0756.csv", days=3)
    forecast = LastValue().fit(history).predict(288)
    assert_forecast(forecast, 288, last=history.index[-1])
    width = (forecast["yhat_upper"] - forecast["yhat_lower"]).to_numpy()
    assert width[-1] > width[0]
    assert (forecast["yhat"] == history.dropna().iloc[-1]).all()


@pytest.mark.parametrize("cls", [SeasonalNaive, LastValue])
def test_state_round_trip(cls, make_series):
    history = make_series(days=3)
    estimator = cls().fit(history)
    document = json.loads(json.dumps(dump_estimator(estimator)))
    loaded = load_estimator(document)
    pd.testing.assert_frame_equal(loaded.predict(50), estimator.predict(50))


def test_unfitted_and_bad_state_raise():
    with pytest.raises(EstimatorError, match="not fitted"):
        SeasonalNaive().predict(3)
    with pytest.raises(EstimatorError, match="invalid seasonal_naive state"):
        SeasonalNaive.from_state({"season": 3})


def _periodic(make_series) -> pd.Series:
    """Three identical days (every residual against the day before is 0)."""
    history = make_series(days=3)
    repeated = pd.concat([history.iloc[-288:]] * 3)
    repeated.index = history.index
    return repeated


def test_recent_level_correction_follows_a_level_shift(make_series, assert_forecast):
    history = _periodic(make_series)
    shifted = history.copy()
    shifted.iloc[-12:] += 40.0  # the last hour is 40 above the day before
    plain = SeasonalNaive().fit(history).predict(36, history=shifted)
    corrected = SeasonalNaive(recent_bias_halflife=12).fit(history).predict(36, history=shifted)
    assert_forecast(corrected, 36, last=history.index[-1])
    offset = (corrected["yhat"] - plain["yhat"]).to_numpy()
    expected = 40.0 * 0.5 ** (np.arange(1, 37) / 12)
    np.testing.assert_allclose(offset, expected)
    # the interval moves with the point forecast
    np.testing.assert_allclose(corrected["yhat_upper"] - plain["yhat_upper"], expected)


def test_recent_level_correction_is_nothing_without_a_shift(make_series):
    repeated = _periodic(make_series)
    plain = SeasonalNaive().fit(repeated).predict(24)
    corrected = SeasonalNaive(recent_bias_halflife=12).fit(repeated).predict(24)
    pd.testing.assert_frame_equal(plain, corrected)


def test_recent_level_correction_ignores_missing_values_and_short_histories(make_series):
    history = _periodic(make_series)
    history.iloc[-12:-1] = np.nan
    history.iloc[-1] += 24.0  # one known residual of 24
    plain = SeasonalNaive().fit(history).predict(1)
    corrected = SeasonalNaive(recent_bias_halflife=1).fit(history).predict(1)
    assert corrected["yhat"].iloc[0] - plain["yhat"].iloc[0] == pytest.approx(12.0)
    # under a season of history: the last-value fallback, uncorrected
    short = make_series(days=0.5)
    fallback = SeasonalNaive(recent_bias_halflife=12).fit(short).predict(5)
    assert (fallback["yhat"] == short.iloc[-1]).all()


def test_recent_level_correction_survives_the_state(make_series):
    history = make_series(days=3)
    history.iloc[-12:] *= 1.5
    estimator = SeasonalNaive(recent_bias_halflife=6).fit(history)
    document = json.loads(json.dumps(dump_estimator(estimator)))
    loaded = load_estimator(document)
    assert loaded.recent_bias_halflife == 6.0
    pd.testing.assert_frame_equal(loaded.predict(20), estimator.predict(20))
    # states saved before the option existed load without it
    del document["state"]["recent_bias_halflife"]
    assert load_estimator(document).recent_bias_halflife is None


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "12"])
def test_recent_level_correction_rejects_a_bad_halflife(bad):
    with pytest.raises(EstimatorError, match="recent_bias_halflife must be a positive number"):
        SeasonalNaive(recent_bias_halflife=bad)
