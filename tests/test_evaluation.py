"""Backtest engine, metrics, conformal calibration and the backtest plot."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecaster.errors import EstimatorError, InputDataError
from forecaster.estimators.gbm import LightGBMEstimator
from forecaster.estimators.naive import SeasonalNaive
from forecaster.evaluation import (
    backtest,
    calibrate_intervals,
    naive_scale,
    origin_positions,
    plot_backtest,
    score_backtest,
)
from forecaster.timeseries import read_series_csv, to_grid

NAB = Path(__file__).resolve().parents[1] / "data" / "nab"


def _nab(relpath: str, days: float, freq: str = "5min") -> pd.Series:
    series = to_grid(read_series_csv(NAB / relpath), pd.Timedelta(freq).to_pytimedelta())
    out = series[series.index < series.index[0] + pd.Timedelta(days=days)]
    out.index.freq = series.index.freq
    return out


def _ramp(n: int, step: str = "1h") -> pd.Series:
    index = pd.date_range("2024-01-01", periods=n, freq=step, tz="UTC")
    return pd.Series(np.arange(n, dtype=float) + 1.0, index=index)


def test_origins_follow_the_contract():
    positions = origin_positions(1000, horizon=288, origins=3, stride=100)
    assert positions == [512, 612, 712]
    assert 1000 - positions[-1] == 288


def test_backtest_rows_and_columns():
    history = _nab("realAWSCloudwatch/elb_request_count_8c0756.csv", days=5)
    frame = backtest(history, "seasonal_naive", horizon=24, origins=3, stride=10)
    assert list(frame.columns) == [
        "origin",
        "ds",
        "step",
        "yhat",
        "yhat_lower",
        "yhat_upper",
        "model",
        "y",
    ]
    assert len(frame) == 72
    assert frame["ds"].max() == history.index[-1]
    first = frame[frame["step"] == 1]
    assert (first["ds"] == first["origin"]).all()
    assert frame["origin"].diff().dropna().isin([pd.Timedelta(0), pd.Timedelta(minutes=50)]).all()
    np.testing.assert_allclose(frame["y"], history.reindex(frame["ds"]).to_numpy())
    assert set(frame["model"]) == {"seasonal_naive"}


def _small_lightgbm() -> LightGBMEstimator:
    return LightGBMEstimator(max_horizon=36, n_pairs=4000, n_estimators=40)


@pytest.mark.parametrize("model", ["seasonal_naive", "last_value", _small_lightgbm])
def test_no_peeking(model):
    history = _nab("realTweets/Twitter_volume_KO.csv", days=4)
    kwargs = {"horizon": 36, "origins": 3, "stride": 36, "refit_every": 72}
    frame = backtest(history, model, **kwargs)
    for origin in frame["origin"].unique():
        altered = history.copy()
        after = altered.index >= origin
        altered[after] = altered[after] * 7.0 + 1000.0
        again = backtest(altered, model, **kwargs)
        mine = frame[frame["origin"] == origin].reset_index(drop=True)
        theirs = again[again["origin"] == origin].reset_index(drop=True)
        cols = ["ds", "yhat", "yhat_lower", "yhat_upper"]
        pd.testing.assert_frame_equal(mine[cols], theirs[cols])


def test_refit_every_limits_fits():
    history = _ramp(24 * 6)
    fits: list[pd.Timestamp] = []

    class Counting(SeasonalNaive):
        def fit(self, history: pd.Series) -> Counting:
            fits.append(history.index[-1])
            return super().fit(history)

    backtest(history, Counting, horizon=6, origins=8, stride=6, refit_every=24)
    assert len(fits) == 2
    fits.clear()
    backtest(history, Counting, horizon=6, origins=8, stride=6)
    assert len(fits) == 8


def test_history_window_limits_training():
    history = _ramp(24 * 10)
    seen: list[int] = []

    class Recording(SeasonalNaive):
        def fit(self, history: pd.Series) -> Recording:
            seen.append(len(history))
            return super().fit(history)

    backtest(history, Recording, horizon=6, origins=2, history_window=timedelta(days=2))
    assert seen == [48, 48]


def test_too_little_history_and_unknown_model():
    history = _ramp(30)
    with pytest.raises(InputDataError, match="too little history"):
        backtest(history, "seasonal_naive", horizon=12, origins=2)
    with pytest.raises(EstimatorError, match="unknown model 'nope'"):
        backtest(history, "nope", horizon=1, origins=1)


def test_metrics_match_hand_computation():
    index = pd.date_range("2024-01-01", periods=5, freq="1D", tz="UTC")
    # Daily series: the daily seasonal naive is the one-step naive.
    history = pd.Series([10.0, 12.0, 11.0, 13.0, 20.0], index=index)
    frame = pd.DataFrame(
        {
            "origin": [index[3], index[3]],
            "ds": [index[3], index[4]],
            "step": [1, 2],
            "yhat": [12.0, 16.0],
            "yhat_lower": [11.0, 10.0],
            "yhat_upper": [14.0, 18.0],
        }
    )
    scores = score_backtest(frame, history)
    scale = np.mean([2.0, 1.0])  # |12-10|, |11-12| over the window before the origin
    assert scores["mase"] == pytest.approx(np.mean([1.0, 4.0]) / scale)
    assert scores["smape"] == pytest.approx(100 * np.mean([2 / 25, 8 / 36]))
    assert scores["coverage"] == pytest.approx(0.5)
    assert scores["width"] == pytest.approx(np.mean([3.0, 8.0]) / np.mean([13.0, 20.0]))
    assert naive_scale(history.to_numpy(), 3, window=10, season=1) == pytest.approx(scale)


def test_conformal_calibration_covers():
    rng = np.random.default_rng(7)
    horizon = 12
    rows = 200 * horizon
    steps = np.tile(np.arange(1, horizon + 1), 200)
    noise_scale = 1.0 + steps / 4.0
    frame = pd.DataFrame(
        {"step": steps, "yhat": np.zeros(rows), "y": rng.normal(0, 1, rows) * noise_scale}
    )
    calibration = calibrate_intervals(frame, horizon=horizon)
    lower, upper = calibration.bounds(np.zeros(horizon), 90.0)
    fresh = rng.normal(0, 1, (2000, horizon)) * (1.0 + np.arange(1, horizon + 1) / 4.0)
    inside = (fresh >= lower) & (fresh <= upper)
    assert 0.86 <= inside.mean() <= 0.94
    assert upper[-1] > upper[0]  # wider where errors are larger


def test_relative_calibration_of_a_series_that_stays_zero():
    """An error rate that is 0 throughout: relative residuals 0/0 must not become NaN
    (a RuntimeWarning, and NaN offsets) but a band of zero width."""
    horizon = 6
    steps = np.tile(np.arange(1, horizon + 1), 20)
    frame = pd.DataFrame({"step": steps, "yhat": 0.0, "y": 0.0})
    calibration = calibrate_intervals(frame, horizon=horizon, relative=True, floor=0.0)
    lower, upper = calibration.bounds(np.zeros(horizon), 90.0)
    np.testing.assert_array_equal(lower, 0.0)
    np.testing.assert_array_equal(upper, 0.0)


def test_plot_backtest_writes_png(tmp_path):
    history = _nab("realAWSCloudwatch/elb_request_count_8c0756.csv", days=4)
    frame = backtest(history, "seasonal_naive", horizon=48, origins=2)
    out = plot_backtest(frame, history, tmp_path / "plot.png", title="elb", unit="requests/5min")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000


def test_plot_draws_one_model_and_non_overlapping_origins(tmp_path):
    history = _nab("realAWSCloudwatch/elb_request_count_8c0756.csv", days=4)
    naive = backtest(history, "seasonal_naive", horizon=48, origins=6, stride=12)
    last = backtest(history, "last_value", horizon=48, origins=6, stride=12)
    frame = pd.concat([naive, last], ignore_index=True)
    out = plot_backtest(frame, history, tmp_path / "p.png", title="two models", unit="req")
    assert out.stat().st_size > 20_000


def test_the_plot_of_auto_draws_every_origin_whatever_model_it_served(tmp_path, monkeypatch):
    """The plot kept the rows whose model equalled the first row's: an auto backtest
    that served prophet at one origin and lightgbm at the next drew only the first."""
    import forecaster.plotting

    history = _nab("realAWSCloudwatch/elb_request_count_8c0756.csv", days=4)
    frame = backtest(history, "seasonal_naive", horizon=12, origins=3)
    origins = sorted(set(frame["origin"]))
    served = dict(zip(origins, ["prophet", "lightgbm", "seasonal_naive"], strict=True))
    frame["model"] = [f"auto:{served[o]}" for o in frame["origin"]]
    other = frame.assign(model="last_value")
    drawn: list[object] = []
    real = forecaster.plotting.fill_band
    monkeypatch.setattr(
        forecaster.plotting, "fill_band", lambda *a, **k: drawn.append(a) or real(*a, **k)
    )
    both = pd.concat([frame, other], ignore_index=True)
    plot_backtest(both, history, tmp_path / "p.png", title="auto", unit="req", model="auto")
    assert len(drawn) == 3


def test_the_input_grid_keeps_the_phase_of_the_rows():
    from forecaster.timeseries import grid_phase, to_grid

    five = timedelta(minutes=5)
    at_53 = pd.date_range("2024-03-01 00:00:53", periods=50, freq="5min", tz="UTC")
    series = pd.Series(np.arange(50.0), index=at_53)
    assert grid_phase(at_53, five) == 53 * 10**9
    # pandas 3 builds microsecond indexes: their integers are not nanoseconds
    assert grid_phase(at_53.as_unit("us"), five) == 53 * 10**9
    grid = to_grid(series, five, anchor="input")
    assert (grid.index == at_53).all() and grid.index.freq == "5min"
    assert (grid.to_numpy() == series.to_numpy()).all()
    epoch = to_grid(series, five)  # the store's grid: the same values at :00
    assert (epoch.index == at_53 - pd.Timedelta(seconds=53)).all()
    assert (epoch.to_numpy() == series.to_numpy()).all()
    # rows finer than the grid have no single phase: binned from the epoch grid
    minutes = pd.date_range("2024-03-01 00:00:30", periods=10, freq="1min", tz="UTC")
    assert grid_phase(minutes, five) is None
    fine = to_grid(pd.Series(np.arange(10.0), index=minutes), five, anchor="input")
    assert fine.index[0] == pd.Timestamp("2024-03-01", tz="UTC")
    assert fine.tolist() == [2.0, 7.0]
    # a row just before a mark belongs to that mark, not to the point before it
    early = at_53[:3] + pd.to_timedelta([0, -2, 1], unit="s")
    assert grid_phase(early, five) == 53 * 10**9
    assert to_grid(pd.Series([1.0, 2.0, 3.0], index=early), five, anchor="input").tolist() == [
        1.0,
        2.0,
        3.0,
    ]
