"""Typed settings for every forecaster process, read from the environment and ``.env``.

Environment variables use the ``FORECASTER_`` prefix and ``__`` between a section
and its field, e.g. ``FORECASTER_PROMETHEUS__URL`` or ``FORECASTER_DATABASE__URL``.
Nothing is read at import time: call :func:`get_settings`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

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

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "password", "token", "xxx", ""}


class _Section(BaseModel):
    """A settings section: numbers must be finite (``inf``/``nan`` are refused)."""

    model_config = ConfigDict(allow_inf_nan=False)


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

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")


class DatabaseSettings(_Section):
    """The SQL history / forecast store (``FORECASTER_DATABASE__*``)."""

    url: str = "sqlite:///.forecaster/forecaster.db"
    echo: bool = False
    pool_size: int = Field(5, ge=1, le=100)
    sqlite_busy_timeout_seconds: float = Field(30.0, ge=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError(
                f"only sqlite:/// and postgresql+psycopg:// URLs are supported, got {value!r}"
            )
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value


class MlflowSettings(_Section):
    """MLflow tracking and registry (``FORECASTER_MLFLOW__*``).

    The embedded default keeps everything under the top-level ``models/`` folder.
    """

    tracking_uri: str = "sqlite:///models/mlflow.db"
    artifact_location: str | None = "models/artifacts"
    experiment: str = "forecaster"
    registered_model_prefix: str = "forecaster"
    cache_dir: Path = Path("models/cache")
    request_timeout_seconds: float = Field(30.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)


class ScheduleSettings(_Section):
    """Scheduler timing defaults (``FORECASTER_SCHEDULE__*``)."""

    publish_every_seconds: int = Field(60, ge=1)
    train_cron: str = "0 3 * * *"
    timezone: str = "UTC"
    misfire_grace_seconds: int = Field(60, ge=1)
    stale_after_seconds: int = Field(
        120, ge=1, description="A forecast older than this is stale: two 1-minute publish intervals"
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
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
    except SettingsError as exc:
        # a list or mapping value (e.g. FORECASTER_API__CORS_ORIGINS) that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        variable = f"FORECASTER_{field.group(1).upper()}" if field else "FORECASTER_"
        raise ConfigError(
            f"invalid settings: a {variable}* variable is not valid JSON ({exc.__cause__}); "
            """list values are JSON, e.g. FORECASTER_API__CORS_ORIGINS='["https://a.example"]'"""
        ) from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once on first use."""
    return load_settings()
