"""Typed settings for every forecaster process, read from the environment and ``.env``.

Environment variables use the ``FORECASTER_`` prefix and ``__`` between a section
and its field, e.g. ``FORECASTER_PROMETHEUS__URL`` or ``FORECASTER_DATABASE__URL``.
Nothing is read at import time: call :func:`get_settings`.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from forecaster.errors import ConfigError

log = logging.getLogger(__name__)

#: Variables under the prefix that are not settings: the test suite's own.
_NOT_SETTINGS = ("FORECASTER_TEST_",)
#: Settings that were removed, and where their job is done now.
_MOVED = {
    "schedule.publish_every_seconds": "set 'schedule: {publish: 1m}' per series in the "
    "pipeline spec",
    "schedule.train_cron": "set 'schedule: {train: \"0 3 * * *\"}' per series in the pipeline spec",
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "password", "token", "xxx", ""}


class _Section(BaseModel):
    """A settings section: numbers must be finite (``inf``/``nan`` are refused).

    An unknown field (``FORECASTER_SCHEDULE__STALE_AFTER_SECOND``, a typo) is refused
    rather than ignored: a misspelt setting would otherwise leave its default in force
    unseen.
    """

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")


class PrometheusSettings(_Section):
    """How to reach Prometheus (``FORECASTER_PROMETHEUS__*``)."""

    url: str = "http://127.0.0.1:9090"
    timeout_seconds: float = Field(10.0, gt=0, le=600)
    retries: int = Field(3, ge=0, le=20)
    backoff_seconds: float = Field(0.5, ge=0, le=60)
    verify_tls: bool = True
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    bearer_token: SecretStr | None = None
    max_points_per_query: int = Field(10_000, ge=10, le=11_000)
    #: Upper bound of (series in the answer) x (grid points) per range query; chunks of
    #: large ``split_by`` families shrink to stay under it (bounds memory on both ends).
    max_samples_per_request: int = Field(500_000, ge=100, le=50_000_000)

    @field_validator("bearer_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        # a token read from a file keeps its final newline: every request then failed
        # ("Invalid ... header value") with the token itself in the message
        if value is None:
            return None
        token = value.get_secret_value().strip()
        if not token:
            raise ValueError("is empty (white space only)")
        if any(char.isspace() or not char.isprintable() for char in token):
            raise ValueError(
                "contains white space or control characters, which an HTTP header cannot "
                "carry (the token itself is not shown)"
            )
        return SecretStr(token)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        # white space around it (a Kubernetes secret written with a final newline)
        # made every ingest fail, with a 404 or "Invalid URL", not the start
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {_masked(value)!r}")
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises on a port that is not a number in 0-65535
        except ValueError as exc:
            raise ValueError(f"{_masked(value)!r} is not a usable URL: {exc}") from None
        if not parts.hostname:
            raise ValueError(f"{_masked(value)!r} names no host")
        if any(char.isspace() for char in value):
            raise ValueError(f"{_masked(value)!r} contains white space")
        if parts.query or parts.fragment:
            raise ValueError(
                f"{_masked(value)!r} has a query string or fragment; give the base URL "
                "Prometheus serves /api/v1 under (a path prefix is fine)"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _tls_files(self) -> PrometheusSettings:
        # a missing file crashed every ingest with a traceback, not at start
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        for name in ("ca_file", "client_cert", "client_key"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: file {str(path)!r} does not exist")
        return self


class DatabaseSettings(_Section):
    """The SQL history / forecast store (``FORECASTER_DATABASE__*``)."""

    url: str = "sqlite:///.forecaster/forecaster.db"
    echo: bool = False
    pool_size: int = Field(5, ge=1, le=100)
    sqlite_busy_timeout_seconds: float = Field(30.0, ge=0)
    #: PostgreSQL: a new connection not established within this long fails (libpq's
    #: ``connect_timeout``, whole seconds, at least 2).
    connect_timeout_seconds: int = Field(10, ge=2, le=600)
    #: PostgreSQL: the server cancels a statement that runs longer (0: never).
    #: Migrations and the migration lock's wait are exempt.
    statement_timeout_seconds: float = Field(300.0, ge=0, le=86400)
    #: PostgreSQL: a query (or commit) the database has not answered within this long
    #: fails on the client and its connection is dropped: a stalled connection (a hung
    #: server or proxy, a half-open link) otherwise waits forever. Unset: the statement
    #: timeout plus 30 s, or never when that is 0; 0: never.
    query_timeout_seconds: float | None = Field(None, ge=0, le=86400)
    #: PostgreSQL: TCP keepalives probe an idle connection after this long, and data
    #: the server's host leaves unacknowledged this long drops the connection (libpq
    #: ``keepalives_idle`` and ``tcp_user_timeout``); 0: the operating system's defaults.
    tcp_timeout_seconds: float = Field(30.0, ge=0, le=3600)

    @property
    def effective_query_timeout(self) -> float | None:
        """The client-side limit of one query in seconds, ``None`` for none."""
        if self.query_timeout_seconds is not None:
            return self.query_timeout_seconds or None
        return self.statement_timeout_seconds + 30.0 if self.statement_timeout_seconds else None

    @model_validator(mode="after")
    def _timeouts(self) -> DatabaseSettings:
        limit, statement = self.query_timeout_seconds, self.statement_timeout_seconds
        if limit and statement and limit <= statement:
            raise ValueError(
                f"query_timeout_seconds ({limit:g}) must exceed statement_timeout_seconds "
                f"({statement:g}): the client would drop connections whose slow statements "
                "the server is about to cancel cleanly"
            )
        return self

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in ("sqlite", "postgresql+psycopg"):
            hint = ""
            if scheme.startswith("postgres"):  # psycopg2, asyncpg, postgres://: not installed
                hint = (
                    " (this release talks to PostgreSQL through psycopg 3: postgresql+psycopg://)"
                )
            raise ValueError(
                f"only sqlite:/// and postgresql+psycopg:// URLs are supported, got "
                f"{_masked(value)!r}{hint}"
            )
        return value


def _masked(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


#: Longest ``FORECASTER_MLFLOW__REGISTERED_MODEL_PREFIX`` (MLflow keeps 256 characters
#: of ``<prefix>.<series>``).
PREFIX_MAX = 100
#: URI schemes MLflow's tracking store accepts (a ``+driver`` suffix allowed).
TRACKING_SCHEMES = frozenset(
    {"http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks", "uc"}
)


class MlflowSettings(_Section):
    """MLflow tracking and registry (``FORECASTER_MLFLOW__*``).

    The embedded default keeps everything under the top-level ``models/`` folder.
    """

    tracking_uri: str = "sqlite:///models/mlflow.db"
    #: Artifact root of a new experiment. Unset: ``models/artifacts`` with a local
    #: tracking store, the tracking server's own root with an http(s) one (a local
    #: default put a remote server's artifacts on the training pod's disk); empty: the
    #: server's root always.
    artifact_location: str | None = None
    experiment: str = "forecaster"
    registered_model_prefix: str = "forecaster"
    cache_dir: Path = Path("models/cache")
    request_timeout_seconds: float = Field(30.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)

    @field_validator("registered_model_prefix")
    @classmethod
    def _model_prefix(cls, value: str) -> str:
        """A prefix MLflow accepts in a registered model's name: one it refuses
        (``team/forecaster``) was found only after each series' whole training, as an
        MLflow failure of every training, every day."""
        value = value.strip()
        if not value:
            raise ValueError("is empty; registered models are named <prefix>.<series>")
        bad = sorted({c for c in value if c in "/:"})
        if bad:
            raise ValueError(
                f"{value!r} contains {' and '.join(repr(c) for c in bad)}, which MLflow "
                "refuses in a registered model's name (e.g. use team.forecaster)"
            )
        if f"{value}.".startswith(".."):
            raise ValueError(
                f"{value!r} makes names starting with '..', which MLflow refuses (they "
                "read as relative paths)"
            )
        if len(value) > PREFIX_MAX:
            raise ValueError(
                f"is {len(value)} characters; at most {PREFIX_MAX} leave room for the "
                "series name in MLflow's 256"
            )
        return value

    @field_validator("tracking_uri")
    @classmethod
    def _tracking_uri(cls, value: str) -> str:
        """A URI MLflow can open; a typo (``htp://``) or a bare ``host:5000`` failed only
        after a whole training, outside the MLflow error handling."""
        value = value.strip()
        if not value:
            raise ValueError("is empty; use e.g. http://mlflow:5000 or sqlite:///models/mlflow.db")
        match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", value)
        if match is None or (len(match.group(1)) == 1 and value[1:3] in (":\\", ":/")):
            return value  # a local folder (or a Windows drive path)
        scheme = match.group(1).lower()
        base = scheme.split("+", 1)[0]
        if base in TRACKING_SCHEMES:
            return value
        server = value.split("://", 1)[1] if "://" in value else value
        raise ValueError(
            f"unknown scheme {scheme!r} in {_masked(value)!r}; use http(s)://host:port for a "
            f"tracking server (did you mean {_masked('http://' + server)!r}?), "
            "sqlite:///file.db, postgresql://..., file:///folder or a local folder"
        )


class ScheduleSettings(_Section):
    """Scheduler timing (``FORECASTER_SCHEDULE__*``).

    How often each series is ingested, published and trained is set per series in
    the pipeline spec (``schedule: {ingest, publish, train}``), not here.
    """

    timezone: str = "UTC"
    misfire_grace_seconds: int = Field(60, ge=1)
    stale_after_seconds: int = Field(
        120, ge=1, description="A forecast older than this is stale: two 1-minute publish intervals"
    )
    job_runs_retention_hours: int = Field(
        72,
        ge=1,
        le=10 * 8760,
        description="Job runs (one row per series and run) are deleted after this",
    )
    training_artifacts_kept: int = Field(
        5, ge=0, le=10_000, description="Stored models kept per series besides the champion's"
    )
    history_retention_days: int = Field(
        0,
        ge=0,
        le=10 * 366,
        description="Observations older than this are deleted (0: kept forever); never "
        "less than a series' training history or 14 days",
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:  # the scheduler's cron triggers are built in this zone
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use e.g. 'UTC' or 'Europe/Berlin'"
            ) from None
        return value


class ApiSettings(_Section):
    """The HTTP API (``FORECASTER_API__*``)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    token: SecretStr | None = None
    require_token_for_reads: bool = False
    max_horizon_seconds: int = Field(7 * 86400, ge=60)
    max_query_bytes: int = Field(4096, ge=256)
    max_body_bytes: int = Field(65536, ge=1024)
    cors_origins: list[str] = Field(default_factory=list)


class TrainingSettings(_Section):
    """Where and how estimator fits run (``FORECASTER_TRAINING__*``)."""

    workers: int = Field(1, ge=1, le=256)
    threads_per_fit: int = Field(1, ge=1, le=64)
    dask_address: str | None = None
    #: One Prophet fit stops after this long and auto falls back to another candidate.
    prophet_fit_timeout_seconds: float = Field(60.0, gt=0, le=3600)

    @field_validator("dask_address")
    @classmethod
    def _dask_address(cls, value: str | None) -> str | None:
        return _dask_address(value)


def _dask_address(value: str | None) -> str | None:
    """A Dask scheduler address, or None; "notaurl" failed deep inside distributed
    with a 27-frame traceback at the first training."""
    if not value:
        return None
    # Dask's own forms: host:port (tcp implied) or scheme://host:port; it needs the port
    if not re.fullmatch(r"(?:(?:tcp|tls|inproc|ucx|ws|wss)://)?[^\s/]+:\d+/?", value):
        raise ValueError(
            f"expected a Dask scheduler address such as tcp://scheduler:8786, got {value!r}"
        )
    return value


class ScalerSettings(_Section):
    """The KEDA external scaler gRPC server (``FORECASTER_SCALER__*``).

    With ``tls_cert`` and ``tls_key`` the server speaks TLS; with ``client_ca`` as
    well it requires client certificates signed by that CA (mutual TLS).
    """

    host: str = "127.0.0.1"
    port: int = Field(50051, ge=1, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> ScalerSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both tls_cert and tls_key (or neither)")
        if self.client_ca is not None and self.tls_cert is None:
            raise ValueError("client_ca (mutual TLS) needs tls_cert and tls_key")
        for name in ("tls_cert", "tls_key", "client_ca"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: file {str(path)!r} does not exist")
        return self


class Settings(BaseSettings):
    """All forecaster settings. Fails fast on invalid values."""

    model_config = SettingsConfigDict(
        env_prefix="FORECASTER_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    environment: Literal["development", "production"] = "development"
    pipelines: Path = Path("pipelines/demo.yaml")
    log_level: str = "INFO"
    prometheus: PrometheusSettings = PrometheusSettings()
    database: DatabaseSettings = DatabaseSettings()
    mlflow: MlflowSettings = MlflowSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    api: ApiSettings = ApiSettings()
    scaler: ScalerSettings = ScalerSettings()
    training: TrainingSettings = TrainingSettings()
    dask_address: str | None = Field(
        None, description="Shorthand for training.dask_address (FORECASTER_DASK_ADDRESS)"
    )

    @field_validator("dask_address")
    @classmethod
    def _dask(cls, value: str | None) -> str | None:
        return _dask_address(value)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return value.upper()

    @model_validator(mode="after")
    def _dask_shorthand(self) -> Settings:
        if self.dask_address and not self.training.dask_address:
            self.training = self.training.model_copy(update={"dask_address": self.dask_address})
        return self

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> Settings:
        if self.environment == "production":
            token = self.api.token
            if token is None or token.get_secret_value().strip().lower() in _PLACEHOLDER_SECRETS:
                raise ValueError(
                    "api.token (FORECASTER_API__TOKEN) must be set to a real secret in production"
                )
            if not self.prometheus.verify_tls and self.prometheus.url.startswith("https"):
                raise ValueError("prometheus.verify_tls=false is not allowed in production")
        return self


def load_settings(**overrides: object) -> Settings:
    """Build :class:`Settings` from the environment plus ``overrides``.

    Raises:
        ConfigError: Listing every invalid field.
    """
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from exc
    except SettingsError as exc:
        # a list or mapping value (e.g. FORECASTER_API__CORS_ORIGINS) that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        variable = f"FORECASTER_{field.group(1).upper()}" if field else "FORECASTER_"
        raise ConfigError(
            f"invalid settings: a {variable}* variable is not valid JSON ({exc.__cause__}); "
            """list values are JSON, e.g. FORECASTER_API__CORS_ORIGINS='["https://a.example"]'"""
        ) from exc
    return settings


def warn_unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """Log a warning for each ``FORECASTER_*`` variable that is no setting; return them.

    Inside a section an unknown field is an error (see :class:`_Section`); at the top
    level the prefix is shared with other tools (the test suite's
    ``FORECASTER_TEST_*``, variables of other programs), so a stray variable
    is reported, with the closest setting, and the process goes on.
    """
    if environ is None:
        from dotenv import dotenv_values

        env_file = Path(str(Settings.model_config.get("env_file") or ".env"))
        from_file = dotenv_values(env_file) if env_file.is_file() else {}
        environ = {**{k: v or "" for k, v in from_file.items()}, **os.environ}
    unknown = _unknown_variables(environ)
    for name in unknown:
        log.warning("ignoring %s: it is not a forecaster setting%s", name, _guess(name))
    return unknown


def _problem(err: Any) -> str:
    """One validation error as ``field: message``; an unknown field names its variable."""
    loc = [str(part) for part in err["loc"]]
    where = ".".join(loc)
    if err["type"] != "extra_forbidden":
        message = err["msg"].removeprefix("Value error, ")
        # a model-wide check (production secrets) has no field: its message names one
        return f"{where}: {message}" if where else message
    variable = "FORECASTER_" + "__".join(loc).upper()
    hint = f"; {_MOVED[where]}" if where in _MOVED else _guess(variable)
    return f"{variable} is not a setting{hint}"


def _variables() -> list[str]:
    """Every setting's environment variable (sections expanded to their fields)."""
    names = []
    for field, info in Settings.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names += [f"FORECASTER_{field}__{sub}".upper() for sub in kind.model_fields]
        else:
            names.append(f"FORECASTER_{field}".upper())
    return names


def _guess(variable: str) -> str:
    """`` (did you mean X?)`` for the closest setting's variable, or ``""``."""
    close = difflib.get_close_matches(variable.upper(), _variables(), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``FORECASTER_*`` variables that name no top-level setting (sections check their own)."""
    top = {name.upper() for name in Settings.model_fields}
    unknown = []
    for key in environ:
        name = key.upper()
        if not name.startswith("FORECASTER_") or name.startswith(_NOT_SETTINGS):
            continue
        if name.removeprefix("FORECASTER_").split("__", 1)[0] not in top:
            unknown.append(key)
    return sorted(unknown)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once on first use."""
    return load_settings()
