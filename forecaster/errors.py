"""The exception tree every forecaster module raises from.

Hierarchy::

    ForecasterError
    ├── ConfigError            settings or environment are invalid
    ├── SpecError              a pipeline spec (YAML) is invalid
    ├── InputDataError         a CSV / series / parameter supplied by a user is invalid
    ├── SourceError            fetching history failed
    │   ├── SourceUnavailable  the source cannot be reached (network, timeout, 5xx)
    │   └── SourceQueryError   the source answered, but not with what the spec expects
    ├── StoreError             the history / forecast database failed
    ├── NotFound
    │   ├── SeriesNotFound     no such series
    │   └── ForecastNotFound   the series has no published forecast
    ├── EstimatorError         an estimator cannot be fitted or used (unknown name, bad state)
    └── RegistryError          MLflow tracking / model registry failed

HTTP status codes and gRPC codes are chosen from this tree in ``api/`` and
``scaler/`` only.
"""

from __future__ import annotations

from collections.abc import Iterable


class ForecasterError(Exception):
    """Base class of every error forecaster raises on purpose."""


class ConfigError(ForecasterError):
    """Settings are missing or invalid."""


class SpecError(ForecasterError):
    """A pipeline spec file is invalid; the message names the file and the field."""


class InputDataError(ForecasterError):
    """User-supplied data (CSV, series values, parameters) is invalid."""


class SourceError(ForecasterError):
    """Fetching history from a source failed."""


class SourceUnavailable(SourceError):
    """The source could not be reached or kept failing after retries."""


class SourceQueryError(SourceError):
    """The source answered, but the answer does not match the spec (e.g. two series)."""


class StoreError(ForecasterError):
    """The database behind the history and forecast store failed."""


class NotFound(ForecasterError):
    """A named object does not exist."""


class SeriesNotFound(NotFound):
    """No series with that name is known."""


class ForecastNotFound(NotFound):
    """The series exists but has no published forecast yet."""


class EstimatorError(ForecasterError):
    """An estimator is unknown, cannot be fitted, or its saved state cannot be loaded."""


class RegistryError(ForecasterError):
    """MLflow tracking or the model registry failed."""


def nearest_name(given: str, names: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The one of ``names`` that ``given`` most likely misspells, for "did you mean".

    Names are compared ignoring case, ``_`` and ``-`` (``leadTime``, ``lead_time`` and
    ``leadtime`` are one name), then by similarity above ``cutoff`` (0..1).
    """
    import difflib

    squashed = {_squash(name): name for name in names}
    near = difflib.get_close_matches(_squash(given), list(squashed), n=1, cutoff=cutoff)
    return squashed[near[0]] if near else None


def _squash(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()
