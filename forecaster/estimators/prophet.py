"""Prophet estimator with bounded cost: capped history, MAP fit, residual intervals.

Seasonalities are only fitted when the history covers at least two cycles (daily
needs two days, weekly two weeks); yearly seasonality is never fitted. With
``uncertainty_samples=0`` (the default) Prophet draws no samples and the interval
comes from empirical quantiles of the in-sample residuals (an estimator that is
wrapped by :class:`~forecaster.estimators.auto.AutoEstimator` is recalibrated
conformally anyway). Serialised with ``prophet.serialize`` (JSON, never pickle).
"""

from __future__ import annotations

import logging
import math
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from forecaster.errors import EstimatorError
from forecaster.estimators import (
    DAY,
    RECENT_BIAS_STEPS,
    WEEK,
    check_halflife,
    check_history,
    forecast_frame,
    history_step,
    recent_bias,
    require_fitted,
)
from forecaster.estimators.naive import LEVELS, offsets_at

if TYPE_CHECKING:
    from typing import Self

    import pandas as pd

#: Seconds one Prophet fit may take (20x the 2-5 s of 4-8 weeks of 5-minute data).
DEFAULT_FIT_TIMEOUT = 60.0

#: prophet logs an ERROR at import when plotly (interactive plots, unused here) is
#: missing; set before any import of prophet, including in worker processes.
logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)


