"""Prophet estimator: seasonality rule, cost bounds, quiet logs, JSON state."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from forecaster.errors import EstimatorError
from forecaster.estimators.base import dump_estimator, load_estimator
from forecaster.estimators.prophet import ProphetEstimator

ELB = "realAWSCloudwatch/elb_request_count_8c0756.csv"


@pytest.fixture(scope="module")
def fitted() -> tuple[ProphetEstimator, pd.Series]:
    from conftest import load_nab

    history = load_nab(ELB, days=15, freq="1h")
    return ProphetEstimator().fit(history), history


def test_seasonalities_need_two_cycles(nab_slice):
    short = ProphetEstimator().fit(nab_slice(ELB, days=1.5, freq="1h"))
    assert short.seasonalities_ == []
    three_days = ProphetEstimator().fit(nab_slice(ELB, days=3, freq="1h"))
    assert three_days.seasonalities_ == ["daily"]
    assert not three_days.model_.yearly_seasonality


def test_two_weeks_fit_daily_and_weekly(fitted, assert_forecast):
    estimator, history = fitted
    assert estimator.seasonalities_ == ["daily", "weekly"]
    assert estimator.model_.uncertainty_samples == 0
    forecast = estimator.predict(24)
    assert_forecast(forecast, 24, last=history.index[-1])


def test_history_is_capped(nab_slice):
    history = nab_slice(ELB, days=10, freq="1h")
    estimator = ProphetEstimator(history_window=timedelta(days=3)).fit(history)
    assert len(estimator.model_.history) <= 72


def test_predict_from_newer_history(fitted):
    estimator, history = fitted
    forecast = estimator.predict(6, history=history.iloc[:-10])
    assert forecast["ds"].iloc[0] == history.index[-10]


def test_cmdstanpy_is_quiet(fitted):
    assert logging.getLogger("cmdstanpy").level == logging.WARNING


def test_state_is_json_and_round_trips(fitted):
    estimator, _ = fitted
    document = json.loads(json.dumps(dump_estimator(estimator)))
    assert isinstance(document["state"]["model"], str)
    loaded = load_estimator(document)
    pd.testing.assert_frame_equal(loaded.predict(12), estimator.predict(12))


def test_a_fit_past_its_time_limit_fails_clearly(nab_slice):
    """cmdstan is stopped at the limit and the fit fails with a message saying so."""
    from forecaster.errors import EstimatorError

    history = nab_slice(ELB, days=14)  # 4,032 points at 5 minutes: seconds, not milliseconds
    with pytest.raises(EstimatorError, match="time limit of 0.01 s"):
        ProphetEstimator(fit_timeout=0.01).fit(history)


def test_fits_leave_no_cmdstan_files_behind(nab_slice, tmp_path, monkeypatch):
    """cmdstanpy kept a folder of output files per fit until the process exited: a
    scheduler retraining every day piled them up in /tmp."""
    import tempfile

    import cmdstanpy

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where our scratch goes
    session = cmdstanpy._TMPDIR  # cmdstanpy's own, made at import
    before = set(Path(session).iterdir())
    history = nab_slice(ELB, days=2, freq="1h")
    ProphetEstimator().fit(history)
    with pytest.raises(EstimatorError, match="time limit"):  # a stopped fit too
        ProphetEstimator(fit_timeout=0.01).fit(nab_slice(ELB, days=14))
    assert set(Path(session).iterdir()) == before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_time_limit_must_be_positive(bad):
    from forecaster.errors import EstimatorError

    with pytest.raises(EstimatorError, match="fit_timeout must be positive"):
        ProphetEstimator(fit_timeout=bad)


def test_recent_level_correction_and_the_reference_without_it(fitted):
    """With a half-life the forecast starts from the last observations' offset against
    the fit; ``follow_level=False`` (the regression detector's reference) leaves it out."""
    estimator, history = fitted
    plain = estimator.predict(6, history=history)["yhat"].to_numpy()
    following = load_estimator(
        {**dump_estimator(estimator), "state": {**estimator.get_state(), "recent_bias_halflife": 3}}
    )
    shifted = history.copy()
    shifted.iloc[-12:] += 500.0
    moved = following.predict(6, history=shifted)["yhat"].to_numpy()
    reference = following.predict(6, history=shifted, follow_level=False)["yhat"].to_numpy()
    assert reference == pytest.approx(estimator.predict(6, history=shifted)["yhat"].to_numpy())
    assert reference == pytest.approx(plain)  # the fit is the same; only the last hour moved
    gaps = moved - reference
    assert (gaps > 0).all() and gaps[0] > gaps[-1]  # carried over, decaying with the lead


def test_without_a_level_half_life_the_reference_is_the_forecast(fitted):
    estimator, history = fitted
    assert not estimator.follows_recent_level
    pd.testing.assert_frame_equal(
        estimator.predict(6, history=history),
        estimator.predict(6, history=history, follow_level=False),
    )
    assert ProphetEstimator(recent_bias_halflife=12.0).follows_recent_level
