"""MLflow behind one module: training runs, the model registry and its aliases.

Every training run logs its parameters, the backtest metrics of each estimator, the
fitted estimator (our versioned JSON format, never pickle) and a predicted-vs-actual
plot. Each series has one registered model (``<prefix>.<series>``); the version
that serves carries the ``champion`` alias, a refused candidate ``challenger``.
Aliases move only through :func:`forecaster.evaluation_gate.gate` decisions.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from forecaster.errors import RegistryError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from forecaster.config import MlflowSettings

T = TypeVar("T")
CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class RegisteredVersion:
    """A registered model version."""

    model: str
    version: str
    run_id: str


#: What MLflow's SQL backend keeps of a registered model's name and of a run's name
#: (PostgreSQL and MySQL refuse longer ones; SQLite keeps them silently).
MODEL_NAME_MAX = 256
RUN_NAME_MAX = 250


def registered_model_name(prefix: str, series: str) -> str:
    """The registry name of a series' model: ``prefix.series`` with unsafe characters replaced.

    Names of ``split_by`` members (``fam{route="/a"}``) get a short hash suffix so
    two members never map to the same name; a name longer than MLflow keeps
    (:data:`MODEL_NAME_MAX`, a member with long label values) is cut before that suffix.
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", series)
    if safe == series and len(prefix) + 1 + len(safe) <= MODEL_NAME_MAX:
        return f"{prefix}.{safe}"
    digest = hashlib.sha1(series.encode()).hexdigest()[:8]
    room = max(MODEL_NAME_MAX - len(prefix) - 1 - len(digest) - 1, 1)
    return f"{prefix}.{safe.strip('_')[:room]}-{digest}"


def run_name(series: str) -> str:
    """The MLflow run name of a training of ``series`` (cut to :data:`RUN_NAME_MAX`; the
    ``series`` tag holds the whole name)."""
    name = f"train {series}"
    return name if len(name) <= RUN_NAME_MAX else name[: RUN_NAME_MAX - 3] + "..."


def gate_tags(decision: str, reason: str) -> dict[str, str]:
    """The promotion gate's verdict as MLflow tags of a training run and its version
    (``gate.decision``: ``promote``, ``refuse`` or ``fallback``; ``gate.reason``)."""
    return {"gate.decision": decision, "gate.reason": reason[:5000]}


def mlflow_key(name: str) -> str:
    """``name`` with the characters MLflow refuses in metric/param keys replaced.

    ``ensemble(prophet+lightgbm).mase`` becomes ``ensemble_prophet_lightgbm_.mase``.
    """
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", name)[:250]


