"""AutoEstimator: cold start, selection by backtest, calibration, state."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from forecaster.errors import EstimatorError
from forecaster.estimators import forecast_frame
from forecaster.estimators.auto import SELECT_BY, AutoEstimator, blend_weights, parse_choice
from forecaster.estimators.base import dump_estimator, load_estimator
from forecaster.evaluation import score_backtest
from forecaster.promotion import GATE_METRIC, gate

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
    best = min(auto.scores, key=lambda k: auto.scores[k][SELECT_BY])
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


def test_blend_weights_recover_a_known_mix():
    rng = np.random.default_rng(3)
    a, b, c = (rng.normal(100.0, 20.0, 500) for _ in range(3))
    assert blend_weights([a, b, c], 0.7 * a + 0.3 * c) == pytest.approx((0.7, 0.0, 0.3))
    assert blend_weights([a, b], b.copy()) == pytest.approx((0.0, 1.0))


def test_blend_weights_skip_missing_steps():
    rng = np.random.default_rng(4)
    a, b = rng.normal(100.0, 20.0, 300), rng.normal(100.0, 20.0, 300)
    actual = 0.4 * a + 0.6 * b
    actual[:50] = np.nan
    a[50:80] = np.nan  # a missing forecast step is left out, not counted as an error
    assert blend_weights([a, b], actual) == pytest.approx((0.4, 0.6))
    # Nothing to judge by: the best-ranked forecast alone.
    assert blend_weights([a, b], np.full(300, np.nan)) == (1.0, 0.0)


def test_cross_fitted_blend_forecasts_never_see_their_own_block():
    """Each block of origins is forecast with weights fitted on the other blocks: in
    the block where the actuals follow ``b`` the forecast still follows ``a``."""
    from forecaster.estimators.auto import BLEND_FOLDS, _cross_fitted

    rng = np.random.default_rng(5)
    origin = np.repeat(np.arange(12), 10)
    a, b = rng.normal(100.0, 20.0, 120), rng.normal(100.0, 20.0, 120)
    actual = a.copy()
    first = origin < 12 // BLEND_FOLDS  # the first block
    actual[first] = b[first]
    held_out = _cross_fitted([a, b], actual, origin)
    assert held_out[first] == pytest.approx(a[first])
    assert held_out[~first] == pytest.approx(a[~first])
    assert blend_weights([a, b], actual) == (1.0, 0.0)  # in-sample: a as well, here


@pytest.fixture(scope="module")
def day_ahead() -> AutoEstimator:
    from conftest import load_nab

    return AutoEstimator(horizon=24).fit(load_nab(TAXI, days=16, freq="1h"))


def test_a_blend_is_scored_and_served_with_its_weights(day_ahead):
    """Day-ahead on the real trace the weighted blend of the three best wins selection;
    its inner backtest is the weighted sum of its members' and so is its forecast."""
    auto = day_ahead
    assert auto.chosen is not None and auto.chosen.startswith("blend(")
    assert auto.chosen in auto.scores
    assert len(auto.members_) == len(auto.weights_) > 1
    assert sum(auto.weights_) == pytest.approx(1.0)
    frame = auto.selection_backtest
    assert frame is not None
    # blend(lightgbm:0.3+seasonal_naive_weekly:0.7): candidate names and weights
    parts = [part.split(":") for part in auto.chosen.removeprefix("blend(")[:-1].split("+")]
    assert [float(w) for _, w in parts] == pytest.approx(auto.weights_)
    mixed = sum(float(w) * frame.loc[frame["model"] == c, "yhat"].to_numpy() for c, w in parts)
    assert frame.loc[frame["model"] == auto.chosen, "yhat"].to_numpy() == pytest.approx(mixed)
    mine = auto.predict(24)["yhat"].to_numpy()
    theirs = sum(
        w * m.predict(24)["yhat"].to_numpy()
        for m, w in zip(auto.members_, auto.weights_, strict=True)
    )
    assert mine == pytest.approx(np.maximum(theirs, 0.0))
    # its interval comes from cross-fitted weights, not from the in-sample blend
    from forecaster.evaluation import calibrate_intervals

    chosen = frame[frame["model"] == auto.chosen]
    in_sample = calibrate_intervals(
        chosen, horizon=24, relative=True, floor=auto.calibration_.floor, inflation=1.2
    )
    assert in_sample.to_dict() != auto.calibration_.to_dict()


