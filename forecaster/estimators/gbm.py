"""LightGBM estimator: one gradient-boosted model for every lead, scale-free target.

Each training example is a pair (anchor, lead): the features describe the series up
to the anchor (the last observation) and the calendar of the target time, the target
is the value ``lead`` steps later. Every value is divided by the *level* at the
anchor -- the mean of the last ``level_window`` steps up to and including it -- so
the model learns shapes, not magnitudes. The window follows the horizon (one hour
for hour-ahead models, one day for day-ahead ones): a short-horizon model then
forecasts relative to the last hour and follows a sudden collapse or level shift at
once (hour-ahead on NAB's nyc_taxi blizzard week and rds_cpu, a day-long level
had 57-86 % more MASE), while a day-ahead model keeps learning the day's shape.

Because the features are computed from whatever observations end at the anchor,
``predict(history=newer)`` conditions on the newest data without refitting.

Features (values divided by the level): the last observations (lags 1, 2, 3, 6 and
12), the means of the last hour and six hours, the value at the target's time of
day one day and one week earlier (plus a smoothed version), the value one day and
one week before the anchor, the lead, and the target's minute of day and day of week;
then the other lags from 4 to 11, the mean of the last three points, the last change
(lag 1 - lag 2) and the mean of the last day over the level. (Models saved before
these were added read only the first columns; see ``from_state``.)
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from forecaster.errors import EstimatorError
from forecaster.estimators import (
    DAY,
    WEEK,
    check_history,
    forecast_frame,
    history_step,
    require_fitted,
    steps_in,
)
from forecaster.estimators.naive import LEVELS, offsets_at

if TYPE_CHECKING:
    from typing import Self

    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    FloatArray = npt.NDArray[np.float64]
    IntArray = npt.NDArray[np.int64]

FEATURES = (
    "lead",
    "minute_of_day",
    "day_of_week",
    "lag1",
    "lag2",
    "lag3",
    "lag6",
    "lag12",
    "mean_1h",
    "mean_6h",
    "same_time_day",
    "same_time_day_smooth",
    "same_time_week",
    "same_time_week_smooth",
    "anchor_day_ago",
    "anchor_week_ago",
    "lag4",
    "lag5",
    "lag7",
    "lag8",
    "lag9",
    "lag10",
    "lag11",
    "mean_3",
    "diff1",
    "day_level",
)
#: Columns of the first feature set (models saved before the others were added).
LEGACY_FEATURES = 16


def _take(values: FloatArray, idx: IntArray, upto: IntArray) -> FloatArray:
    """``values[idx]`` where ``0 <= idx <= upto``; NaN elsewhere."""
    import numpy as np

    ok = (idx >= 0) & (idx <= upto) & (idx < len(values))
    out = np.full(len(idx), np.nan)
    out[ok] = values[idx[ok]]
    return out


def _window_mean(csum: FloatArray, ccount: FloatArray, end: IntArray, width: int) -> FloatArray:
    """Mean of the finite values in ``(end - width, end]`` from padded cumulative sums."""
    import numpy as np

    start = np.maximum(end + 1 - width, 0)
    total = csum[end + 1] - csum[start]
    count = ccount[end + 1] - ccount[start]
    out = np.full(len(end), np.nan)
    ok = count > 0
    out[ok] = total[ok] / count[ok]
    return out


def _nanmean_rows(stack: FloatArray) -> FloatArray:
    import numpy as np

    finite = np.isfinite(stack)
    count = finite.sum(axis=0)
    total = np.where(finite, stack, 0.0).sum(axis=0)
    out = np.full(stack.shape[1], np.nan)
    ok = count > 0
    out[ok] = total[ok] / count[ok]
    return out


def build_features(
    values: FloatArray,
    t0_seconds: float,
    step_seconds: float,
    anchors: IntArray,
    leads: IntArray,
    *,
    fallback_level: float,
    level_window: int | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Feature matrix (rows = pairs, columns = :data:`FEATURES`) and the level per pair.

    ``level_window`` is the number of steps the level averages (default: one day).
    Only ``values[: anchor + 1]`` is read for a pair: nothing after the anchor.
    """
    import numpy as np

    step = timedelta(seconds=step_seconds)
    day = steps_in(DAY, step)
    week = steps_in(WEEK, step)
    hour = steps_in(timedelta(hours=1), step)
    finite = np.isfinite(values)
    csum = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    ccount = np.concatenate([[0.0], np.cumsum(finite.astype(float))])
    floor = max(1e-3 * abs(fallback_level), 1e-9)

    def level_over(width: int) -> FloatArray:
        mean = _window_mean(csum, ccount, anchors, width)
        mean = np.where(np.isfinite(mean), mean, fallback_level)
        return np.where(np.abs(mean) < floor, floor, mean)

    day_level = level_over(day)
    level = day_level if level_window is None else level_over(max(1, level_window))

    target = anchors + leads
    secs = t0_seconds + target.astype(float) * step_seconds
    minute = np.floor((secs % 86400.0) / 60.0)
    dow = np.floor(secs // 86400.0 + 3.0) % 7.0

    columns: list[FloatArray] = [leads.astype(float), minute, dow]
    for lag in (1, 2, 3, 6, 12):
        columns.append(_take(values, anchors - (lag - 1), anchors) / level)
    columns.append(_window_mean(csum, ccount, anchors, hour) / level)
    columns.append(_window_mean(csum, ccount, anchors, 6 * hour) / level)
    for season in (day, week):
        back = target - season * np.ceil(leads / season).astype(np.int64)
        same = _take(values, back, anchors)
        smooth = _nanmean_rows(np.vstack([_take(values, back + j, anchors) for j in range(-2, 3)]))
        columns.append(same / level)
        columns.append(smooth / level)
    columns.append(_take(values, anchors - day, anchors) / level)
    columns.append(_take(values, anchors - week, anchors) / level)
    for lag in (4, 5, 7, 8, 9, 10, 11):
        columns.append(_take(values, anchors - (lag - 1), anchors) / level)
    columns.append(_window_mean(csum, ccount, anchors, 3) / level)
    columns.append(columns[3] - columns[4])  # lag1 - lag2, both already over the level
    columns.append(day_level / level)
    return np.column_stack(columns), level


class LightGBMEstimator:
    """Direct multi-horizon LightGBM with the lead as a feature.

    Args:
        max_horizon: Longest lead (steps) sampled for training; longer leads reuse it.
        n_jobs: LightGBM ``num_threads`` (explicit; default 1).
        n_pairs: Training pairs sampled from the history (bounds the fit cost).
        n_estimators: Boosting rounds.
        learning_rate: Shrinkage.
        num_leaves: Leaves per tree.
        calibrate: Estimate interval offsets per lead on a held-out tail (one extra
            fit). When False (e.g. under :class:`AutoEstimator`, which calibrates
            conformally) a rough in-sample estimate is used.
        seed: Random seed for pair sampling and LightGBM.
    """

    name = "lightgbm"

    #: ``predict(follow_level=False)`` is ``predict()``: the features are relative to
    #: the recent level by construction, there is no separate correction to leave out.
    follows_recent_level = False

    def __init__(
        self,
        max_horizon: int = 288,
        *,
        n_jobs: int = 1,
        n_pairs: int = 24000,
        n_estimators: int = 250,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        calibrate: bool = True,
        seed: int = 0,
    ) -> None:
        if max_horizon < 1:
            raise EstimatorError(f"max_horizon must be >= 1 step, got {max_horizon}")
        self.max_horizon = max_horizon
        self.n_jobs = n_jobs
        self.n_pairs = n_pairs
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.calibrate = calibrate
        self.seed = seed
        self.booster_: Any = None
        self.level_window_: int | None = None
        self.step_: timedelta | None = None
        self.tail_: list[float] = []
        self.last_: str | None = None
        self.fallback_level_ = 1.0
        self.nonnegative_ = True
        self.lead_grid_: list[int] = []
        self.offsets_: list[dict[str, list[float]]] = []

    def _params(self) -> dict[str, Any]:
        return {
            "objective": "l1",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": 40,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "num_threads": self.n_jobs,
            "seed": self.seed,
            "deterministic": True,
            "verbose": -1,
        }

    def _sample(self, n: int, lo: int, hi: int, count: int, rng: Any) -> tuple[IntArray, IntArray]:
        """Pairs with anchor in [lo, hi - lead] (so the target index <= hi)."""
        import numpy as np

        max_lead = max(1, min(self.max_horizon, hi - lo))
        leads = rng.integers(1, max_lead + 1, size=count)
        upper = np.maximum(hi - leads, lo)
        anchors = lo + np.floor(rng.random(count) * (upper - lo + 1)).astype(np.int64)
        anchors = np.minimum(anchors, n - 1 - leads)
        keep = anchors >= 0
        return anchors[keep].astype(np.int64), leads[keep].astype(np.int64)

    def _features(
        self, values: FloatArray, t0: float, step_s: float, anchors: IntArray, leads: IntArray
    ) -> tuple[FloatArray, FloatArray]:
        """:func:`build_features` with this model's fitted level settings (the same for
        training pairs and forecasts)."""
        return build_features(
            values,
            t0,
            step_s,
            anchors,
            leads,
            fallback_level=self.fallback_level_,
            level_window=self.level_window_,
        )

    def _train(self, x: FloatArray, y: FloatArray) -> Any:
        import lightgbm as lgb

        data = lgb.Dataset(x, label=y, feature_name=list(FEATURES), free_raw_data=True)
        return lgb.train(self._params(), data, num_boost_round=self.n_estimators)

    def fit(self, history: pd.Series) -> Self:
        """Sample (anchor, lead) pairs from ``history`` and train the booster."""
        import numpy as np

        series = check_history(history)
        values = series.to_numpy(dtype=float)
        n = len(values)
        self.step_ = history_step(series)
        step_s = self.step_.total_seconds()
        t0 = series.index[0].timestamp()
        finite = values[np.isfinite(values)]
        if len(finite) < 10 or n < 12:
            raise EstimatorError(
                f"lightgbm needs at least 12 points of history, got {len(finite)} finite of {n}"
            )
        self.fallback_level_ = float(np.mean(np.abs(finite))) or 1.0
        self.nonnegative_ = bool(finite.min() >= 0.0)
        rng = np.random.default_rng(self.seed)
        hour = steps_in(timedelta(hours=1), self.step_)
        lo = min(hour, n // 4)
        self.level_window_ = min(max(self.max_horizon, hour), steps_in(DAY, self.step_))

        def pairs(a_lo: int, a_hi: int, count: int) -> tuple[FloatArray, FloatArray, IntArray]:
            anchors, leads = self._sample(n, a_lo, a_hi, count, rng)
            x, level = self._features(values, t0, step_s, anchors, leads)
            y = values[anchors + leads] / level
            ok = np.isfinite(y)
            return x[ok], y[ok], leads[ok]

        self.lead_grid_ = sorted({1, 2, 3, 6, 12, 24, 48, 96, 144, 288, self.max_horizon})
        self.lead_grid_ = [g for g in self.lead_grid_ if g <= self.max_horizon]
        holdout = max(2 * self.max_horizon, n // 5)
        if self.calibrate and n - holdout > max(lo * 4, n // 2):
            cut = n - holdout
            x_a, y_a, _ = pairs(lo, cut - 1, self.n_pairs)
            model = self._train(x_a, y_a)
            x_b, y_b, lead_b = pairs(cut, n - 1, max(4000, self.n_pairs // 4))
            resid = y_b - model.predict(x_b, num_threads=self.n_jobs)
        else:
            x_b, y_b, lead_b = pairs(lo, n - 1, max(4000, self.n_pairs // 4))
            resid = np.array([])
        x, y, _ = pairs(lo, n - 1, self.n_pairs)
        self.booster_ = self._train(x, y)
        if len(resid) == 0:
            # Rough in-sample residuals, inflated because the model has seen these pairs.
            resid = 1.5 * (y_b - self.booster_.predict(x_b, num_threads=self.n_jobs))
        self.offsets_ = self._lead_offsets(resid, lead_b)
        self.tail_ = [float(v) for v in values[-(steps_in(WEEK, self.step_) + 16) :]]
        self.last_ = series.index[-1].isoformat()
        return self

    def _lead_offsets(self, resid: FloatArray, leads: IntArray) -> list[dict[str, list[float]]]:
        """Residual quantiles (in level units) around each lead of the lead grid."""
        import numpy as np

        out: list[dict[str, list[float]]] = []
        grid = np.asarray(self.lead_grid_, dtype=float)
        log_leads = np.log(leads.astype(float))
        for g in grid:
            near = np.abs(log_leads - math.log(g)) <= 0.5
            chosen = resid[near] if near.sum() >= 50 else resid
            table: dict[str, list[float]] = {}
            for level in LEVELS:
                alpha = (100.0 - level) / 200.0
                if len(chosen) < 2:
                    table[str(level)] = [0.0, 0.0]
                    continue
                lo, hi = np.quantile(chosen, [alpha, 1.0 - alpha])
                table[str(level)] = [min(float(lo), 0.0), max(float(hi), 0.0)]
            out.append(table)
        return out

    def predict(
        self,
        horizon: int,
        *,
        history: pd.Series | None = None,
        level: float = 90.0,
        follow_level: bool = True,  # noqa: ARG002 - the protocol's; see the docstring
    ) -> pd.DataFrame:
        """Forecast ``horizon`` steps after the end of ``history`` (default: the fit history).

        ``follow_level`` is ignored: the features are relative to the recent level by
        construction, with no correction on top.
        """
        import numpy as np
        import pandas as pd

        require_fitted(self, "booster_", self.name)
        assert self.step_ is not None and self.last_ is not None
        step_s = self.step_.total_seconds()
        if history is not None:
            series = check_history(history)
            keep = steps_in(WEEK, self.step_) + 16
            series = series.iloc[-keep:]
            values = series.to_numpy(dtype=float)
            last = series.index[-1]
        else:
            values = np.asarray(self.tail_, dtype=float)
            last = pd.Timestamp(self.last_)
        n = len(values)
        t0 = last.timestamp() - (n - 1) * step_s
        leads = np.arange(1, horizon + 1, dtype=np.int64)
        anchors = np.full(horizon, n - 1, dtype=np.int64)
        x, lvl = self._features(values, t0, step_s, anchors, leads)
        x = x[:, : self.booster_.num_feature()]  # a model saved with the first feature set
        x[:, 0] = np.minimum(x[:, 0], self.max_horizon)
        ratio = np.asarray(self.booster_.predict(x, num_threads=self.n_jobs), dtype=float)
        yhat = ratio * lvl
        grid = np.log(np.asarray(self.lead_grid_, dtype=float))
        los = np.array([offsets_at(t, level)[0] for t in self.offsets_])
        his = np.array([offsets_at(t, level)[1] for t in self.offsets_])
        logh = np.log(leads.astype(float))
        beyond = np.sqrt(np.maximum(leads / float(self.lead_grid_[-1]), 1.0))
        lo = np.interp(logh, grid, los) * beyond * np.abs(lvl)
        hi = np.interp(logh, grid, his) * beyond * np.abs(lvl)
        return forecast_frame(
            last, self.step_, yhat, yhat + lo, yhat + hi, nonnegative=self.nonnegative_
        )

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable state; the booster as LightGBM model text."""
        require_fitted(self, "booster_", self.name)
        assert self.step_ is not None
        return {
            "max_horizon": self.max_horizon,
            "n_jobs": self.n_jobs,
            "booster": self.booster_.model_to_string(),
            "level_window": self.level_window_,
            "step_seconds": self.step_.total_seconds(),
            "tail": [v if math.isfinite(v) else None for v in self.tail_],
            "last": self.last_,
            "fallback_level": self.fallback_level_,
            "nonnegative": self.nonnegative_,
            "lead_grid": self.lead_grid_,
            "offsets": self.offsets_,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild from :meth:`get_state` output."""
        import lightgbm as lgb

        try:
            obj = cls(max_horizon=int(state["max_horizon"]), n_jobs=int(state["n_jobs"]))
            obj.booster_ = lgb.Booster(model_str=str(state["booster"]))
            # Saved before the level followed the horizon: a day-long level (None).
            window = state.get("level_window")
            obj.level_window_ = None if window is None else int(window)
            if obj.booster_.num_feature() not in (LEGACY_FEATURES, len(FEATURES)):
                raise ValueError(f"booster has {obj.booster_.num_feature()} features")
            obj.step_ = timedelta(seconds=float(state["step_seconds"]))
            obj.tail_ = [float("nan") if v is None else float(v) for v in state["tail"]]
            obj.last_ = str(state["last"])
            obj.fallback_level_ = float(state["fallback_level"])
            obj.nonnegative_ = bool(state["nonnegative"])
            obj.lead_grid_ = [int(v) for v in state["lead_grid"]]
            obj.offsets_ = [
                {str(k): [float(x) for x in v] for k, v in t.items()} for t in state["offsets"]
            ]
        except (KeyError, TypeError, ValueError, lgb.basic.LightGBMError) as exc:
            raise EstimatorError(f"invalid {cls.name} state: {exc}") from exc
        return obj
