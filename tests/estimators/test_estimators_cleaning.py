"""History cleaning: outages, spikes and counter resets go; level shifts stay."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecaster.estimators.cleaning import clean_history


def test_outage_in_busy_hours_becomes_missing(make_series):
    history = make_series(days=4)
    history.iloc[400:430] = 0.0
    result = clean_history(history)
    assert result.outage_points == 30
    assert result.series.iloc[400:430].isna().all()
    assert any(flag.startswith("outages") for flag in result.flags)
    pd.testing.assert_series_equal(result.series.iloc[:400], history.iloc[:400])


def test_outage_reaching_the_end_is_kept(make_series):
    history = make_series(days=4)
    history.iloc[-30:] = 0.0
    result = clean_history(history)
    assert result.outage_points == 0
    assert (result.series.iloc[-30:] == 0.0).all()


def test_routine_zeros_are_not_outages(make_series):
    history = make_series(days=4)
    night = np.asarray(history.index.hour < 6)
    history[night] = 0.0
    result = clean_history(history)
    assert result.outage_points == 0
    assert (result.series[night] == 0.0).all()


def test_isolated_spike_replaced_but_level_shift_kept(make_series):
    history = make_series(days=4, noise=2.0)
    shift_at = 700
    history.iloc[shift_at:] += 400.0
    history.iloc[300] += 5000.0
    result = clean_history(history)
    assert result.spike_points == 1
    assert abs(result.series.iloc[300] - history.iloc[299]) < 50
    after = result.series.iloc[shift_at:]
    pd.testing.assert_series_equal(after, history.iloc[shift_at:])


def test_spikes_can_be_kept_while_outages_are_still_cleaned(make_series):
    history = make_series(days=4, noise=2.0)
    history.iloc[300] += 5000.0
    history.iloc[500:530] = 0.0
    result = clean_history(history, spikes=False)
    assert result.spike_points == 0
    assert result.series.iloc[300] == history.iloc[300]
    assert result.outage_points == 30
    assert not any(flag.startswith("spikes") for flag in result.flags)


def test_counter_resets_are_undone():
    index = pd.date_range("2024-01-01", periods=200, freq="5min", tz="UTC")
    counter = np.arange(200, dtype=float) * 10.0
    counter[120:] -= counter[120]  # the process restarted: counter back to zero
    series = pd.Series(counter, index=index)
    result = clean_history(series)
    assert result.counter_resets == 1
    assert (np.diff(result.series.to_numpy()) >= 0).all()


def test_real_trace_is_mostly_untouched(nab_slice):
    history = nab_slice("realTweets/Twitter_volume_GOOG.csv", days=7)
    result = clean_history(history)
    changed = (result.series != history) & history.notna()
    assert changed.mean() < 0.02


def test_half_hour_burst_replaced_and_recent_shift_kept(make_series):
    history = make_series(days=4, noise=2.0)
    history.iloc[500:506] += 3000.0
    history.iloc[-10:] += 800.0  # the newest points: could be a real shift, never touched
    result = clean_history(history)
    assert result.spike_points == 6
    assert (result.series.iloc[500:506] < 300).all()
    pd.testing.assert_series_equal(result.series.iloc[-10:], history.iloc[-10:])


def test_steps_longer_than_a_third_of_a_day_are_cleaned():
    """At a 12-hour or daily step a day holds fewer steps than the spike window: the
    local scale is taken over the spike window then (it raised pandas' "min_periods 3
    must be <= window 1", failing `forecaster detect --freq 1d` and any training of a
    daily series whose horizon is a day or more)."""
    for step in ("12h", "1D"):
        index = pd.date_range("2024-01-01", periods=60, freq=step, tz="UTC")
        values = np.random.default_rng(3).normal(100.0, 1.0, 60)
        values[30] = 1000.0
        result = clean_history(pd.Series(values, index=index))
        assert result.spike_points == 1, step
        assert result.series.iloc[30] < 200.0
        pd.testing.assert_series_equal(
            result.series.drop(index[30]),
            pd.Series(values, index=index).drop(index[30]),
            check_freq=False,
        )
