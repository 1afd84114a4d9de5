"""Fixtures for estimator tests: slices of real NAB traces and seeded synthetic series."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecaster.timeseries import read_series_csv, to_grid

NAB_DIR = Path(__file__).resolve().parents[2] / "data" / "nab"


def load_nab(relpath: str, *, days: float, freq: str = "5min", skip_days: float = 0) -> pd.Series:
    """The first ``days`` days (after ``skip_days``) of a NAB trace on a ``freq`` grid."""
    series = to_grid(read_series_csv(NAB_DIR / relpath), pd.Timedelta(freq).to_pytimedelta())
    start = series.index[0] + pd.Timedelta(days=skip_days)
    end = start + pd.Timedelta(days=days)
    out = series[(series.index >= start) & (series.index < end)]
    out.index.freq = series.index.freq
    return out


def synthetic(
    days: float = 4,
    *,
    step: timedelta = timedelta(minutes=5),
    seed: int = 0,
    level: float = 100.0,
    noise: float = 5.0,
) -> pd.Series:
    """Seeded daily-periodic load (always positive) on a UTC grid."""
    rng = np.random.default_rng(seed)
    n = int(days * 86400 / step.total_seconds())
    index = pd.date_range("2024-01-01", periods=n, freq=pd.Timedelta(step), tz="UTC")
    phase = 2 * np.pi * (index.hour * 60 + index.minute).to_numpy() / 1440.0
    values = level * (1.0 + 0.5 * np.sin(phase)) + rng.normal(0, noise, n)
    return pd.Series(np.maximum(values, 1.0), index=index, name="y")


@pytest.fixture
def nab_slice() -> Callable[..., pd.Series]:
    """Loader for NAB slices: ``nab_slice("realTweets/Twitter_volume_AAPL.csv", days=3)``."""
    return load_nab


@pytest.fixture
def make_series() -> Callable[..., pd.Series]:
    """Factory of seeded synthetic daily-periodic series."""
    return synthetic


def check_forecast(frame: pd.DataFrame, horizon: int, *, last: pd.Timestamp) -> None:
    """Assert the forecast frame contract."""
    assert list(frame.columns) == ["ds", "step", "yhat", "yhat_lower", "yhat_upper"]
    assert len(frame) == horizon
    assert frame["step"].tolist() == list(range(1, horizon + 1))
    assert str(frame["ds"].dt.tz) == "UTC"
    assert frame["ds"].iloc[0] > last
    values = frame[["yhat", "yhat_lower", "yhat_upper"]].to_numpy()
    assert np.isfinite(values).all()
    assert (frame["yhat_lower"] <= frame["yhat"]).all()
    assert (frame["yhat"] <= frame["yhat_upper"]).all()


@pytest.fixture
def assert_forecast() -> Callable[..., None]:
    """The forecast-frame contract check."""
    return check_forecast