def test_blends_only_from_a_day_of_horizon(fitted):
    auto, _ = fitted  # 12 hours ahead
    assert not any(name.startswith("blend(") for name in auto.scores)


def test_state_keeps_weights_and_old_states_average(day_ahead):
    """Models saved before blends (no weights) average their members as they did;
    weights that do not match the members are refused."""
    auto = day_ahead
    document = json.loads(json.dumps(dump_estimator(auto)))
    loaded = load_estimator(document)
    assert isinstance(loaded, AutoEstimator)
    assert loaded.weights_ == auto.weights_
    pd.testing.assert_frame_equal(loaded.predict(24), auto.predict(24))
    del document["state"]["weights"]
    loaded = load_estimator(document)
    assert isinstance(loaded, AutoEstimator)
    n = len(auto.members_)
    assert loaded.weights_ == pytest.approx([1.0 / n] * n)
    document["state"]["weights"] = [1.0]
    with pytest.raises(EstimatorError, match=f"1 weights for {n} members"):
        load_estimator(document)
    for bad in ([1.5] + [-0.5 / (n - 1)] * (n - 1), [0.6] * n, ["x"] * n):
        document["state"]["weights"] = bad
        with pytest.raises(EstimatorError, match="invalid auto state"):
            load_estimator(document)


def test_parse_choice_reads_auto_combination_names():
    assert parse_choice("ensemble(lightgbm+prophet)") == (("lightgbm", 0.5), ("prophet", 0.5))
    assert parse_choice("blend(a:0.7+b:0.2+c:0.1)") == (("a", 0.7), ("b", 0.2), ("c", 0.1))
    bad = ("blend(a:0.7+b:0.7)", "blend(a:1.5+b:-0.5)", "blend(a+b)", "blend(a:x+b:0.5)")
    for other in ("lightgbm", *bad, ""):
        assert parse_choice(other) is None


def test_the_serving_blend_is_scored_on_the_same_windows(nab_slice):
    """The incumbent's weights on this fit's inner backtest: scored, never chosen; an
    incumbent that is not a combination of this fit's candidates is not scored."""
    history = nab_slice(TAXI, days=6, freq="1h")
    candidates = ("seasonal_naive", "last_value")
    serving = "blend(seasonal_naive:0.3+last_value:0.7)"
    auto = AutoEstimator(candidates=candidates, horizon=6, incumbent=serving).fit(history)
    assert auto.chosen != serving
    frame = auto.selection_backtest
    assert frame is not None and serving not in set(frame["model"])
    naive = frame[frame["model"] == "seasonal_naive"].reset_index(drop=True)
    last = frame[frame["model"] == "last_value"].reset_index(drop=True)
    mixed = naive.copy()
    mixed["yhat"] = 0.3 * naive["yhat"] + 0.7 * last["yhat"]
    expected = score_backtest(mixed, history, history_window=auto.history_window)
    assert auto.scores[serving][GATE_METRIC] == pytest.approx(expected[GATE_METRIC])
    for other in ("blend(prophet:0.5+last_value:0.5)", "lightgbm", "not a model"):
        fitted = AutoEstimator(candidates=candidates, horizon=6, incumbent=other).fit(history)
        assert set(fitted.scores) == set(auto.scores) - {serving}


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


def test_spikes_cleaned_only_for_day_ahead_and_longer(make_series):
    """A burst is noise to a day-ahead model but the very thing an hour-ahead model
    must learn to follow: only long-horizon fits replace it."""
    history = make_series(days=8, noise=2.0)
    history.iloc[1000] += 5000.0

    def spike_flags(horizon: int) -> list[str]:
        auto = AutoEstimator(candidates=("seasonal_naive",), horizon=horizon).fit(history)
        return [flag for flag in auto.flags if flag.startswith("spikes")]

    assert spike_flags(288) == ["spikes: 1 isolated spike point(s) replaced"]
    assert spike_flags(12) == []