class Registry:
    """MLflow tracking + registry client for forecaster.

    Args:
        settings: Tracking URI, experiment, artifact location, timeouts.
    """

    def __init__(self, settings: MlflowSettings) -> None:
        self.settings = settings
        os.environ.setdefault(
            "MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(settings.request_timeout_seconds))
        )
        # the retries are ours (_call): MLflow's own inside each of ours multiplied them,
        # and a hung server held one call for 9 minutes
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        # with a tracking server MLflow writes "🏃 View run ... at: <url>" to stdout as
        # each run ends: two lines per series in `forecaster train`'s output, and on an
        # ASCII stdout the write raised inside set_terminated, failing every training
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        uri = settings.tracking_uri
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        elif uri.startswith("file:") or "://" not in uri:
            Path(uri.removeprefix("file:")).mkdir(parents=True, exist_ok=True)
        self._client: Any = None
        self._experiment_id: str | None = None

    @property
    def remote(self) -> bool:
        """Whether the tracking store is a server (its artifacts live where it says)."""
        return self.settings.tracking_uri.lower().startswith(("http://", "https://", "databricks"))

    # -- plumbing ---------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The lazily created ``mlflow.MlflowClient``."""
        if self._client is None:
            from mlflow import MlflowClient

            for name in ("mlflow", "alembic"):
                logging.getLogger(name).setLevel(logging.WARNING)
            try:
                self._client = MlflowClient(tracking_uri=self.settings.tracking_uri)
            except Exception as exc:  # noqa: BLE001 - e.g. an unsupported URI
                raise RegistryError(
                    f"cannot open MLflow at {self.settings.tracking_uri}: "
                    f"{exc.__class__.__name__}: {exc}"
                ) from exc
        return self._client

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()`` with retries and backoff, while a retry can still finish within the
        request timeout (a server that hangs costs one timeout, not one per retry)."""
        attempts = 1 + self.settings.max_retries
        delay = 0.5
        last: Exception | None = None
        started = time.monotonic()
        for attempt in range(attempts):
            try:
                return fn()
            except RegistryError:
                raise
            except Exception as exc:  # noqa: BLE001 - MLflow raises many unrelated types
                last = exc
                if _is_permanent(exc) or attempt == attempts - 1:
                    break
                if time.monotonic() - started + delay > self.settings.request_timeout_seconds:
                    break
                time.sleep(delay)
                delay *= 2
        raise RegistryError(
            f"MLflow at {self.settings.tracking_uri} failed to {what}: {last}"
        ) from last

    def experiment_id(self) -> str:
        """Id of the configured experiment, created on first use."""
        if self._experiment_id is None:

            def get_or_create() -> str:
                exp = self.client.get_experiment_by_name(self.settings.experiment)
                location = None
                loc = self.settings.artifact_location
                if loc is None and not self.remote:
                    loc = "models/artifacts"
                if loc:
                    location = loc if "://" in loc else Path(loc).resolve().as_uri()
                if exp is not None:
                    asked = self.settings.artifact_location
                    if asked and location != exp.artifact_location:
                        # MLflow fixes an experiment's artifact location when it is
                        # created; a changed setting was silently ignored
                        log.warning(
                            "FORECASTER_MLFLOW__ARTIFACT_LOCATION=%s is not used: experiment "
                            "%r keeps its artifacts at %s (set when it was created); to "
                            "change it, name a new experiment (FORECASTER_MLFLOW__EXPERIMENT)",
                            asked,
                            self.settings.experiment,
                            exp.artifact_location,
                        )
                    return str(exp.experiment_id)
                return str(
                    self.client.create_experiment(
                        self.settings.experiment, artifact_location=location
                    )
                )

            self._experiment_id = self._call("open the experiment", get_or_create)
        return self._experiment_id

    # -- runs -------------------------------------------------------------------------
    def log_training(
        self,
        *,
        series: str,
        params: dict[str, Any],
        metrics: dict[str, float],
        estimator_document: dict[str, Any],
        plot: Path | None = None,
        tags: dict[str, str] | None = None,
    ) -> str:
        """Log one training run and return its run id.

        Args:
            series: Series name (tag ``series``).
            params: Training parameters (horizon, history, candidates, ...).
            metrics: Flat metric names to values (e.g. ``prophet.mase``).
            estimator_document: Output of ``dump_estimator`` for the chosen estimator.
            plot: A PNG of predicted vs actual to attach.
            tags: Extra tags.
        """
        client = self.client
        experiment_id = self.experiment_id()
        run = self._call(
            "create a run",
            lambda: client.create_run(
                experiment_id,
                run_name=run_name(series),
                tags={"series": series, "forecaster.job": "train", **(tags or {})},
            ),
        )
        run_id = str(run.info.run_id)
        try:
            from mlflow.entities import Metric, Param

            now_ms = int(time.time() * 1000)
            param_list = [Param(mlflow_key(k), str(v)[:6000]) for k, v in params.items()]
            metric_list = [
                Metric(mlflow_key(k), float(v), now_ms, 0)
                for k, v in metrics.items()
                if v is not None and v == v and abs(float(v)) != float("inf")
            ]
            self._call(
                "log params and metrics",
                lambda: client.log_batch(run_id, metrics=metric_list, params=param_list),
            )
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / "estimator"
                folder.mkdir()
                (folder / "estimator.json").write_text(json.dumps(estimator_document))
                self._call(
                    "upload the estimator",
                    lambda: client.log_artifacts(run_id, str(folder), artifact_path="estimator"),
                )
            if plot is not None and plot.is_file():
                self._call(
                    "upload the plot",
                    lambda: client.log_artifact(run_id, str(plot), artifact_path="plots"),
                )
            self._call("finish the run", lambda: client.set_terminated(run_id, "FINISHED"))
        except RegistryError:
            try:
                client.set_terminated(run_id, "FAILED")
            except Exception:  # noqa: BLE001 - best effort on a failing server
                pass
            raise
        return run_id

    # -- registry ---------------------------------------------------------------------
    def model_name(self, series: str) -> str:
        """Registered model name of ``series``."""
        return registered_model_name(self.settings.registered_model_prefix, series)

    def register(
        self, series: str, run_id: str, tags: dict[str, str] | None = None
    ) -> RegisteredVersion:
        """Register the estimator logged by ``run_id`` as a new version of the series'
        model, with ``tags`` on the version (the gate's decision and reason)."""
        name = self.model_name(series)
        client = self.client

        def ensure_model() -> None:
            from mlflow.exceptions import MlflowException

            try:
                client.get_registered_model(name)
            except MlflowException:
                client.create_registered_model(
                    name, tags={"series": series}, description=f"Forecasts of {series}"
                )

        self._call("create the registered model", ensure_model)
        run = self._call("read the run", lambda: client.get_run(run_id))
        source = f"{run.info.artifact_uri}/estimator"
        version = self._call(
            "register a model version",
            lambda: client.create_model_version(
                name, source=source, run_id=run_id, tags=tags or None
            ),
        )
        return RegisteredVersion(model=name, version=str(version.version), run_id=run_id)

    def alias(self, series: str, alias: str) -> RegisteredVersion | None:
        """The version holding ``alias`` for ``series`` (``None`` if unset)."""
        name = self.model_name(series)

        def lookup() -> RegisteredVersion | None:
            from mlflow.exceptions import MlflowException

            try:
                mv = self.client.get_model_version_by_alias(name, alias)
            except MlflowException as exc:
                if (
                    "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code)
                    or "not found" in str(exc).lower()
                ):
                    return None
                raise
            return RegisteredVersion(model=name, version=str(mv.version), run_id=str(mv.run_id))

        return self._call(f"read alias {alias!r}", lookup)

    def set_alias(self, series: str, alias: str, version: str) -> None:
        """Point ``alias`` of the series' model at ``version``."""
        name = self.model_name(series)
        self._call(
            f"set alias {alias!r}",
            lambda: self.client.set_registered_model_alias(name, alias, version),
        )

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """Metrics logged by ``run_id``."""
        run = self._call("read the run", lambda: self.client.get_run(run_id))
        return {str(k): float(v) for k, v in run.data.metrics.items()}

    def load_document(self, run_id: str) -> dict[str, Any]:
        """The estimator document logged by ``run_id`` (cached under ``cache_dir``)."""
        cache = self.settings.cache_dir / run_id / "estimator.json"
        if cache.is_file():
            loaded: dict[str, Any] = json.loads(cache.read_text())
            return loaded
        cache.parent.mkdir(parents=True, exist_ok=True)
        path = self._call(
            "download the estimator",
            lambda: self.client.download_artifacts(run_id, "estimator", str(cache.parent)),
        )
        document: dict[str, Any] = json.loads((Path(path) / "estimator.json").read_text())
        cache.write_text(json.dumps(document))
        return document


#: Local file errors a retry cannot fix (a read-only or full artifact folder, no
#: permission): retried with backoff, they only delayed the same error by seconds.
_PERMANENT_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EDQUOT}


def _is_permanent(exc: Exception) -> bool:
    if isinstance(exc, OSError) and exc.errno in _PERMANENT_ERRNOS:
        return True
    code = str(getattr(exc, "error_code", ""))
    return code in {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"}
