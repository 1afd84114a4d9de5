"""The estimator protocol, the forecast frame it returns and the registry of names.

An *estimator* is a forecasting model (seasonal naive, Prophet, LightGBM, ...).
It is fitted on a history (see :mod:`forecaster.timeseries`) and then predicts
``horizon`` steps ahead of the end of that history, or, when given newer
observations, ahead of the end of those without refitting.

Core modules never import optional backends: estimators are registered by
dotted path and imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from forecaster.errors import EstimatorError

if TYPE_CHECKING:
    from typing import Self

    import pandas as pd

FORECAST_COLUMNS = ("ds", "step", "yhat", "yhat_lower", "yhat_upper")
STATE_FORMAT = 1


@runtime_checkable
class Estimator(Protocol):
    """What every estimator provides.

    ``predict`` returns a DataFrame with the columns of :data:`FORECAST_COLUMNS`:
    ``ds`` (tz-aware UTC timestamps on the history's grid, starting one step after
    the last observation), ``step`` (1..horizon), ``yhat`` and the central
    prediction interval ``yhat_lower <= yhat <= yhat_upper`` at ``level`` percent.
    """

    name: str

    def fit(self, history: pd.Series) -> Self:
        """Fit on ``history`` (float Series, UTC DatetimeIndex with freq; NaN = missing)."""
        ...

    def predict(
        self,
        horizon: int,
        *,
        history: pd.Series | None = None,
        level: float = 90.0,
        follow_level: bool = True,
    ) -> pd.DataFrame:
        """Forecast ``horizon`` steps after the end of ``history`` (default: the fit history).

        ``follow_level=False`` asks for the reference forecast: without the
        recent-level corrections an estimator may add (the regression detector judges
        against it, so a lasting regression is not absorbed). Estimators without such
        terms ignore it.
        """
        ...

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable state from which :meth:`from_state` rebuilds the fitted estimator."""
        ...

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild a fitted estimator from :meth:`get_state` output."""
        ...


def follows_recent_level(estimator: Any) -> bool:
    """Whether ``estimator.predict(follow_level=False)`` can differ from ``predict()``.

    Estimators say so with a ``follows_recent_level`` attribute; one that does not
    is assumed to (its reference forecast is then computed, never assumed equal).
    """
    return bool(getattr(estimator, "follows_recent_level", True))


_REGISTRY: dict[str, str] = {
    "seasonal_naive": "forecaster.estimators.naive:SeasonalNaive",
    "last_value": "forecaster.estimators.naive:LastValue",
    "prophet": "forecaster.estimators.prophet:ProphetEstimator",
    "lightgbm": "forecaster.estimators.gbm:LightGBMEstimator",
    "auto": "forecaster.estimators.auto:AutoEstimator",
}


def register_estimator(name: str, target: str) -> None:
    """Register ``target`` (``"package.module:Class"``) under ``name``."""
    if ":" not in target:
        raise EstimatorError(f"estimator target {target!r} must look like 'module:Class'")
    _REGISTRY[name] = target


def estimator_names() -> list[str]:
    """All registered estimator names."""
    return sorted(_REGISTRY)


def estimator_class(name: str) -> type[Estimator]:
    """Import and return the class registered as ``name``.

    Raises:
        EstimatorError: If ``name`` is unknown or its module cannot be imported.
    """
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise EstimatorError(
            f"unknown estimator {name!r}; choose from {', '.join(estimator_names())}"
        ) from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EstimatorError(f"estimator {name!r} cannot be imported: {exc}") from exc
    cls: type[Estimator] = getattr(module, attr)
    return cls


def create_estimator(name: str, **params: Any) -> Estimator:
    """Instantiate the estimator registered as ``name`` with ``params``."""
    return estimator_class(name)(**params)


def dump_estimator(estimator: Estimator) -> dict[str, Any]:
    """Versioned, JSON-serialisable form of a fitted estimator (never pickle)."""
    return {"format": STATE_FORMAT, "estimator": estimator.name, "state": estimator.get_state()}


def load_estimator(document: dict[str, Any]) -> Estimator:
    """Rebuild an estimator from :func:`dump_estimator` output.

    Raises:
        EstimatorError: On an unknown format version or estimator name.
    """
    if not isinstance(document, dict) or "estimator" not in document:
        raise EstimatorError("saved estimator document is malformed (no 'estimator' key)")
    if document.get("format") != STATE_FORMAT:
        raise EstimatorError(
            f"saved estimator has format {document.get('format')!r}; "
            f"this release reads format {STATE_FORMAT}"
        )
    cls = estimator_class(str(document["estimator"]))
    return cls.from_state(document["state"])