def test_interval_inflation_follows_the_horizon(make_series):
    """Day-ahead offsets are widened more than hour-ahead ones (fewer independent
    samples in the tail); an explicit inflation wins, and the state keeps the one used."""
    history = make_series(days=9, noise=2.0)

    def offsets(horizon: int, **kw: float) -> tuple[float, float, AutoEstimator]:
        auto = AutoEstimator(candidates=("seasonal_naive",), horizon=horizon, **kw).fit(history)
        assert auto.calibration_ is not None
        lower, upper = auto.calibration_.bounds(pd.Series([100.0]).to_numpy(), 90.0)
        return float(upper[0] - 100.0), float(100.0 - lower[0]), auto

    up_long, down_long, long = offsets(288)
    up_plain, down_plain, _ = offsets(288, interval_inflation=1.0)
    assert up_plain > 0 and down_plain > 0
    assert up_long == pytest.approx(1.2 * up_plain) and down_long == pytest.approx(1.2 * down_plain)
    assert long.get_state()["interval_inflation"] == 1.2
    up_short, _, short = offsets(12)
    up_short_plain, _, _ = offsets(12, interval_inflation=1.0)
    assert up_short == pytest.approx(1.1 * up_short_plain)
    assert short.get_state()["interval_inflation"] == 1.1


def test_inner_backtest_covers_the_selection_tail(make_series):
    """Short horizons are selected on every hour of the 7-day tail (not overlapping),
    long ones on ~49 overlapping origins."""
    history = make_series(days=21)
    short = AutoEstimator(candidates=("seasonal_naive",), horizon=12).fit(history)
    long = AutoEstimator(candidates=("seasonal_naive",), horizon=288).fit(history)
    assert short.selection_backtest is not None and long.selection_backtest is not None
    assert short.selection_backtest["origin"].nunique() == 168
    assert short.selection_backtest.groupby("origin").size().eq(12).all()
    assert long.selection_backtest["origin"].nunique() == 49


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


class _OracleWithBadDays:
    """A fake candidate that knows the future and is perfect, except from a few origins
    (every ``every``-th forecast) where it is off by a large constant: best by the
    median over origins, far worse than the seasonal naive by the mean."""

    name = "lightgbm"

    def __init__(self, truth: pd.Series, every: int) -> None:
        self.truth = truth
        self.every = every
        self.calls = 0

    def fit(self, history: pd.Series) -> _OracleWithBadDays:
        return self

    def predict(
        self,
        horizon: int,
        *,
        history: pd.Series | None = None,
        level: float = 90.0,
        follow_level: bool = True,  # noqa: ARG002 - the protocol's; no level terms here
    ) -> pd.DataFrame:
        last = (self.truth if history is None else history).index[-1]
        step = self.truth.index.freq
        future = self.truth.reindex(pd.date_range(last + step, periods=horizon, freq=step))
        yhat = future.fillna(0.0).to_numpy(dtype=float)
        self.calls += 1
        if self.calls % self.every == 0:
            yhat = yhat + 50.0 * float(self.truth.abs().mean())
        return forecast_frame(last, step, yhat, yhat, yhat, nonnegative=True)


