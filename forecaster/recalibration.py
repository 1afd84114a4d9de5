"""Band recalibration from the forecasts' own recent misses (what the service serves).

An estimator's interval is calibrated once, at training, on out-of-sample residuals
of a few days before it (:func:`forecaster.evaluation.calibrate_intervals`). When the
series then changes its noise or shifts its level, that band covers too little (CPU
traces after a regime change) or, after a noisy stretch has passed, more than it
should. So the band served is rescaled around ``yhat`` by how the forecasts of the
last day actually fared:

* for every observation of the last :data:`WINDOW`, the *required scale* is how far
  the band it was forecast with (un-rescaled, the estimator's own) would have had to
  stretch on the side where the observation fell to hold it: ``(y - yhat) /
  (upper - yhat)`` above, ``(yhat - y) / (yhat - lower)`` below (0 on ``yhat``,
  <= 1 inside the band);
* the scale is the ``level`` quantile of those (at least :data:`MIN_POINTS` of them,
  else 1), clipped to :data:`SCALE_BOUNDS` (the long scale, below, to
  :data:`LONG_SCALE_BOUNDS`); the new band is
  ``yhat - s (yhat - lower), yhat + s (upper - yhat)``.

Only what was observed before the forecast is used. The publish job judges each
observation against the forecast of the most recent hourly publication before it;
:func:`forecaster.evaluation.backtest` against its own earlier origins' forecasts
and, between origins more than an hour apart, the hourly forecasts the service would
have published (:func:`band_scale_from_frames`); before its first origin, those of
the day before it, from a model fitted a day before it, as a service in steady state
has judged them. That *short* scale stretches the
first hour of lead (:data:`SHORT_LEAD`); longer leads get a *long* scale judged the
same way against every forecast made for each observation more than an hour before
it (:func:`long_band_scale_from_frames`; the publish job reads those from
:meth:`~forecaster.store.repository.Store.long_lead_forecast_points`).

Measured with ``forecaster backtest`` hour-ahead (168 hourly origins) before this
was built: rds_cpu_e47b3b coverage 80.5 -> 88.6 %, ec2_network_in 96.1 -> 93.1 % with
the band 47 % narrower, tweets_amzn 94.1 -> 89.9 %. Day-ahead coverage with the
lead-aware scales: docs/accuracy.md (2026-11-29).

The regression detector's reference band is not rescaled: a lasting regression
would otherwise widen the band it is judged against until it no longer stands out.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    FloatArray = npt.NDArray[np.float64]

#: How far back the misses that set the scale reach.
WINDOW = timedelta(days=1)
#: Forecast steps up to this lead get the *short* scale: each observation judged
#: against the latest hourly publication before it (leads up to an hour). Longer
#: leads get the *long* scale: each observation judged against every forecast made
#: for it more than this before. A short-lead band that over- or under-covers says
#: little about the day-ahead band (day-ahead coverage of the 9 benchmark series when
#: the short scale stretched every lead: 6 of 9 in 85-95 %; see docs/accuracy.md).
SHORT_LEAD = timedelta(hours=1)
#: Fewer judged observations than this leave the band as calibrated (scale 1).
MIN_POINTS = 60
#: The scale never leaves these bounds: at most a band three times as wide, at
#: least half as wide as calibrated.
SCALE_BOUNDS = (0.5, 3.0)
#: The long scale's bounds: widened as far, narrowed by at most a tenth. A day's
#: observations judged against forecasts made hours before them are few independent
#: draws (the ~23 forecasts of each observation miss together), and a calm day
#: narrowed the next day's band more than the next day bore: in the backtests that
#: judge the day before their first origin, the 90% band of three of 17 series covered
#: 80.6-84.5% day-ahead with the long scale bounded as the short one, 87.1-88.9%
#: bounded so (docs/accuracy.md, 2026-11-30).
LONG_SCALE_BOUNDS = (0.9, 3.0)
_EPS = 1e-12


def required_scales(
    yhat: FloatArray, lower: FloatArray, upper: FloatArray, actual: FloatArray
) -> FloatArray:
    """Per observation, the factor the band needed on its side to hold it (NaN dropped)."""
    import numpy as np

    yhat, lower, upper, actual = (np.asarray(a, dtype=float) for a in (yhat, lower, upper, actual))
    keep = np.isfinite(actual) & np.isfinite(yhat) & np.isfinite(lower) & np.isfinite(upper)
    yhat, lower, upper, actual = yhat[keep], lower[keep], upper[keep], actual[keep]
    above = actual >= yhat
    miss = np.where(above, actual - yhat, yhat - actual)
    half = np.where(above, upper - yhat, yhat - lower)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(miss <= _EPS, 0.0, miss / np.maximum(half, _EPS))
    return np.asarray(ratio, dtype=float)


def band_scale(
    required: FloatArray, level: float, *, bounds: tuple[float, float] = SCALE_BOUNDS
) -> float:
    """The ``level`` quantile of ``required``, clipped to ``bounds`` (1 if too few)."""
    import numpy as np

    values = np.asarray(required, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) < MIN_POINTS:
        return 1.0
    low, high = bounds
    quantile = float(np.quantile(np.minimum(values, 1e12), level / 100.0))
    return float(min(max(quantile, low), high))


def rescale_band(
    yhat: FloatArray, lower: FloatArray, upper: FloatArray, scale: float | FloatArray
) -> tuple[FloatArray, FloatArray]:
    """The band stretched by ``scale`` (one factor, or one per point) around ``yhat``.

    A band whose lower bound was at or above 0 everywhere (a nonnegative series)
    keeps its lower bound at 0 or above.
    """
    import numpy as np

    yhat, lower, upper = (np.asarray(a, dtype=float) for a in (yhat, lower, upper))
    new_lower = yhat - scale * (yhat - lower)
    new_upper = yhat + scale * (upper - yhat)
    if len(lower) and bool(np.all(lower >= 0)):
        new_lower = np.maximum(new_lower, 0.0)
    return new_lower, new_upper


def short_steps(step: timedelta) -> int:
    """Forecast steps (1-based) that get the short scale: leads up to :data:`SHORT_LEAD`."""
    return max(1, SHORT_LEAD // step)


def step_scales(steps: FloatArray, step: timedelta, short: float, long: float) -> FloatArray:
    """Per forecast step (1-based), the short scale up to :data:`SHORT_LEAD`, else the long."""
    import numpy as np

    return np.where(np.asarray(steps) <= short_steps(step), short, long).astype(float)


def rescale_frame(
    frame: pd.DataFrame,
    scale: float,
    *,
    long_scale: float | None = None,
    step: timedelta | None = None,
) -> pd.DataFrame:
    """``frame`` (``step, yhat, yhat_lower, yhat_upper``) with its band stretched by ``scale``.

    With ``long_scale`` (and the grid ``step``), steps beyond :data:`SHORT_LEAD` are
    stretched by that instead.
    """
    factor: float | FloatArray = scale
    if long_scale is not None:
        if step is None:
            raise ValueError("rescale_frame: long_scale needs the grid step")
        factor = step_scales(frame["step"].to_numpy(), step, scale, long_scale)
    lower, upper = rescale_band(
        frame["yhat"].to_numpy(dtype=float),
        frame["yhat_lower"].to_numpy(dtype=float),
        frame["yhat_upper"].to_numpy(dtype=float),
        factor,
    )
    return frame.assign(yhat_lower=lower, yhat_upper=upper)


def band_scale_from_frames(
    earlier: Sequence[pd.DataFrame], origin: pd.Timestamp, level: float
) -> float:
    """Scale for a forecast from ``origin`` out of earlier origins' forecasts.

    ``earlier`` holds backtest rows (``ds, yhat, yhat_lower, yhat_upper, y``) with the
    estimator's own bands; rows with ``origin - WINDOW <= ds < origin`` are judged
    (their actuals were observed before the origin). Where several forecasts cover
    one ``ds``, the latest one judges it, as in the publish job.
    """
    return _scale_from_frames(earlier, origin, level, latest_only=True)


def long_band_scale_from_frames(
    earlier: Sequence[pd.DataFrame], origin: pd.Timestamp, level: float, step: timedelta
) -> float:
    """The long scale for a forecast from ``origin``: every row of ``earlier`` (backtest
    rows with ``step`` and ``y``, the estimator's own bands) with a lead beyond
    :data:`SHORT_LEAD` and ``origin - WINDOW <= ds < origin`` is judged; bounded by
    :data:`LONG_SCALE_BOUNDS`."""
    return _scale_from_frames(
        earlier, origin, level, beyond_step=short_steps(step), bounds=LONG_SCALE_BOUNDS
    )


def _scale_from_frames(
    earlier: Sequence[pd.DataFrame],
    origin: pd.Timestamp,
    level: float,
    *,
    latest_only: bool = False,
    beyond_step: int = 0,
    bounds: tuple[float, float] = SCALE_BOUNDS,
) -> float:
    """:func:`band_scale` of the rows of ``earlier`` with ``origin - WINDOW <= ds < origin``
    and ``step > beyond_step``; with ``latest_only``, only the latest frame's row per ``ds``."""
    import pandas as pd

    if not earlier:
        return 1.0
    since = origin - pd.Timedelta(WINDOW)
    recent = [f[(f["ds"] >= since) & (f["ds"] < origin)] for f in earlier[-400:]]
    if beyond_step:
        recent = [r[r["step"] > beyond_step] for r in recent]
    recent = [r for r in recent if len(r)]
    if not recent:
        return 1.0
    rows = pd.concat(recent)
    if latest_only:
        rows = rows.drop_duplicates("ds", keep="last")
    required = required_scales(
        rows["yhat"].to_numpy(),
        rows["yhat_lower"].to_numpy(),
        rows["yhat_upper"].to_numpy(),
        rows["y"].to_numpy(),
    )
    return band_scale(required, level, bounds=bounds)
