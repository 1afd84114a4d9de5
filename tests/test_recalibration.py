"""Band recalibration from the last day's misses: the rules, the backtest and the publish job."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecaster.config import DatabaseSettings
from forecaster.evaluation import backtest, score_backtest
from forecaster.recalibration import (
    MIN_POINTS,
    SCALE_BOUNDS,
    band_scale,
    band_scale_from_frames,
    required_scales,
    rescale_band,
)
from forecaster.store.db import make_engine, upgrade
from forecaster.store.repository import ForecastPoint, Store
from forecaster.timeseries import read_series_csv, to_grid

DATA = Path(__file__).resolve().parents[1] / "data" / "nab"


def test_required_scale_is_the_stretch_on_the_side_of_the_miss() -> None:
    yhat = np.array([10.0, 10.0, 10.0, 10.0, 10.0])
    lower = np.array([8.0, 8.0, 8.0, 8.0, 8.0])  # 2 below
    upper = np.array([14.0, 14.0, 14.0, 14.0, 14.0])  # 4 above
    actual = np.array([10.0, 12.0, 18.0, 7.0, np.nan])
    np.testing.assert_allclose(required_scales(yhat, lower, upper, actual), [0.0, 0.5, 2.0, 1.5])


def test_a_degenerate_band_needs_an_infinite_or_no_stretch() -> None:
    flat = np.array([5.0, 5.0])
    scales = required_scales(flat, flat, flat, np.array([5.0, 6.0]))
    assert scales[0] == 0.0 and scales[1] > 1e6


def test_band_scale_needs_enough_points_and_stays_in_bounds() -> None:
    assert band_scale(np.full(MIN_POINTS - 1, 10.0), 90.0) == 1.0
    assert band_scale(np.full(MIN_POINTS, 10.0), 90.0) == SCALE_BOUNDS[1]
    assert band_scale(np.zeros(MIN_POINTS), 90.0) == SCALE_BOUNDS[0]
    values = np.linspace(0.0, 2.0, 201)
    assert band_scale(values, 90.0) == pytest.approx(1.8)
    assert band_scale(np.array([np.inf] * MIN_POINTS), 90.0) == SCALE_BOUNDS[1]


@given(
    st.lists(st.floats(0, 1e3), min_size=1, max_size=20),
    st.floats(0.5, 3.0),
)
def test_rescaled_bands_hold_yhat_and_scale_the_offsets(values: list[float], scale: float) -> None:
    # one lower bound below 0: not a nonnegative band, so nothing is clamped at 0
    # (that case is the next test's)
    yhat = np.array([*values, -5.0])
    lower, upper = yhat - 1.0, yhat + 2.0
    new_lower, new_upper = rescale_band(yhat, lower, upper, scale)
    assert np.all(new_lower <= yhat) and np.all(yhat <= new_upper)
    np.testing.assert_allclose(new_upper - yhat, 2.0 * scale)
    np.testing.assert_allclose(yhat - new_lower, 1.0 * scale)


def test_a_nonnegative_band_stays_nonnegative() -> None:
    yhat = np.array([1.0, 5.0])
    lower, upper = rescale_band(yhat, np.array([0.0, 4.0]), np.array([2.0, 6.0]), 3.0)
    np.testing.assert_allclose(lower, [0.0, 2.0])
    np.testing.assert_allclose(upper, [4.0, 8.0])


def _frame(origin: pd.Timestamp, n: int, actual: float) -> pd.DataFrame:
    ds = pd.date_range(origin, periods=n, freq="5min")
    return pd.DataFrame(
        {"ds": ds, "yhat": 10.0, "yhat_lower": 9.0, "yhat_upper": 11.0, "y": actual}
    )


def test_band_scale_from_frames_uses_only_what_was_observed_before_the_origin() -> None:
    t0 = pd.Timestamp("2026-01-05", tz="UTC")
    origin = t0 + pd.Timedelta(hours=12)
    inside = _frame(t0, 144, 10.5)  # ends at the origin: required scale 0.5
    future = _frame(origin, 144, 1000.0)  # at and after the origin: never judged
    assert band_scale_from_frames([inside, future], origin, 90.0) == pytest.approx(0.5)
    # the latest forecast of a step judges it
    later = _frame(t0, 144, 12.0)  # the same steps, missed by 2 (scale 2)
    assert band_scale_from_frames([inside, later], origin, 90.0) == pytest.approx(2.0)
    # only the last day counts
    old = _frame(t0 - pd.Timedelta(days=3), 144, 1000.0)
    assert band_scale_from_frames([old, inside], origin, 90.0) == pytest.approx(0.5)
    assert band_scale_from_frames([], origin, 90.0) == 1.0


def test_the_long_scale_narrows_by_at_most_a_tenth_and_widens_as_far_as_the_short() -> None:
    from forecaster.recalibration import LONG_SCALE_BOUNDS, long_band_scale_from_frames

    t0 = pd.Timestamp("2026-01-05", tz="UTC")
    origin = t0 + pd.Timedelta(hours=12)
    step = timedelta(minutes=5)

    def leads(actual: float) -> pd.DataFrame:  # every row more than an hour ahead
        return _frame(t0, 144, actual).assign(step=np.arange(13, 13 + 144))

    calm, wild = leads(10.5), leads(12.0)  # required 0.5 and 2
    assert band_scale_from_frames([calm], origin, 90.0) == pytest.approx(0.5)
    assert long_band_scale_from_frames([calm], origin, 90.0, step) == LONG_SCALE_BOUNDS[0] == 0.9
    assert long_band_scale_from_frames([wild], origin, 90.0, step) == pytest.approx(2.0)
    assert long_band_scale_from_frames([leads(1000.0)], origin, 90.0, step) == 3.0


def test_rescale_frame_stretches_leads_beyond_an_hour_by_the_long_scale() -> None:
    from forecaster.recalibration import rescale_frame

    frame = pd.DataFrame(
        {"step": np.arange(1, 25), "yhat": 10.0, "yhat_lower": 9.0, "yhat_upper": 12.0}
    )
    out = rescale_frame(frame, 2.0, long_scale=0.5, step=timedelta(minutes=5))
    np.testing.assert_allclose(out["yhat_upper"], [14.0] * 12 + [11.0] * 12)
    np.testing.assert_allclose(out["yhat_lower"], [8.0] * 12 + [9.5] * 12)
    hourly = rescale_frame(frame, 2.0, long_scale=0.5, step=timedelta(hours=1))
    np.testing.assert_allclose(hourly["yhat_upper"], [14.0] + [11.0] * 23)
    same = rescale_frame(frame, 2.0)  # one scale for every step
    np.testing.assert_allclose(same["yhat_upper"], 14.0)
    with pytest.raises(ValueError, match="needs the grid step"):
        rescale_frame(frame, 2.0, long_scale=0.5)


def _noisier_later() -> pd.Series:
    """A daily cycle whose noise triples after four days."""
    rng = np.random.default_rng(7)
    index = pd.date_range("2026-01-01", periods=8 * 288, freq="5min", tz="UTC")
    phase = np.arange(len(index)) / 288 * 2 * np.pi
    noise = rng.normal(0, 1.0, len(index))
    noise[4 * 288 :] *= 3.0
    return pd.Series(100 + 20 * np.sin(phase) + noise, index=index)


def test_backtest_recalibration_recovers_coverage_after_the_noise_grows() -> None:
    history = _noisier_later()
    kwargs: dict[str, Any] = {"horizon": 12, "origins": 72, "stride": 12, "refit_every": 10**6}
    plain = backtest(history, "seasonal_naive", **kwargs)
    again = backtest(history, "seasonal_naive", recalibrate=False, **kwargs)
    pd.testing.assert_frame_equal(plain, again)  # off by default for a single estimator
    recal = backtest(history, "seasonal_naive", recalibrate=True, **kwargs)
    first = plain["origin"] == plain["origin"].min()
    # the first origin too: judged by the day of hourly publications before it
    assert not np.allclose(plain[first]["yhat_upper"], recal[first]["yhat_upper"])
    pd.testing.assert_series_equal(plain["yhat"], recal["yhat"])
    late = plain["origin"] >= plain["origin"].max() - pd.Timedelta(hours=24)
    cover_plain = score_backtest(plain[late], history)["coverage"]
    cover_recal = score_backtest(recal[late], history)["coverage"]
    assert cover_plain < 0.8
    assert 0.85 <= cover_recal <= 0.97


def test_backtest_recalibration_does_not_peek() -> None:
    history = _noisier_later()
    kwargs: dict[str, Any] = {
        "horizon": 12,
        "origins": 40,
        "stride": 12,
        "refit_every": 10**6,
        "recalibrate": True,
    }
    frame = backtest(history, "seasonal_naive", **kwargs)
    unique = frame["origin"].unique()
    for origin in [unique[0], *unique[-3:]]:  # the first one's band judges a warm-up day
        altered = history.copy()
        after = altered.index >= origin
        altered[after] = altered[after] * 7.0 + 1000.0
        again = backtest(altered, "seasonal_naive", **kwargs)
        cols = ["ds", "yhat", "yhat_lower", "yhat_upper"]
        mine = frame[frame["origin"] == origin].reset_index(drop=True)[cols]
        theirs = again[again["origin"] == origin].reset_index(drop=True)[cols]
        pd.testing.assert_frame_equal(mine, theirs)


class _Recording:
    """A seasonal naive that records each forecast's history end and horizon."""

    def __init__(self, calls: list[tuple[pd.Timestamp, int]]) -> None:
        from forecaster.estimators.naive import SeasonalNaive

        self.inner = SeasonalNaive()
        self.name = "recording"
        self.calls = calls

    def fit(self, history: pd.Series) -> _Recording:
        self.inner.fit(history)
        return self

    def predict(self, horizon: int, *, history: pd.Series, level: float) -> pd.DataFrame:
        self.calls.append((history.index[-1], horizon))
        return self.inner.predict(horizon, history=history, level=level)