def test_selection_and_gate_use_the_same_statistic(make_series, monkeypatch):
    """Regression: auto picked a candidate by median MASE that the gate (mean MASE) then
    refused. Whatever auto selects must pass the gate against the seasonal naive."""
    assert SELECT_BY == GATE_METRIC
    truth = make_series(days=6)
    original = AutoEstimator._factory

    def factory(self: AutoEstimator, name: str, span: timedelta) -> object:
        if name == "lightgbm":
            return _OracleWithBadDays(truth, every=5)
        return original(self, name, span)

    monkeypatch.setattr(AutoEstimator, "_factory", factory)
    auto = AutoEstimator(candidates=("seasonal_naive", "lightgbm"), horizon=12, ensemble=False).fit(
        truth
    )
    scores = auto.scores
    # The fake is the better candidate by the median, the worse one by the mean ...
    assert scores["lightgbm"]["mase_median"] < scores["seasonal_naive"]["mase_median"]
    assert scores["lightgbm"][GATE_METRIC] > scores["seasonal_naive"][GATE_METRIC]
    # ... so selection, ranking by the gate's statistic, keeps the seasonal naive, and the
    # gate agrees with what was selected.
    assert auto.chosen == "seasonal_naive"
    decision = gate(
        candidate=auto.chosen,
        candidate_mase=scores[auto.chosen][GATE_METRIC],
        baseline="seasonal_naive",
        baseline_mase=scores["seasonal_naive"][GATE_METRIC],
        champion=None,
        champion_mase=None,
    )
    assert decision.promote


def test_selected_candidate_passes_the_gate(fitted):
    """On a real trace: the chosen candidate is the one with the best gate statistic and
    is promoted against the seasonal naive scored on the same windows."""
    auto, _ = fitted
    assert auto.chosen is not None
    chosen = auto.scores[auto.chosen][GATE_METRIC]
    assert chosen == min(s[GATE_METRIC] for s in auto.scores.values())
    decision = gate(
        candidate=auto.chosen,
        candidate_mase=chosen,
        baseline="seasonal_naive",
        baseline_mase=auto.scores["seasonal_naive"][GATE_METRIC],
        champion=None,
        champion_mase=None,
    )
    assert decision.promote, decision.reason


def test_prophet_past_its_time_limit_is_left_out(nab_slice):
    """A Prophet fit stopped at its time limit drops Prophet from the selection, flagged."""
    # 10 days at 5 minutes: a Prophet fit takes seconds here, far over the 0.01 s limit
    history = nab_slice("realAWSCloudwatch/elb_request_count_8c0756.csv", days=10)
    auto = AutoEstimator(
        candidates=("prophet", "seasonal_naive", "last_value"),
        horizon=12,
        prophet_fit_timeout=0.01,
    ).fit(history)
    assert "prophet" not in auto.scores
    assert any(
        f.startswith("candidate_failed: prophet:") and "time limit of 0.01 s" in f
        for f in auto.flags
    )
    assert auto.chosen is not None and "prophet" not in auto.chosen
    assert len(auto.predict(12)) == 12


def test_a_failed_final_fit_serves_the_next_best(nab_slice, monkeypatch):
    """The chosen model's refit on the full history fails: the next best choice that does
    not need it is fitted, calibrated on its own backtest, and the fallback is flagged."""
    history = nab_slice(TAXI, days=16, freq="1h")
    original = AutoEstimator._factory
    built = {"lightgbm": 0}

    class FailingRefit:
        def __init__(self, inner: object) -> None:
            self.inner = inner

        def fit(self, series: pd.Series) -> object:
            raise RuntimeError("simulated worker out of memory")

    def factory(self: AutoEstimator, name: str, span: timedelta) -> object:
        est = original(self, name, span)
        if name == "lightgbm":
            built["lightgbm"] += 1
            if built["lightgbm"] > 1:  # the first one is the selection backtest's
                return FailingRefit(est)
        return est

    monkeypatch.setattr(AutoEstimator, "_factory", factory)
    auto = AutoEstimator(candidates=("lightgbm", "seasonal_naive", "last_value"), horizon=12)
    auto.fit(history)
    ranking = sorted(auto.scores, key=lambda c: auto.scores[c][GATE_METRIC])
    assert "lightgbm" in ranking[0], "lightgbm must win selection for this test to mean anything"
    assert any(f.startswith("fit_failed: lightgbm: simulated worker") for f in auto.flags)
    assert auto.chosen == next(c for c in ranking if "lightgbm" not in c)
    assert auto.selection_backtest is not None
    assert auto.selection_backtest["model"].iloc[0] == auto.chosen
    forecast = auto.predict(12)
    assert len(forecast) == 12 and forecast["yhat"].notna().all()


