"""Rolling-origin backtests, forecast metrics, conformal interval calibration and plots.

This module implements the backtest contract of ``docs/EVALUATION.md``:

* Origins are positions on the history's grid. The last origin leaves exactly
  ``horizon`` points from it to the end (its step 1 is the origin itself); earlier
  origins are ``stride`` steps apart. A forecast made at origin ``o`` sees only
  observations strictly before ``o``.
* Estimators are refit at most once every ``refit_every`` steps of origin time; in
  between, the last fitted estimator forecasts from each new origin using the
  observations up to it (``predict(history=...)``), as production does.
* MASE divides the mean absolute error over the horizon by the in-sample MAE of the
  daily seasonal naive forecast over the ``history_window`` before the origin and is
  averaged over origins; sMAPE is in percent (0-200); coverage is the share of
  actuals inside ``[yhat_lower, yhat_upper]``; width is mean width / mean actual.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecaster.durations import format_duration
from forecaster.errors import EstimatorError, InputDataError
from forecaster.estimators import (
    DAY,
    WEEK,
    check_history,
    history_step,
    level_blend,
    steps_in,
)
from forecaster.recalibration import (
    WINDOW,
    band_scale_from_frames,
    long_band_scale_from_frames,
    rescale_frame,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from forecaster.estimators.base import Estimator

    FloatArray = npt.NDArray[np.float64]

BACKTEST_COLUMNS = ("origin", "ds", "step", "yhat", "yhat_lower", "yhat_upper", "model")
DEFAULT_HISTORY_WINDOW = timedelta(days=28)
#: Levels (percent) whose conformal offsets are stored alongside the requested one.
CALIBRATION_LEVELS = (50.0, 80.0, 90.0, 95.0, 99.0)
HOUR = timedelta(hours=1)

EstimatorFactory = Callable[[], "Estimator"]


def model_names() -> list[str]:
    """Names accepted by :func:`backtest` and ``forecaster backtest --model``."""
    from forecaster.estimators.base import estimator_names

    return sorted({*estimator_names(), "seasonal_naive_weekly"})


def estimator_factory(
    name: str, *, horizon: int, level: float = 90.0, n_jobs: int = 1
) -> EstimatorFactory:
    """A zero-argument factory building the estimator called ``name`` for this task.

    ``auto`` and ``lightgbm`` are told the horizon; ``seasonal_naive_weekly`` is the
    seasonal naive with a one-week season; any other registered name is built with
    its defaults.

    Raises:
        EstimatorError: If ``name`` is unknown.
    """
    from forecaster.estimators.base import create_estimator, estimator_class

    if name == "seasonal_naive_weekly":
        from forecaster.estimators.naive import SeasonalNaive

        return lambda: SeasonalNaive(period=WEEK)
    if name == "auto":
        from forecaster.estimators.auto import AutoEstimator

        return lambda: AutoEstimator(horizon=horizon, level=level, n_jobs=n_jobs)
    if name == "lightgbm":
        from forecaster.estimators.gbm import LightGBMEstimator

        return lambda: LightGBMEstimator(max_horizon=horizon, n_jobs=n_jobs)
    if name not in model_names():
        raise EstimatorError(f"unknown model {name!r}; choose from {', '.join(model_names())}")
    estimator_class(name)  # fail now, not at the first origin, if it cannot be imported
    return lambda: create_estimator(name)


def origin_positions(n: int, *, horizon: int, origins: int, stride: int) -> list[int]:
    """Grid positions of the origins for a history of ``n`` points (oldest first)."""
    last = n - horizon
    return [last - (origins - 1 - k) * stride for k in range(origins)]


def _describe(estimator: Estimator, requested: str) -> str:
    """What produced a backtest row: ``auto:<chosen>``, or ``<model>:last_value`` when
    a seasonal naive had less than one season of history and repeated the last value."""
    chosen = getattr(estimator, "chosen", None)
    if requested == "auto" and chosen:
        return f"auto:{chosen}"
    if getattr(estimator, "fallback", False) is True:
        return f"{requested}:last_value"
    return requested


def backtest(
    history: pd.Series,
    model: str | EstimatorFactory,
    *,
    horizon: int,
    origins: int,
    stride: int | None = None,
    refit_every: int | None = None,
    history_window: timedelta = DEFAULT_HISTORY_WINDOW,
    level: float = 90.0,
    progress: bool = False,
    n_jobs: int = 1,
    min_history: timedelta = DAY,
    model_name: str | None = None,
    recalibrate: bool | None = None,
) -> pd.DataFrame:
    """Rolling-origin backtest of one estimator on ``history``.

    Args:
        history: Float series on a regular UTC grid (NaN = missing).
        model: A registered estimator name (see :func:`model_names`) or a factory.
        horizon: Steps forecast from each origin.
        origins: Number of origins.
        stride: Steps between origins (default: ``horizon``).
        refit_every: Refit at most once every this many steps (default: every origin).
        history_window: How much history before an origin the estimator may use.
        level: Central interval level in percent.
        progress: Show a tqdm progress bar on stderr.
        n_jobs: Threads for estimators that take them.
        min_history: History required before the first origin.
        model_name: Name written in the ``model`` column when ``model`` is a factory.
        recalibrate: Rescale each origin's band by how the earlier origins' forecasts
            of the last day fared (:mod:`forecaster.recalibration`), as the publish
            job does with what it serves; the first origin's by a day of hourly
            forecasts from one extra model fitted a day before it. Default: only for
            ``model="auto"`` (the production model).

    Returns:
        One row per origin per step: ``origin, ds, step, yhat, yhat_lower, yhat_upper,
        model, y`` (``y`` is the actual value, NaN where missing). Timestamps are UTC.

    Raises:
        InputDataError: On bad parameters or too little history for the origins.
        EstimatorError: On an unknown model.
    """
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    if horizon < 1 or origins < 1:
        raise InputDataError(f"horizon and origins must be >= 1, got {horizon} and {origins}")
    stride = horizon if stride is None else stride
    if stride < 1:
        raise InputDataError(f"stride must be >= 1 step, got {stride}")
    if refit_every is not None and refit_every < 1:
        raise InputDataError(f"refit_every must be >= 1 step, got {refit_every}")
    if not 0.0 < level < 100.0:
        raise InputDataError(f"level must be between 0 and 100 percent, got {level}")
    if isinstance(model, str):
        factory = estimator_factory(model, horizon=horizon, level=level, n_jobs=n_jobs)
        requested = model
    else:
        factory = model
        requested = model_name or "custom"
    if recalibrate is None:
        recalibrate = requested == "auto"
    series = check_history(history)
    step = history_step(series)
    n = len(series)
    positions = origin_positions(n, horizon=horizon, origins=origins, stride=stride)
    need = steps_in(min_history, step) + 1
    if positions[0] < need:
        raise InputDataError(
            f"too little history: {origins} origin(s) {stride} steps apart with horizon "
            f"{horizon} need at least {need + horizon + (origins - 1) * stride} points "
            f"({need} before the first origin); the series has {n} points of {step}"
        )
    window = steps_in(history_window, step)
    values = series.to_numpy(dtype=float)
    frames: list[pd.DataFrame] = []
    as_forecast: list[pd.DataFrame] = []  # the estimator's own bands, for recalibration
    estimator: Estimator | None = None
    fitted_at = -(10**18)
    per_hour = steps_in(HOUR, step)
    published = -(10**18)  # position of the latest (emulated) publication
    bar = tqdm(total=len(positions), disable=not progress, file=sys.stderr, unit="origin")
    try:
        if recalibrate:
            as_forecast += _warm_up_publications(
                factory,
                series,
                origin=positions[0],
                need=need,
                every=per_hour,
                horizon=horizon,
                window=window,
                level=level,
            )
        for p in positions:
            train = series.iloc[max(0, p - window) : p]
            if recalibrate and estimator is not None:
                # Between origins more than an hour apart the service kept publishing
                # hourly with the model then in force; those forecasts (not only this
                # backtest's origins) are what its recalibration judges.
                as_forecast += _hourly_publications(
                    estimator,
                    series,
                    start=max(published + per_hour, fitted_at, p - steps_in(WINDOW, step)),
                    end=p,
                    every=per_hour,
                    horizon=horizon,
                    window=window,
                    level=level,
                )
            origin = series.index[p]
            try:
                if estimator is None or refit_every is None or p - fitted_at >= refit_every:
                    estimator = factory()
                    estimator.fit(train)
                    fitted_at = p
                forecast = estimator.predict(horizon, history=train, level=level)
            except EstimatorError as exc:
                # "history has no finite values" alone did not say which origin, or that
                # the window before it is --history long
                finite = int(np.isfinite(values[max(0, p - window) : p]).sum())
                gap = (
                    f" (the {format_duration(history_window)} history window before it has "
                    f"{finite} observed point(s) of {len(train)}: a gap in the data covers "
                    "most of it; use a longer --history or fewer origins)"
                    if finite < len(train) / 2
                    else ""
                )
                raise EstimatorError(f"origin {origin.isoformat()}: {exc}{gap}") from exc
            forecast = forecast.assign(
                origin=origin,
                model=_describe(estimator, requested),
                y=values[p : p + horizon],
            )
            if recalibrate:
                scale = band_scale_from_frames(as_forecast, origin, level)
                long_scale = long_band_scale_from_frames(as_forecast, origin, level, step)
                as_forecast.append(forecast)
                published = p
                forecast = rescale_frame(forecast, scale, long_scale=long_scale, step=step)
            frames.append(forecast)
            bar.update(1)
    finally:
        bar.close()
    out = pd.concat(frames, ignore_index=True)
    out["step"] = out["step"].astype(np.int64)
    return out[[*BACKTEST_COLUMNS, "y"]]


def _warm_up_publications(
    factory: EstimatorFactory,
    series: pd.Series,
    *,
    origin: int,
    need: int,
    every: int,
    horizon: int,
    window: int,
    level: float,
) -> list[pd.DataFrame]:
    """The hourly publications of the day before the first origin, from a model fitted
    a day before it (one extra fit): a service in steady state has judged those when it
    publishes at that origin, so the first origin's band is recalibrated as every
    later one's is. Nothing when the history cannot spare the day or that model
    fails (the first origin's band then stays as calibrated)."""
    start = origin - steps_in(WINDOW, history_step(series))
    if start < need:
        return []
    try:
        warm = factory()
        warm.fit(series.iloc[max(0, start - window) : start])
        return _hourly_publications(
            warm,
            series,
            start=start,
            end=origin,
            every=every,
            horizon=horizon,
            window=window,
            level=level,
        )
    except EstimatorError:
        return []  # e.g. a gap covers the day before: the first band stays as calibrated


def _hourly_publications(
    estimator: Estimator,
    series: pd.Series,
    *,
    start: int,
    end: int,
    every: int,
    horizon: int,
    window: int,
    level: float,
) -> list[pd.DataFrame]:
    """Forecasts from the positions ``end - k * every`` in ``[start, end)``: the
    publications the service made between two backtest origins, each from the data
    before it, up to ``horizon`` steps but not past ``end`` (only what was observed
    by then is judged), with actuals in ``y`` for the recalibration."""
    import numpy as np

    values = series.to_numpy(dtype=float)
    out = []
    first = end - every * ((end - max(start, 0)) // every)
    for h in range(max(first, every), end, every):
        ahead = min(horizon, end - h)
        forecast = estimator.predict(
            ahead, history=series.iloc[max(0, h - window) : h], level=level
        )
        out.append(forecast.assign(y=np.asarray(values[h : h + ahead], dtype=float)))
    return out


def naive_scale(values: FloatArray, end: int, *, window: int, season: int) -> float:
    """In-sample MAE of the seasonal naive forecast over ``values[end - window : end]``.

    Falls back to the one-step naive MAE when the window is shorter than a season
    or the seasonal MAE is zero; NaN when neither can be computed.
    """
    import numpy as np

    chunk = values[max(0, end - window) : end]
    for lag in (season, 1):
        if len(chunk) > lag:
            diffs = np.abs(chunk[lag:] - chunk[:-lag])
            diffs = diffs[np.isfinite(diffs)]
            if len(diffs) and float(diffs.mean()) > 0:
                return float(diffs.mean())
    return float("nan")


def score_backtest(
    frame: pd.DataFrame,
    history: pd.Series,
    *,
    history_window: timedelta = DEFAULT_HISTORY_WINDOW,
) -> dict[str, float]:
    """Score a :func:`backtest` frame against ``history``.

    Args:
        frame: Backtest rows; actuals are taken from ``history`` at ``ds``.
        history: The series the backtest ran on (regular UTC grid).
        history_window: Window before each origin for the MASE denominator.

    Returns:
        ``mase`` (averaged over origins), ``mase_median`` (median over origins),
        ``mase_trimmed`` (mean after dropping the worst 20% of origins: robust to
        one anomalous day, yet still charging occasional large misses), ``smape``
        (percent, 0-200), ``coverage``
        (share 0-1), ``width`` (mean interval width / mean actual), ``mae``.
        NaN where nothing could be scored.
    """
    import numpy as np
    import pandas as pd

    series = check_history(history)
    step = history_step(series)
    season = steps_in(DAY, step)
    window = steps_in(history_window, step)
    values = series.to_numpy(dtype=float)
    actual = series.reindex(pd.DatetimeIndex(frame["ds"])).to_numpy(dtype=float)
    yhat = frame["yhat"].to_numpy(dtype=float)
    lower = frame["yhat_lower"].to_numpy(dtype=float)
    upper = frame["yhat_upper"].to_numpy(dtype=float)
    ok = np.isfinite(actual) & np.isfinite(yhat)
    nan = float("nan")
    if not ok.any():
        return {
            "mase": nan,
            "mase_median": nan,
            "mase_trimmed": nan,
            "smape": nan,
            "coverage": nan,
            "width": nan,
            "mae": nan,
        }
    err = np.abs(actual - yhat)
    mases: list[float] = []
    origin_pos = series.index.get_indexer(pd.DatetimeIndex(frame["origin"]))
    for pos in np.unique(origin_pos):
        rows = (origin_pos == pos) & ok
        if pos < 0 or not rows.any():
            continue
        scale = naive_scale(values, int(pos), window=window, season=season)
        if math.isfinite(scale):
            mases.append(float(err[rows].mean()) / scale)
    denom = np.abs(actual[ok]) + np.abs(yhat[ok])
    smape_terms = np.where(denom > 0, 2.0 * err[ok] / np.where(denom > 0, denom, 1.0), 0.0)
    inside = (actual[ok] >= lower[ok]) & (actual[ok] <= upper[ok])
    mean_actual = float(np.abs(actual[ok]).mean())
    width = float((upper[ok] - lower[ok]).mean()) / mean_actual if mean_actual > 0 else nan
    return {
        "mase": float(np.mean(mases)) if mases else nan,
        "mase_median": float(np.median(mases)) if mases else nan,
        "mase_trimmed": _trimmed_mean(mases, 0.2),
        "smape": 100.0 * float(smape_terms.mean()),
        "coverage": float(inside.mean()),
        "width": width,
        "mae": float(err[ok].mean()),
    }


def _trimmed_mean(values: list[float], worst: float) -> float:
    """Mean of ``values`` without the largest ``worst`` share (NaN if empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    keep = max(1, len(ordered) - int(len(ordered) * worst))
    return float(sum(ordered[:keep]) / keep)


@dataclass
class IntervalCalibration:
    """Conformal interval offsets per horizon step, from out-of-sample residuals.

    ``offsets[level]`` holds two lists (lower offsets <= 0, upper offsets >= 0), one
    value per step, in units of the series multiplied by the forecast's scale
    (``relative`` = residuals were divided by ``|yhat| + floor``).
    """

    horizon: int
    offsets: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    relative: bool = False
    floor: float = 0.0

    def bounds(self, yhat: FloatArray, level: float) -> tuple[FloatArray, FloatArray]:
        """Lower and upper bounds around ``yhat`` (steps beyond the horizon reuse the last)."""
        import numpy as np

        a, b, w, ratio = level_blend((float(k) for k in self.offsets), float(level))
        (lo_a, hi_a), (lo_b, hi_b) = self.offsets[str(a)], self.offsets[str(b)]
        lo_list = (1.0 - w) * np.asarray(lo_a, dtype=float) + w * np.asarray(lo_b, dtype=float)
        hi_list = (1.0 - w) * np.asarray(hi_a, dtype=float) + w * np.asarray(hi_b, dtype=float)
        n = len(yhat)
        idx = np.minimum(np.arange(n), len(lo_list) - 1)
        grow = np.sqrt(np.maximum((np.arange(n) + 1.0) / len(lo_list), 1.0))
        lo = lo_list[idx] * ratio * grow
        hi = hi_list[idx] * ratio * grow
        scale = np.abs(yhat) + self.floor if self.relative else np.ones(n)
        return yhat + lo * scale, yhat + hi * scale

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "horizon": self.horizon,
            "offsets": {k: [list(v[0]), list(v[1])] for k, v in self.offsets.items()},
            "relative": self.relative,
            "floor": self.floor,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntervalCalibration:
        """Inverse of :meth:`to_dict`."""
        return cls(
            horizon=int(data["horizon"]),
            offsets={
                str(k): ([float(x) for x in v[0]], [float(x) for x in v[1]])
                for k, v in data["offsets"].items()
            },
            relative=bool(data["relative"]),
            floor=float(data["floor"]),
        )


def _conformal_quantile(sorted_values: FloatArray, q: float) -> float:
    """Finite-sample conformal quantile: the ceil((n + 1) q)-th smallest value."""
    n = len(sorted_values)
    k = min(n, max(1, math.ceil((n + 1) * q)))
    return float(sorted_values[k - 1])


def calibrate_intervals(
    frame: pd.DataFrame,
    *,
    horizon: int,
    levels: Sequence[float] = CALIBRATION_LEVELS,
    min_count: int = 60,
    relative: bool = False,
    floor: float = 0.0,
    inflation: float = 1.0,
) -> IntervalCalibration:
    """Split-conformal interval offsets per step from out-of-sample backtest rows.

    Args:
        frame: Backtest rows with ``step``, ``yhat`` and the actual ``y``.
        horizon: Steps to calibrate (1..horizon).
        levels: Interval levels in percent.
        min_count: Neighbouring steps are pooled until at least this many residuals.
        relative: Divide residuals by ``|yhat| + floor`` (scale-dependent errors).
        floor: Added to ``|yhat|`` in the relative scale.
        inflation: Multiplier on the offsets (> 1 when the calibration tail is known
            to be calmer than the future, e.g. few independent days).

    Raises:
        EstimatorError: If the frame holds no scorable rows.
    """
    import numpy as np

    y = frame["y"].to_numpy(dtype=float)
    yhat = frame["yhat"].to_numpy(dtype=float)
    steps = frame["step"].to_numpy(dtype=np.int64)
    ok = np.isfinite(y) & np.isfinite(yhat)
    if not ok.any():
        raise EstimatorError("cannot calibrate intervals: no out-of-sample actuals")
    resid = y[ok] - yhat[ok]
    if relative:
        scale = np.abs(yhat[ok]) + floor
        # a scale of 0 (a series that is 0 throughout, with no floor) gets a band of 0
        # width from bounds() whatever the offset; 0 keeps NaN out of the quantiles
        resid = np.divide(resid, scale, out=np.zeros_like(resid), where=scale > 0)
    steps = steps[ok]
    by_step = [np.sort(resid[steps == s]) for s in range(1, horizon + 1)]
    counts = np.array([len(r) for r in by_step])
    cal = IntervalCalibration(horizon=horizon, relative=relative, floor=floor)
    pooled: list[FloatArray] = []
    for s in range(horizon):
        width = 0
        while counts[max(0, s - width) : s + width + 1].sum() < min_count and width < horizon:
            width += 1
        chunk = [by_step[j] for j in range(max(0, s - width), min(horizon, s + width + 1))]
        pooled.append(np.sort(np.concatenate(chunk)) if chunk else np.sort(resid))
    for level in sorted({*levels}):
        alpha = (100.0 - level) / 200.0
        lo = [inflation * min(-_conformal_quantile(-p[::-1], 1.0 - alpha), 0.0) for p in pooled]
        hi = [inflation * max(_conformal_quantile(p, 1.0 - alpha), 0.0) for p in pooled]
        cal.offsets[str(float(level))] = (lo, hi)
    return cal


def plot_backtest(
    frame: pd.DataFrame,
    history: pd.Series,
    path: str | Path,
    *,
    title: str,
    unit: str = "",
    context: timedelta = timedelta(days=2),
    model: str | None = None,
) -> Path:
    """Write a PNG of the actuals, each origin's forecast and its interval band.

    Only one model is drawn (``model``, default: the first in ``frame``, which for
    :attr:`AutoEstimator.selection_backtest` is the chosen one), and only origins
    whose forecasts do not overlap, so the picture stays readable.

    Args:
        frame: Backtest rows (see :func:`backtest`).
        history: The series the backtest ran on.
        path: Output PNG path.
        title: Figure title.
        unit: Unit of the values, shown on the y axis.
        context: How much history before the first origin to draw.
        model: Which model's rows to draw (``auto`` draws every ``auto:<chosen>``).

    Returns:
        The path written.
    """
    import pandas as pd

    from forecaster.plotting import agg_figure, fill_band, save_figure

    series = check_history(history)
    # rows of one requested model, whatever it served per origin (auto:lightgbm, auto:prophet)
    wanted = (model if model is not None else str(frame["model"].iloc[0])).split(":")[0]
    names = frame["model"].astype(str)
    frame = frame[(names == wanted) | names.str.startswith(f"{wanted}:")]
    kept: list[pd.Timestamp] = []
    covered_until = None
    for origin, rows in frame.groupby("origin", sort=True):
        if covered_until is None or pd.Timestamp(origin) > covered_until:  # type: ignore[arg-type]
            kept.append(pd.Timestamp(origin))  # type: ignore[arg-type]
            covered_until = pd.Timestamp(rows["ds"].max())
    frame = frame[frame["origin"].isin(kept)]
    start = pd.Timestamp(frame["origin"].min()) - pd.Timedelta(context)
    end = pd.Timestamp(frame["ds"].max())
    shown = series[(series.index >= start) & (series.index <= end)]
    fig = agg_figure(12, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(shown.index, shown.to_numpy(dtype=float), color="black", lw=0.9, label="actual")
    for i, (_, rows) in enumerate(frame.groupby("origin", sort=True)):
        rows = rows.sort_values("ds")
        ds = pd.DatetimeIndex(rows["ds"])
        model = str(rows["model"].iloc[0])
        fill_band(ax, ds, rows, alpha=0.18, label="prediction interval" if i == 0 else None)
        ax.plot(
            ds,
            rows["yhat"].to_numpy(dtype=float),
            color="tab:blue",
            lw=1.2,
            label=f"forecast ({model})" if i == 0 else None,
        )
        ax.axvline(ds[0], color="grey", ls=":", lw=0.8)  # type: ignore[arg-type]
    ax.set_title(title)
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel(unit or "value")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    fig.autofmt_xdate()
    fig.tight_layout()
    return save_figure(fig, path)
