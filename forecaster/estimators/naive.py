"""Baseline estimators: seasonal naive (one day by default, or any season) and last value.

Both form their prediction intervals from empirical quantiles of the history's own
differences at the relevant lag (the errors these forecasts would have made in sample).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from forecaster.errors import EstimatorError
from forecaster.estimators import (
    DAY,
    RECENT_BIAS_STEPS,
    check_halflife,
    check_history,
    forecast_frame,
    history_step,
    level_blend,
    recent_bias,
    require_fitted,
    steps_in,
)

if TYPE_CHECKING:
    from typing import Self

    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    FloatArray = npt.NDArray[np.float64]

#: Levels (percent) whose empirical interval offsets are stored in the state.
LEVELS = (50.0, 80.0, 90.0, 95.0, 99.0)


def diff_offsets(values: FloatArray, lag: int) -> dict[str, list[float]]:
    """Empirical quantiles of ``y[t+lag] - y[t]`` for each level in :data:`LEVELS`.

    Returns:
        ``{"<level>": [lower_offset, upper_offset]}`` with lower <= 0 <= upper;
        zeros when the history is too short to estimate them.
    """
    import numpy as np

    out: dict[str, list[float]] = {}
    diffs = values[lag:] - values[:-lag] if 0 < lag < len(values) else np.array([])
    diffs = diffs[np.isfinite(diffs)]
    for level in LEVELS:
        if len(diffs) < 2:
            out[str(level)] = [0.0, 0.0]
            continue
        alpha = (100.0 - level) / 200.0
        lo, hi = np.quantile(diffs, [alpha, 1.0 - alpha])
        out[str(level)] = [min(float(lo), 0.0), max(float(hi), 0.0)]
    return out


def offsets_at(table: dict[str, list[float]], level: float) -> tuple[float, float]:
    """Interval offsets for ``level`` from those stored per level (:func:`level_blend`)."""
    a, b, w, ratio = level_blend((float(k) for k in table), float(level))
    (lo_a, hi_a), (lo_b, hi_b) = table[str(a)], table[str(b)]
    lo = ((1.0 - w) * float(lo_a) + w * float(lo_b)) * ratio
    hi = ((1.0 - w) * float(hi_a) + w * float(hi_b)) * ratio
    return lo, hi


def last_finite(values: FloatArray) -> float:
    """The last finite value of ``values`` (0.0 if there is none)."""
    import numpy as np

    finite = np.flatnonzero(np.isfinite(values))
    return float(values[finite[-1]]) if len(finite) else 0.0


class SeasonalNaive:
    """Repeat the value observed one season earlier.

    Args:
        season: Season length in steps. Default: ``period`` in steps of the history.
        period: Season length as a duration when ``season`` is not given (one day).
        recent_bias_halflife: If set (steps), start from the current level: add how
            far the last observations are above their values one season earlier,
            decaying with this half-life over the lead
            (:func:`~forecaster.estimators.recent_bias`). A plain repeat follows a
            level shift only a season later.

    When the history is shorter than one season it falls back to the last value
    (``fallback`` is then True after fit).
    """

    name = "seasonal_naive"

    @property
    def follows_recent_level(self) -> bool:
        """Whether ``predict(follow_level=False)`` can differ from ``predict()``."""
        return bool(self.recent_bias_halflife) and not self.fallback

    def __init__(
        self,
        season: int | None = None,
        *,
        period: timedelta = DAY,
        recent_bias_halflife: float | None = None,
    ) -> None:
        if season is not None and season < 1:
            raise EstimatorError(f"season must be >= 1 step, got {season}")
        self.season = season
        self.period = period
        self.recent_bias_halflife = check_halflife(recent_bias_halflife)
        self.season_steps_: int | None = None
        self.step_: timedelta | None = None
        self.tail_: list[float] | None = None
        self.last_: str | None = None
        self.offsets_: dict[str, list[float]] = {}
        self.nonnegative_ = True
        self.fallback = False

    def fit(self, history: pd.Series) -> Self:
        """Remember the last season of ``history`` and the in-sample seasonal differences."""
        import numpy as np

        series = check_history(history)
        self.step_ = history_step(series)
        season = self.season or steps_in(self.period, self.step_)
        values = series.to_numpy(dtype=float)
        self.season_steps_ = season
        self.fallback = int(np.isfinite(values).sum()) <= season or len(values) <= season
        self.nonnegative_ = bool(np.nanmin(values) >= 0.0)
        self.offsets_ = diff_offsets(values, 1 if self.fallback else season)
        self.tail_ = [float(v) for v in values[-(2 * season) :]]
        self.last_ = series.index[-1].isoformat()
        return self

    def _point(self, values: FloatArray, horizon: int) -> FloatArray:
        import numpy as np

        season = self.season_steps_ or 1
        n = len(values)
        out = np.full(horizon, np.nan)
        if not self.fallback and n > season:
            for h in range(1, horizon + 1):
                k = math.ceil(h / season)
                while True:
                    idx = n - 1 + h - k * season
                    if idx < 0:
                        break
                    if np.isfinite(values[idx]):
                        out[h - 1] = values[idx]
                        break
                    k += 1
        return np.where(np.isfinite(out), out, last_finite(values))

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
        import numpy as np
        import pandas as pd

        require_fitted(self, "tail_", self.name)
        assert self.tail_ is not None and self.step_ is not None and self.last_ is not None
        if history is not None:
            series = check_history(history)
            values = series.to_numpy(dtype=float)
            last = series.index[-1]
        else:
            values = np.asarray(self.tail_, dtype=float)
            last = pd.Timestamp(self.last_)
        yhat = self._point(values, horizon)
        season = self.season_steps_ or 1
        if (
            follow_level
            and self.recent_bias_halflife
            and not self.fallback
            and len(values) > season
        ):
            n = min(RECENT_BIAS_STEPS, len(values) - season)
            residuals = values[-n:] - values[-n - season : -season]
            yhat = yhat + recent_bias(residuals, horizon, self.recent_bias_halflife)
        lo, hi = offsets_at(self.offsets_, level)
        if self.fallback:
            growth = np.sqrt(np.arange(1, horizon + 1, dtype=float))
        else:
            growth = np.sqrt(np.ceil(np.arange(1, horizon + 1) / season))
        return forecast_frame(
            last,
            self.step_,
            yhat,
            yhat + lo * growth,
            yhat + hi * growth,
            nonnegative=self.nonnegative_,
        )

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        require_fitted(self, "tail_", self.name)
        assert self.step_ is not None and self.tail_ is not None
        return {
            "season": self.season_steps_,
            "step_seconds": self.step_.total_seconds(),
            "tail": [v if math.isfinite(v) else None for v in self.tail_],
            "last": self.last_,
            "offsets": self.offsets_,
            "nonnegative": self.nonnegative_,
            "fallback": self.fallback,
            "recent_bias_halflife": self.recent_bias_halflife,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild from :meth:`get_state` output."""
        try:
            halflife = state.get("recent_bias_halflife")
            obj = cls(
                season=int(state["season"]),
                recent_bias_halflife=None if halflife is None else float(halflife),
            )
            obj.season_steps_ = int(state["season"])
            obj.step_ = timedelta(seconds=float(state["step_seconds"]))
            obj.tail_ = [float("nan") if v is None else float(v) for v in state["tail"]]
            obj.last_ = str(state["last"])
            obj.offsets_ = {str(k): [float(x) for x in v] for k, v in state["offsets"].items()}
            obj.nonnegative_ = bool(state["nonnegative"])
            obj.fallback = bool(state["fallback"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EstimatorError(f"invalid {cls.name} state: {exc}") from exc
        return obj


class LastValue:
    """Repeat the last observed value; intervals widen like the history's h-step changes."""

    name = "last_value"

    #: Lags (steps) at which h-step change quantiles are stored; interpolated between.
    LAGS = (1, 2, 3, 6, 12, 24, 48, 96, 144, 288, 576, 1152, 2016)

    #: ``predict(follow_level=False)`` is ``predict()``: the last value is the level.
    follows_recent_level = False

    def __init__(self) -> None:
        self.step_: timedelta | None = None
        self.last_value_: float | None = None
        self.last_: str | None = None
        self.lags_: list[int] = []
        self.offsets_: list[dict[str, list[float]]] = []
        self.nonnegative_ = True

    def fit(self, history: pd.Series) -> Self:
        """Remember the last value and the quantiles of h-step changes in ``history``."""
        import numpy as np

        series = check_history(history)
        values = series.to_numpy(dtype=float)
        self.step_ = history_step(series)
        self.last_value_ = last_finite(values)
        self.last_ = series.index[-1].isoformat()
        self.nonnegative_ = bool(np.nanmin(values) >= 0.0)
        usable = [lag for lag in self.LAGS if lag < max(2, len(values) // 2)] or [1]
        self.lags_ = usable
        self.offsets_ = [diff_offsets(values, lag) for lag in usable]
        return self

    def _offsets(self, horizon: int, level: float) -> tuple[FloatArray, FloatArray]:
        import numpy as np

        lags = np.asarray(self.lags_, dtype=float)
        los = np.array([offsets_at(o, level)[0] for o in self.offsets_])
        his = np.array([offsets_at(o, level)[1] for o in self.offsets_])
        h = np.arange(1, horizon + 1, dtype=float)
        lo = np.interp(np.log(h), np.log(lags), los)
        hi = np.interp(np.log(h), np.log(lags), his)
        beyond = np.sqrt(np.maximum(h / lags[-1], 1.0))
        return lo * beyond, hi * beyond

    def predict(
        self,
        horizon: int,
        *,
        history: pd.Series | None = None,
        level: float = 90.0,
        follow_level: bool = True,  # noqa: ARG002 - the protocol's; see the docstring
    ) -> pd.DataFrame:
        """Forecast ``horizon`` steps after the end of ``history`` (default: the fit history).

        ``follow_level`` is ignored: the last value is the current level.
        """
        import numpy as np
        import pandas as pd

        require_fitted(self, "last_value_", self.name)
        assert self.step_ is not None and self.last_ is not None
        if history is not None:
            series = check_history(history)
            value = last_finite(series.to_numpy(dtype=float))
            last = series.index[-1]
        else:
            value = float(self.last_value_ or 0.0)
            last = pd.Timestamp(self.last_)
        yhat = np.full(horizon, value)
        lo, hi = self._offsets(horizon, level)
        return forecast_frame(
            last, self.step_, yhat, yhat + lo, yhat + hi, nonnegative=self.nonnegative_
        )

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        require_fitted(self, "last_value_", self.name)
        assert self.step_ is not None
        return {
            "step_seconds": self.step_.total_seconds(),
            "last_value": self.last_value_,
            "last": self.last_,
            "lags": self.lags_,
            "offsets": self.offsets_,
            "nonnegative": self.nonnegative_,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild from :meth:`get_state` output."""
        try:
            obj = cls()
            obj.step_ = timedelta(seconds=float(state["step_seconds"]))
            obj.last_value_ = float(state["last_value"])
            obj.last_ = str(state["last"])
            obj.lags_ = [int(v) for v in state["lags"]]
            obj.offsets_ = [
                {str(k): [float(x) for x in v] for k, v in o.items()} for o in state["offsets"]
            ]
            obj.nonnegative_ = bool(state["nonnegative"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EstimatorError(f"invalid {cls.name} state: {exc}") from exc
        return obj
