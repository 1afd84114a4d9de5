"""Forecasting estimators and the small helpers they share (history checks, forecast frames).

The protocol and the registry of names live in :mod:`forecaster.estimators.base`;
concrete estimators live in their own modules and are imported on first use.
Nothing heavy is imported here: pandas and numpy are imported inside functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from forecaster.errors import EstimatorError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    FloatArray = npt.NDArray[np.float64]

DAY = timedelta(days=1)
WEEK = timedelta(days=7)


def history_step(history: pd.Series) -> timedelta:
    """The grid step of ``history`` (its ``index.freq``, else the most common spacing).

    Raises:
        EstimatorError: If the step cannot be determined.
    """
    import pandas as pd

    freq = getattr(history.index, "freq", None)
    if freq is not None:
        try:
            return timedelta(seconds=float(pd.Timedelta(freq).total_seconds()))
        except ValueError:
            pass
    if len(history) < 2:
        raise EstimatorError("cannot determine the step of a history with fewer than two points")
    diffs = history.index.to_series().diff().dropna()
    return timedelta(seconds=float(diffs.mode().iloc[0].total_seconds()))


def steps_in(duration: timedelta, step: timedelta) -> int:
    """How many whole ``step`` fit in ``duration`` (at least 1)."""
    return max(1, int(round(duration.total_seconds() / step.total_seconds())))


def check_history(history: pd.Series, *, what: str = "history") -> pd.Series:
    """Validate ``history`` and return it as a float Series on a regular UTC grid.

    Accepts a Series with a tz-aware DatetimeIndex. If ``index.freq`` is missing
    the series is put on the grid of its most common spacing (gaps become NaN).

    Raises:
        EstimatorError: If it is not a time-indexed series or holds no finite value.
    """
    import numpy as np
    import pandas as pd

    from forecaster.timeseries import to_grid

    if not isinstance(history, pd.Series) or not isinstance(history.index, pd.DatetimeIndex):
        raise EstimatorError(f"{what} must be a pandas Series with a DatetimeIndex")
    index: pd.DatetimeIndex = history.index
    if index.tz is None:
        raise EstimatorError(f"{what} must have a tz-aware (UTC) DatetimeIndex")
    series = history.astype(float)
    if index.freq is None:
        if len(series) < 2:
            raise EstimatorError(f"{what} has fewer than two points; cannot infer its step")
        series = to_grid(series, history_step(series), anchor="input")
    if str(index.tz) != "UTC":
        series = series.tz_convert("UTC")
    values = series.to_numpy(dtype=float)
    if not np.isfinite(values).any():
        raise EstimatorError(f"{what} has no finite values")
    if np.isinf(values).any():
        raise EstimatorError(f"{what} contains infinite values")
    return series


def forecast_frame(
    last: pd.Timestamp,
    step: timedelta,
    yhat: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    *,
    nonnegative: bool,
) -> pd.DataFrame:
    """Build the forecast frame (``ds, step, yhat, yhat_lower, yhat_upper``).

    ``ds`` starts one ``step`` after ``last``. Non-finite values are replaced
    (yhat by the nearest finite forecast or 0, bounds by yhat), bounds are ordered
    around yhat, and everything is clipped at 0 when ``nonnegative``.
    """
    import numpy as np
    import pandas as pd

    point: Any = np.asarray(yhat, dtype=np.float64).copy()
    horizon = len(point)
    if not np.isfinite(point).all():
        point = pd.Series(point).ffill().bfill().fillna(0.0).to_numpy(dtype=np.float64)
    yhat = point
    lower = np.where(np.isfinite(lower), lower, yhat)
    upper = np.where(np.isfinite(upper), upper, yhat)
    if nonnegative:
        yhat = np.maximum(yhat, 0.0)
        lower = np.maximum(lower, 0.0)
        upper = np.maximum(upper, 0.0)
    lower = np.minimum(lower, yhat)
    upper = np.maximum(upper, yhat)
    ds = pd.date_range(
        start=pd.Timestamp(last) + pd.Timedelta(step), periods=horizon, freq=pd.Timedelta(step)
    )
    return pd.DataFrame(
        {
            "ds": ds,
            "step": np.arange(1, horizon + 1, dtype=np.int64),
            "yhat": yhat,
            "yhat_lower": lower,
            "yhat_upper": upper,
        }
    )


def z_value(level: float) -> float:
    """Two-sided standard normal quantile for a central interval of ``level`` percent."""
    from statistics import NormalDist

    if not 0.0 < level < 100.0:
        raise EstimatorError(f"level must be between 0 and 100 percent, got {level!r}")
    return float(NormalDist().inv_cdf(0.5 + level / 200.0))


def level_blend(stored: Iterable[float], level: float) -> tuple[float, float, float, float]:
    """How the offsets of a ``level`` % interval come from those stored at ``stored`` levels.

    Returns ``(a, b, w, ratio)``: the offsets are ``((1 - w) * off[a] + w * off[b]) *
    ratio``. A stored level is used as is; one between two stored levels is
    interpolated on the normal z scale; one outside them rescales the nearest by the
    ratio of z values. Wider levels never get narrower intervals (the 90 % offsets
    rescaled by z(98)/z(90) were narrower than the stored 95 % ones on heavy tails).

    Raises:
        EstimatorError: If ``level`` is not in (0, 100) or nothing is stored.
    """
    levels = sorted({float(x) for x in stored})
    if not levels:
        raise EstimatorError("no interval levels are stored")
    z = z_value(level)
    if level in levels:
        return level, level, 0.0, 1.0
    if level < levels[0]:
        return levels[0], levels[0], 0.0, z / z_value(levels[0])
    if level > levels[-1]:
        return levels[-1], levels[-1], 0.0, z / z_value(levels[-1])
    above = next(x for x in levels if x > level)
    below = max(x for x in levels if x < level)
    za, zb = z_value(below), z_value(above)
    return below, above, (z - za) / (zb - za), 1.0


def require_fitted(obj: Any, attr: str, name: str) -> None:
    """Raise :class:`EstimatorError` if ``obj.attr`` is still None (not fitted)."""
    if getattr(obj, attr, None) is None:
        raise EstimatorError(f"{name} estimator is not fitted; call fit() first")


#: Recent observations whose mean residual :func:`recent_bias` carries into a forecast.
RECENT_BIAS_STEPS = 12


def recent_bias(residuals: FloatArray, horizon: int, halflife: float) -> FloatArray:
    """Offsets that carry the mean of the recent ``residuals`` into the next ``horizon`` steps.

    ``residuals`` are actual minus model over the last :data:`RECENT_BIAS_STEPS`
    observations (NaN where unknown); their mean is added to step ``h`` times
    ``0.5 ** (h / halflife)``, so a model that does not follow the latest level (a
    repeat of yesterday, a seasonal fit) starts from where the series is now and
    returns to its own shape over a few half-lives. All zeros without a finite residual.
    """
    import numpy as np

    finite = residuals[np.isfinite(residuals)]
    if not len(finite):
        return np.zeros(horizon)
    return float(np.mean(finite)) * np.power(0.5, np.arange(1, horizon + 1) / halflife)


def check_halflife(halflife: float | None) -> float | None:
    """``halflife`` as a float (None stays None).

    Raises:
        EstimatorError: If it is not a positive finite number of steps.
    """
    import math

    if halflife is None:
        return None
    if not (isinstance(halflife, int | float) and math.isfinite(halflife) and halflife > 0):
        raise EstimatorError(
            f"recent_bias_halflife must be a positive number of steps, got {halflife!r}"
        )
    return float(halflife)
