"""Outside reference forecasters for the accuracy benchmark, behind the estimator protocol.

Two references that users of the Nixtla libraries would otherwise deploy, wrapped so
that :func:`forecaster.evaluation.backtest` drives them exactly like our own
estimators (same origins, same 28-day history window, same refit schedule, no
peeking):

* ``mstl_autoets``: statsforecast's ``MSTL`` with daily and weekly seasons and an
  ``AutoETS`` trend (non-seasonal, ``model="ZZN"``), 90% intervals from the model.
  A season is kept only when the history holds two full periods of it (R's
  ``forecast::mstl`` rule), so a series with less than two weeks before the origin
  gets the daily season only; the ``model`` column says which seasons were used.
  It refits at every call of ``fit`` and forecasts only from the end of its fit
  history, so it serves the day-ahead task (where every origin is a refit).
* ``mlforecast_lgbm``: mlforecast with LightGBM, set up the way its documentation
  does it: lags 1..12 steps, one day and one week (the weekly lag only with two
  weeks of history, else no row would be left to train on); rolling means of lag 1 over 12
  steps and one day; calendar features (hour, day of week, minute); conformal
  ``PredictionIntervals`` with ``h`` the task horizon (and mlforecast's default two
  calibration windows). Between refits it forecasts
  from the newest observations without refitting: ``MLForecast.update`` appends
  the observations that arrived since the last call and ``predict`` runs on them,
  keeping the conformal scores computed at fit time (mlforecast's documented way
  to serve a trained model on new data).

Both need the ``bench`` extra (``pip install -e '.[dev,bench]'``); nothing in the
``forecaster`` package imports them. Missing observations are linearly
interpolated (statsforecast refuses NaN; LightGBM cannot learn from a NaN target),
as a user of either library has to. Forecasts are not clipped at zero.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from forecaster.errors import EstimatorError
from forecaster.estimators import DAY, WEEK, check_history, forecast_frame, history_step, steps_in

if TYPE_CHECKING:
    from typing import Self

    import pandas as pd

#: Names of the references, as they appear in the benchmark tables.
REFERENCES = ("mstl_autoets", "mlforecast_lgbm")


def _frame(series: pd.Series) -> pd.DataFrame:
    """Nixtla long format (``unique_id, ds, y``), naive UTC timestamps, gaps interpolated."""
    import pandas as pd

    y = series.interpolate(limit_direction="both")
    return pd.DataFrame(
        {
            "unique_id": "series",
            "ds": series.index.tz_convert("UTC").tz_localize(None),
            "y": y.to_numpy(dtype=float),
        }
    )


def _freq(step: timedelta) -> str:
    return f"{int(step.total_seconds())}s"


def _nixtla_frame(
    out: pd.DataFrame, column: str, pct: int, last: pd.Timestamp, step: timedelta
) -> pd.DataFrame:
    """Our forecast frame from a Nixtla forecast (``column``, ``column-lo/hi-pct``)."""
    return forecast_frame(
        last,
        step,
        out[column].to_numpy(dtype=float),
        out[f"{column}-lo-{pct}"].to_numpy(dtype=float),
        out[f"{column}-hi-{pct}"].to_numpy(dtype=float),
        nonnegative=False,
    )


class MSTLReference:
    """statsforecast ``MSTL(season_length=[day, week], trend_forecaster=AutoETS(model="ZZN"))``.

    Args:
        level: Interval level in percent that ``fit`` prepares.
    """

    name = "mstl_autoets"

    def __init__(self, level: float = 90.0) -> None:
        self.level = level
        self.seasons_: list[int] = []
        self.step_: timedelta | None = None
        self.last_: pd.Timestamp | None = None
        self.history_: pd.Series | None = None
        self.description = "mstl_autoets"

    def fit(self, history: pd.Series) -> Self:
        """Remember ``history`` and choose the seasons it can support (two periods each)."""
        series = check_history(history)
        self.step_ = history_step(series)
        wanted = [steps_in(DAY, self.step_), steps_in(WEEK, self.step_)]
        self.seasons_ = [s for s in wanted if len(series) >= 2 * s]
        if not self.seasons_:
            raise EstimatorError(f"MSTL needs two days of history, got {len(series)} steps")
        self.last_ = series.index[-1]
        self.history_ = series
        self.description = f"mstl_autoets(seasons={'+'.join(map(str, self.seasons_))})"
        return self

    def predict(
        self,
        horizon: int,
        *,
        history: pd.Series | None = None,
        level: float = 90.0,
        follow_level: bool = True,  # noqa: ARG002 - the protocol's; no level terms here
    ) -> pd.DataFrame:
        """Forecast ``horizon`` steps after the fit history (the only origin it serves)."""
        from statsforecast import StatsForecast
        from statsforecast.models import MSTL, AutoETS

        if self.history_ is None or self.step_ is None or self.last_ is None:
            raise EstimatorError("MSTL reference is not fitted")
        if history is not None and check_history(history).index[-1] != self.last_:
            raise EstimatorError("the MSTL reference forecasts only from its fit origin")
        model = MSTL(season_length=self.seasons_, trend_forecaster=AutoETS(model="ZZN"))
        engine = StatsForecast(models=[model], freq=_freq(self.step_), n_jobs=1)
        pct = int(round(level))
        out = engine.forecast(h=horizon, df=_frame(self.history_), level=[pct])
        return _nixtla_frame(out, "MSTL", pct, self.last_, self.step_)


class MLForecastReference:
    """mlforecast + LightGBM with lags, rolling means, calendar features, conformal intervals.

    Args:
        horizon: Steps ahead; the conformal ``PredictionIntervals`` are built for it.
        level: Interval level in percent.
        n_windows: Conformal calibration windows of ``horizon`` steps each
            (mlforecast's default, 2). Each window is one more LightGBM fit inside
            mlforecast's cross-validation, so more windows multiply the cost of a refit.
    """

    name = "mlforecast_lgbm"

    def __init__(self, horizon: int, level: float = 90.0, n_windows: int = 2) -> None:
        self.horizon = horizon
        self.level = level
        self.n_windows = n_windows
        self.forecaster_: Any = None
        self.step_: timedelta | None = None
        self.last_: pd.Timestamp | None = None
        self.description = "mlforecast_lgbm"

    def fit(self, history: pd.Series) -> Self:
        """Fit LightGBM on lag/rolling/calendar features and calibrate conformally."""
        import lightgbm as lgb
        from mlforecast import MLForecast
        from mlforecast.lag_transforms import RollingMean
        from mlforecast.utils import PredictionIntervals

        series = check_history(history)
        step = history_step(series)
        day, week = steps_in(DAY, step), steps_in(WEEK, step)
        # A lag of a week leaves no training rows before a week of history; like MSTL's
        # seasons it is used when the history holds two weeks.
        lags = [*range(1, 13), day, *([week] if len(series) >= 2 * week else [])]
        self.forecaster_ = MLForecast(
            models={"lgbm": lgb.LGBMRegressor(num_threads=1, verbosity=-1)},
            freq=_freq(step),
            lags=lags,
            lag_transforms={1: [RollingMean(window_size=12), RollingMean(window_size=day)]},
            date_features=["hour", "dayofweek", "minute"],
            num_threads=1,
        )
        self.forecaster_.fit(
            _frame(series),
            prediction_intervals=PredictionIntervals(n_windows=self.n_windows, h=self.horizon),
        )
        self.step_ = step
        self.last_ = series.index[-1]
        self.description = f"mlforecast_lgbm(lags 1-12,{','.join(map(str, lags[12:]))})"
        return self

    def predict(
        self,
        horizon: int,
        *,
        history: pd.Series | None = None,
        level: float = 90.0,
        follow_level: bool = True,  # noqa: ARG002 - the protocol's; no level terms here
    ) -> pd.DataFrame:
        """Forecast ``horizon`` steps after ``history`` (observations newer than the fit
        are appended with ``MLForecast.update``; the model is not refit)."""
        if self.forecaster_ is None or self.step_ is None or self.last_ is None:
            raise EstimatorError("mlforecast reference is not fitted")
        if history is not None:
            newer = _frame(check_history(history))
            newer = newer[newer["ds"] > self.last_.tz_convert("UTC").tz_localize(None)]
            if len(newer):
                self.forecaster_.update(newer)
                self.last_ = history.index[-1]
        pct = int(round(level))
        out = self.forecaster_.predict(horizon, level=[pct])
        return _nixtla_frame(out, "lgbm", pct, self.last_, self.step_)


def reference_factory(name: str, *, horizon: int, level: float = 90.0) -> Any:
    """Zero-argument factory building the reference called ``name`` for this horizon.

    Raises:
        EstimatorError: If ``name`` is not one of :data:`REFERENCES`.
    """
    if name == "mstl_autoets":
        return lambda: MSTLReference(level=level)
    if name == "mlforecast_lgbm":
        return lambda: MLForecastReference(horizon=horizon, level=level)
    raise EstimatorError(f"unknown reference {name!r}; choose from {', '.join(REFERENCES)}")