def test_every_final_fit_failing_is_an_error(nab_slice, monkeypatch):
    history = nab_slice(TAXI, days=8, freq="1h")
    calls = {"n": 0}
    original = AutoEstimator._factory

    class Broken:
        def fit(self, series: pd.Series) -> object:
            raise RuntimeError("disk full")

    def factory(self: AutoEstimator, name: str, span: timedelta) -> object:
        calls["n"] += 1
        return original(self, name, span) if calls["n"] <= 2 else Broken()

    monkeypatch.setattr(AutoEstimator, "_factory", factory)
    with pytest.raises(EstimatorError, match="final fit of every auto candidate failed"):
        AutoEstimator(candidates=("seasonal_naive", "last_value"), horizon=12).fit(history)


def test_cleaning_helps_after_a_real_outage(nab_slice):
    """realTweets' collection outage (2015-03-11 07:00-09:05 UTC, every ticker 0): hour-ahead
    forecasts in the two hours after it are better with auto's cleaning than without
    (benchmarks/cleaning.py measures both tasks on five tickers)."""
    from forecaster.evaluation import backtest, score_backtest

    series = nab_slice("realTweets/Twitter_volume_AAPL.csv", days=13)
    series = series[series.index < pd.Timestamp("2015-03-11 12:05", tz="UTC")]
    assert (series["2015-03-11 07:00":"2015-03-11 09:05"] == 0).all()
    mase = {}
    for clean in (True, False):
        frame = backtest(
            series,
            lambda clean=clean: AutoEstimator(  # type: ignore[misc]
                candidates=("seasonal_naive", "lightgbm"), horizon=12, clean=clean
            ),
            horizon=12,
            origins=24,
            stride=1,
            refit_every=10**9,
        )
        assert frame["origin"].min() == pd.Timestamp("2015-03-11 09:10", tz="UTC")
        mase[clean] = score_backtest(frame, series)["mase"]
    assert mase[True] < 0.9 * mase[False], mase


@pytest.mark.parametrize("candidate", ["seasonal_naive", "seasonal_naive_weekly"])
def test_repeat_candidates_start_from_the_current_level(make_series, candidate):
    """After a level shift a plain repeat of yesterday (or last week) stays at the old
    level for a whole season; auto's repeats carry the last hour's offset into the
    next steps, decaying with a one-hour half-life."""
    history = make_series(days=16, noise=0.0)
    auto = AutoEstimator(candidates=(candidate,), horizon=12, clean=False).fit(history)
    shifted = history.copy()
    shifted.iloc[-12:] += 30.0
    member = auto.members_[0]
    assert member.recent_bias_halflife == 12.0
    plain = type(member).from_state({**member.get_state(), "recent_bias_halflife": None})
    offset = (
        auto.predict(12, history=shifted)["yhat"] - plain.predict(12, history=shifted)["yhat"]
    ).to_numpy()
    np.testing.assert_allclose(offset, 30.0 * 0.5 ** (np.arange(1, 13) / 12), rtol=1e-6)
    # the reference forecast (what the regression detector judges against) has no offset
    reference = auto.predict(12, history=shifted, follow_level=False)["yhat"]
    np.testing.assert_allclose(reference, plain.predict(12, history=shifted)["yhat"])


def test_auto_follows_the_recent_level_when_a_member_does(fitted, make_series):
    auto, history = fitted
    assert auto.follows_recent_level == any(m.follows_recent_level for m in auto.members_)
    if not auto.follows_recent_level:
        pd.testing.assert_frame_equal(
            auto.predict(12, history=history), auto.predict(12, history=history, follow_level=False)
        )
    repeat = AutoEstimator(candidates=("seasonal_naive",), horizon=12, clean=False)
    assert repeat.fit(make_series(days=16, noise=0.0)).follows_recent_level