def test_day_ahead_backtest_judges_the_hourly_publications_between_origins() -> None:
    """The service publishes every hour between daily origins; its recalibration judges
    those forecasts, so a backtest with daily origins emulates them (from the data
    before each hour, with the model then in force) instead of judging its origins."""
    history = _noisier_later()
    calls: list[tuple[pd.Timestamp, int]] = []
    kwargs: dict[str, Any] = {"horizon": 288, "origins": 3, "stride": 288, "refit_every": 288}
    frame = backtest(history, lambda: _Recording(calls), model_name="x", recalibrate=True, **kwargs)
    origins = sorted(frame["origin"].unique())
    step = pd.Timedelta(minutes=5)
    hourly = [(end + step, h) for end, h in calls if end + step not in set(origins)]
    # the day before the first origin, a model fitted a day before it published hourly
    # (as a service in steady state had), each forecast up to that origin
    warm_up = sorted((made, h) for made, h in hourly if made < origins[0])
    day_before = pd.date_range(origins[0] - pd.Timedelta(days=1), origins[0], freq="1h")[:-1]
    assert [made for made, _ in warm_up] == list(day_before)
    assert all(h == min(288, (origins[0] - made) // step) for made, h in warm_up)
    hourly = [(made, h) for made, h in hourly if made > origins[0]]
    # 23 publications between each pair of origins, one per hour after the earlier one,
    # each forecasting up to the later origin (what was observed by then)
    assert len(hourly) == 2 * 23
    for earlier, later in zip(origins, origins[1:], strict=False):
        between = sorted(made for made, _ in hourly if earlier < made < later)
        hours = pd.date_range(earlier + pd.Timedelta(hours=1), later, freq="1h")[:-1]
        assert between == list(hours)
        assert all(h == (later - made) // step for made, h in hourly if earlier < made < later)
    plain = backtest(history, "seasonal_naive", recalibrate=False, **kwargs)
    pd.testing.assert_series_equal(plain["yhat"], frame["yhat"])
    last_plain = plain[plain["origin"] == origins[-1]]
    last_recal = frame[frame["origin"] == origins[-1]]
    ratio = (last_recal["yhat_upper"] - last_recal["yhat"]).to_numpy() / (
        last_plain["yhat_upper"] - last_plain["yhat"]
    ).to_numpy()
    # the first hour of lead is stretched by the short scale, the rest by the long one
    short, long = ratio[0], ratio[12]
    np.testing.assert_allclose(ratio[:12], short)
    np.testing.assert_allclose(ratio[12:], long)
    assert not np.isclose(short, long)
    # no peeking: what happens from an origin on does not move that origin's forecast
    altered = history.copy()
    after = altered.index >= origins[-1]
    altered[after] = altered[after] * 7.0 + 1000.0
    again = backtest(altered, "seasonal_naive", recalibrate=True, **kwargs)
    cols = ["ds", "yhat", "yhat_lower", "yhat_upper"]
    last = frame[frame["origin"] == origins[-1]].reset_index(drop=True)[cols]
    theirs = again[again["origin"] == origins[-1]].reset_index(drop=True)[cols]
    pd.testing.assert_frame_equal(last, theirs)


def test_first_origin_is_judged_by_a_day_of_publications_from_a_model_fitted_before_it() -> None:
    """One extra model, fitted on the data up to a day before the first origin, makes
    the hourly publications of that day; nothing of the first origin's own model or
    of the data from the first origin on goes into them."""
    history = _noisier_later()
    fits: list[pd.Timestamp] = []

    class _Fits(_Recording):
        def fit(self, history: pd.Series) -> _Fits:
            fits.append(history.index[-1])
            return cast("_Fits", super().fit(history))

    calls: list[tuple[pd.Timestamp, int]] = []
    kwargs: dict[str, Any] = {"horizon": 288, "origins": 2, "stride": 288, "refit_every": 288}
    frame = backtest(history, lambda: _Fits(calls), model_name="x", recalibrate=True, **kwargs)
    first = frame["origin"].min()
    step = pd.Timedelta(minutes=5)
    assert fits[0] == first - pd.Timedelta(days=1) - step  # the warm-up model
    assert fits[1] == first - step  # the first origin's own
    # the history cannot spare a day before the first origin: no warm-up, band as calibrated
    short = history.iloc[: 288 + 1 + 2 * 288]
    fits.clear()
    frame = backtest(short, lambda: _Fits(calls), model_name="x", recalibrate=True, **kwargs)
    plain = backtest(short, "seasonal_naive", recalibrate=False, **kwargs)
    assert fits[0] == frame["origin"].min() - step
    first_rows = frame["origin"] == frame["origin"].min()
    pd.testing.assert_series_equal(
        frame.loc[first_rows, "yhat_upper"], plain.loc[first_rows, "yhat_upper"]
    )


def test_auto_backtests_are_recalibrated_by_default() -> None:
    """``model="auto"`` is what the service serves, publish job's recalibration included."""
    series = to_grid(
        read_series_csv(DATA / "realAWSCloudwatch" / "rds_cpu_utilization_e47b3b.csv"),
        timedelta(minutes=5),
    ).iloc[-6 * 288 :]
    kwargs: dict[str, Any] = {"horizon": 12, "origins": 24, "stride": 12, "refit_every": 10**6}
    from forecaster.estimators.base import create_estimator

    def factory() -> Any:
        return create_estimator("auto", candidates=("seasonal_naive",), horizon=12, n_jobs=1)

    served = backtest(series, factory, model_name="auto", **kwargs)
    plain = backtest(series, factory, model_name="auto", recalibrate=False, **kwargs)
    pd.testing.assert_series_equal(served["yhat"], plain["yhat"])
    assert not np.allclose(served["yhat_upper"], plain["yhat_upper"])


# -- the publish job --------------------------------------------------------------------

T0 = datetime(2026, 1, 5, tzinfo=UTC)
STEP = timedelta(minutes=5)


@dataclass
class _Ctx:
    store: Store
    band_scales: dict[str, tuple[datetime, tuple[float, float]]] = field(default_factory=dict)


@pytest.fixture
def ctx(db_url: str) -> Any:
    engine = make_engine(DatabaseSettings(url=db_url))
    upgrade(engine)
    store = Store(engine)
    store.ensure_series(name="rps", family="rps", step_seconds=300, horizon_steps=12)
    yield _Ctx(store)
    engine.dispose()


def _publish_hourly(store: Store, hours: int, steps: int = 12) -> None:
    """Hourly forecasts of ``steps`` steps: yhat 10 with the estimator's band 9.5..10.5
    stretched by 2 over the first hour of lead; beyond it yhat 10.5 with 10..11
    stretched by 4."""
    for h in range(hours):
        generated = T0 + timedelta(hours=h)
        store.publish_forecast(
            series="rps",
            generated_at=generated,
            origin=generated,
            step_seconds=300,
            level=90.0,
            model_name="m",
            model_version="1",
            run_id="r",
            points=[
                ForecastPoint(
                    step=i, ds=generated + i * STEP, yhat=10.0, yhat_lower=9.0, yhat_upper=11.0
                )
                if i <= 12
                else ForecastPoint(
                    step=i, ds=generated + i * STEP, yhat=10.5, yhat_lower=8.5, yhat_upper=12.5
                )
                for i in range(1, steps + 1)
            ],
            band_scale=2.0,
            band_scale_long=4.0,
        )


def _history(value: float, hours: int) -> pd.Series:
    index = pd.date_range(T0, periods=hours * 12 + 1, freq="5min", tz="UTC")
    return pd.Series(value, index=index, dtype=float)


@pytest.mark.parametrize(("observed", "expected"), [(10.75, 1.5), (10.0, 0.5), (50.0, 3.0)])
def test_publish_scales_the_band_by_the_last_days_misses(
    ctx: Any, observed: float, expected: float
) -> None:
    from forecaster.jobs.publish import _band_scale

    _publish_hourly(ctx.store, 12)
    history = _history(observed, 12)
    origin = history.index[-1].to_pydatetime()
    # no forecast beyond an hour of lead was made: the long scale stays 1
    assert _band_scale(ctx, "rps", history, origin) == pytest.approx((expected, 1.0))


def test_publish_scales_leads_beyond_an_hour_by_their_own_misses(ctx: Any) -> None:
    """Observed 10.75: the short forecasts (10, band +-0.5) needed 1.5, the longer ones
    (10.5, band +-0.5) 0.5, narrowed only to 0.9 (``LONG_SCALE_BOUNDS``: a day's
    long-lead misses are too few to narrow on); each scale undoes its own stored
    stretch (2 and 4)."""
    from forecaster.jobs.publish import _band_scale

    _publish_hourly(ctx.store, 12, steps=36)
    history = _history(10.75, 12)
    origin = history.index[-1].to_pydatetime()
    assert _band_scale(ctx, "rps", history, origin) == pytest.approx((1.5, 0.9))
    long_rows = ctx.store.long_lead_forecast_points("rps", since=T0, until=origin)
    assert len(long_rows) > 60
    assert {(r[1], r[2], r[3]) for r in long_rows} == {(10.5, 10.0, 11.0)}
    short_rows = ctx.store.hourly_forecast_points("rps", since=T0, until=origin)
    assert {(r[1], r[2], r[3]) for r in short_rows} == {(10.0, 9.5, 10.5)}


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_band_scale_periods_are_hours_offset_per_series(moment: datetime) -> None:
    """Each series recomputes its scales once an hour, at its own minute of the hour."""
    from forecaster.jobs.publish import _scale_period

    moment = moment.replace(tzinfo=UTC)
    for name in ("rps", "checkout_rps", 'rps_by_route{route="/pay"}'):
        start = _scale_period(name, moment)
        assert start <= moment < start + timedelta(hours=1)
        assert _scale_period(name, start) == start
        assert _scale_period(name, start + timedelta(hours=1)) == start + timedelta(hours=1)
    offsets = {_scale_period(f"s{i}", moment).minute for i in range(200)}
    assert len(offsets) > 30  # spread over the hour, not all at its top


def test_publish_scale_is_one_without_past_forecasts_and_cached_per_hour(ctx: Any) -> None:
    from forecaster.jobs.publish import _band_scale

    history = _history(50.0, 12)
    origin = history.index[-1].to_pydatetime()
    assert _band_scale(ctx, "rps", history, origin) == (1.0, 1.0)
    _publish_hourly(ctx.store, 12)
    assert _band_scale(ctx, "rps", history, origin) == (1.0, 1.0)  # same hour: cached
    assert _band_scale(ctx, "rps", history, origin + timedelta(hours=1)) == (3.0, 1.0)