def _quiet_backends() -> None:
    """Silence cmdstanpy's and prophet's INFO chatter (does not touch global logging)."""
    from cmdstanpy.utils import get_logger

    get_logger()  # installs cmdstanpy's own handler first, so our level sticks
    for name in ("cmdstanpy", "prophet"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def _quiet_warnings() -> Iterator[None]:
    """Hide pandas deprecation chatter raised inside prophet / cmdstanpy (harmless)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _naive_utc(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    return index.tz_convert("UTC").tz_localize(None)


class ProphetEstimator:
    """Prophet with daily/weekly seasonality when the history supports it.

    Args:
        history_window: Only the most recent part of the history is used (bounds cost).
        daily: Force daily seasonality on/off; None = only with >= 2 days of history.
        weekly: Force weekly seasonality on/off; None = only with >= 2 weeks.
        uncertainty_samples: Prophet's own sampling (0 = intervals from residuals).
        changepoint_prior_scale: Prophet's trend flexibility.
        recent_bias_halflife: If set (steps), add the mean residual of the last
            observations before the forecast start, decaying with this half-life over
            the lead (:func:`~forecaster.estimators.recent_bias`).
        seasonality_mode: ``"additive"`` or ``"multiplicative"``.
        fit_timeout: Seconds one fit may take before cmdstan is stopped and the fit
            fails with :class:`EstimatorError` (None: no limit). A fit of 4-8 weeks of
            5-minute data takes 2-5 s; the limit stops a pathological one from
            holding a training cycle (``auto`` then falls back to another candidate).
    """

    name = "prophet"

    @property
    def follows_recent_level(self) -> bool:
        """Whether ``predict(follow_level=False)`` can differ from ``predict()``."""
        return bool(self.recent_bias_halflife)

    def __init__(
        self,
        *,
        history_window: timedelta = timedelta(days=28),
        daily: bool | None = None,
        weekly: bool | None = None,
        uncertainty_samples: int = 0,
        changepoint_prior_scale: float = 0.05,
        recent_bias_halflife: float | None = None,
        seasonality_mode: Literal["additive", "multiplicative"] = "additive",
        fit_timeout: float | None = DEFAULT_FIT_TIMEOUT,
    ) -> None:
        if fit_timeout is not None and not fit_timeout > 0:
            raise EstimatorError(f"fit_timeout must be positive seconds, got {fit_timeout}")
        self.history_window = history_window
        self.daily = daily
        self.weekly = weekly
        self.uncertainty_samples = uncertainty_samples
        self.changepoint_prior_scale = changepoint_prior_scale
        self.recent_bias_halflife = check_halflife(recent_bias_halflife)
        self.seasonality_mode = seasonality_mode
        self.fit_timeout = fit_timeout
        self.model_: Any = None
        self.step_: timedelta | None = None
        self.last_: str | None = None
        self.offsets_: dict[str, list[float]] = {}
        self.nonnegative_ = True
        self.seasonalities_: list[str] = []

    def fit(self, history: pd.Series) -> Self:
        """Fit Prophet (MAP, single chain) on the last ``history_window`` of ``history``."""
        import numpy as np
        import pandas as pd
        from prophet import Prophet

        _quiet_backends()
        series = check_history(history)
        self.step_ = history_step(series)
        start = series.index[-1] - pd.Timedelta(self.history_window)
        series = series[series.index > start]
        frame = pd.DataFrame({"ds": _naive_utc(series.index), "y": series.to_numpy(dtype=float)})
        frame = frame[np.isfinite(frame["y"].to_numpy(dtype=float))]
        if len(frame) < 3:
            raise EstimatorError(f"prophet needs at least 3 observations, got {len(frame)}")
        span = frame["ds"].iloc[-1] - frame["ds"].iloc[0] + pd.Timedelta(self.step_)
        daily = self.daily if self.daily is not None else span >= 2 * DAY
        weekly = self.weekly if self.weekly is not None else span >= 2 * WEEK
        self.seasonalities_ = [n for n, on in (("daily", daily), ("weekly", weekly)) if on]
        model = Prophet(
            yearly_seasonality=False,
            weekly_seasonality=bool(weekly),
            daily_seasonality=bool(daily),
            uncertainty_samples=self.uncertainty_samples,
            changepoint_prior_scale=self.changepoint_prior_scale,
            seasonality_mode=self.seasonality_mode,
        )
        limit = {} if self.fit_timeout is None else {"timeout": self.fit_timeout}
        # cmdstan's output files (read into the model by the fit) go to a folder removed
        # right after: cmdstanpy's default kept a folder per fit until the process exited,
        # so a long-running scheduler piled them up in /tmp with every training
        with _quiet_warnings(), tempfile.TemporaryDirectory(prefix="forecaster-prophet-") as out:
            try:
                model.fit(frame, algorithm="LBFGS", output_dir=out, **limit)
            except TimeoutError:
                raise EstimatorError(
                    f"prophet fit on {len(frame)} points stopped at its time limit of "
                    f"{self.fit_timeout:g} s"
                ) from None
            fitted = model.predict(frame[["ds"]])
        self.model_ = model
        values = frame["y"].to_numpy(dtype=float)
        resid = values - fitted["yhat"].to_numpy(dtype=float)
        self.offsets_ = {}
        for level in LEVELS:
            alpha = (100.0 - level) / 200.0
            lo, hi = np.quantile(resid, [alpha, 1.0 - alpha])
            self.offsets_[str(level)] = [min(float(lo), 0.0), max(float(hi), 0.0)]
        self.nonnegative_ = bool(values.min() >= 0.0)
        self.last_ = series.index[-1].isoformat()
        return self

    def _predict_at(self, stamps: pd.DatetimeIndex) -> pd.DataFrame:
        import pandas as pd

        future = pd.DataFrame({"ds": _naive_utc(stamps)})
        with _quiet_warnings():
            out: pd.DataFrame = self.model_.predict(future)
        return out

    def predict(
        self,
        horizon: int,
        *,
        history: pd.Series | None = None,
        level: float = 90.0,
        follow_level: bool = True,
    ) -> pd.DataFrame:
        """Forecast ``horizon`` steps after the end of ``history`` (default: the fit history).

        ``follow_level=False`` leaves out the recent-level correction
        (``recent_bias_halflife``).
        """
        import pandas as pd

        require_fitted(self, "model_", self.name)
        assert self.step_ is not None and self.last_ is not None
        step = pd.Timedelta(self.step_)
        last = pd.Timestamp(self.last_)
        series = None
        if history is not None:
            series = check_history(history)
            last = series.index[-1]
        stamps = pd.date_range(last + step, periods=horizon, freq=step)
        recent = None
        if series is not None and self.recent_bias_halflife and follow_level:
            recent = series.iloc[-RECENT_BIAS_STEPS:].dropna()
        if recent is not None and len(recent):
            both = self._predict_at(pd.DatetimeIndex([*recent.index, *stamps]))
            fitted = both["yhat"].to_numpy(dtype=float)
            residuals = recent.to_numpy(dtype=float) - fitted[: len(recent)]
            yhat = fitted[len(recent) :] + recent_bias(
                residuals, horizon, float(self.recent_bias_halflife or 1.0)
            )
            raw = both.iloc[len(recent) :]
        else:
            raw = self._predict_at(stamps)
            yhat = raw["yhat"].to_numpy(dtype=float)
        if self.uncertainty_samples > 0 and "yhat_lower" in raw:
            lower = yhat + (raw["yhat_lower"].to_numpy(dtype=float) - raw["yhat"].to_numpy())
            upper = yhat + (raw["yhat_upper"].to_numpy(dtype=float) - raw["yhat"].to_numpy())
        else:
            lo, hi = offsets_at(self.offsets_, level)
            lower, upper = yhat + lo, yhat + hi
        return forecast_frame(last, self.step_, yhat, lower, upper, nonnegative=self.nonnegative_)

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable state; the model via ``prophet.serialize.model_to_json``."""
        from prophet.serialize import model_to_json

        require_fitted(self, "model_", self.name)
        assert self.step_ is not None
        return {
            "model": model_to_json(self.model_),
            "step_seconds": self.step_.total_seconds(),
            "last": self.last_,
            "offsets": self.offsets_,
            "nonnegative": self.nonnegative_,
            "seasonalities": self.seasonalities_,
            "uncertainty_samples": self.uncertainty_samples,
            "recent_bias_halflife": self.recent_bias_halflife,
            "history_window_seconds": self.history_window.total_seconds(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild from :meth:`get_state` output."""
        from prophet.serialize import model_from_json

        _quiet_backends()
        try:
            halflife = state.get("recent_bias_halflife")
            obj = cls(
                history_window=timedelta(seconds=float(state["history_window_seconds"])),
                uncertainty_samples=int(state["uncertainty_samples"]),
                recent_bias_halflife=None if halflife is None else float(halflife),
            )
            with _quiet_warnings():
                obj.model_ = model_from_json(str(state["model"]))
            obj.step_ = timedelta(seconds=float(state["step_seconds"]))
            obj.last_ = str(state["last"])
            obj.offsets_ = {str(k): [float(x) for x in v] for k, v in state["offsets"].items()}
            obj.nonnegative_ = bool(state["nonnegative"])
            obj.seasonalities_ = [str(s) for s in state["seasonalities"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise EstimatorError(f"invalid {cls.name} state: {exc}") from exc
        if not math.isfinite(obj.step_.total_seconds()):
            raise EstimatorError(f"invalid {cls.name} state: bad step")
        return obj
