"""SQLAlchemy Core table definitions of the store (the schema Alembic migrates)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned tz-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} passed to the store; use UTC")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


#: Longest series name the store keeps (``series.name``; a ``split_by`` member's name
#: includes its label values).
SERIES_NAME_MAX = 300

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

series_table = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(SERIES_NAME_MAX), nullable=False, unique=True),
    Column("family", String(128), nullable=False),
    Column("labels", JSON, nullable=False, default=dict),
    Column("kind", String(16), nullable=False, default="load"),
    Column("unit", String(32), nullable=False, default=""),
    Column("step_seconds", Integer, nullable=False),
    Column("horizon_steps", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_observation_at", UTCDateTime, nullable=True),
    Column("current_publication_id", Integer, nullable=True),
    # The store revision of the transaction that last changed this row or the
    # series' champion (:data:`store_revision_table`); readers that keep a copy of
    # the catalogue re-read only the rows above the revision they hold.
    Column("revision", BigInteger, nullable=False, server_default="0"),
    Index("ix_series_revision", "revision"),
)

#: One row (``id`` 1) counting the write transactions that changed the catalogue
#: (``series`` rows, champions). Each such transaction increments it as its last
#: statement and stamps the series it changed with the new value, so the count only
#: grows in commit order (the row lock serialises the increments on PostgreSQL).
store_revision_table = Table(
    "store_revision",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("revision", BigInteger, nullable=False),
)

observations_table = Table(
    "observations",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    Column("ts", UTCDateTime, primary_key=True),
    Column("value", Float, nullable=False),
)

publications_table = Table(
    "publications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), nullable=False),
    Column("generated_at", UTCDateTime, nullable=False),
    Column("origin", UTCDateTime, nullable=False),
    Column("step_seconds", Integer, nullable=False),
    Column("horizon_steps", Integer, nullable=False),
    Column("level", Float, nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("run_id", String(64), nullable=False),
    # the factor the served band was stretched by (forecaster.recalibration); NULL = 1
    Column("band_scale", Float, nullable=True),
    Column("band_scale_long", Float, nullable=True),
    Index("ix_publications_series_generated", "series_id", "generated_at"),
)

forecast_points_table = Table(
    "forecast_points",
    metadata,
    Column(
        "publication_id",
        Integer,
        ForeignKey("publications.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("step", Integer, primary_key=True),
    Column("ds", UTCDateTime, nullable=False),
    Column("yhat", Float, nullable=False),
    Column("yhat_lower", Float, nullable=False),
    Column("yhat_upper", Float, nullable=False),
    # The reference band the regression detector judges against (watched series
    # only): the forecast without recent-level corrections. Added by migration 0004.
    Column("ref_yhat", Float, nullable=True),
    Column("ref_lower", Float, nullable=True),
    Column("ref_upper", Float, nullable=True),
)

trainings_table = Table(
    "trainings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), nullable=False),
    Column("trained_at", UTCDateTime, nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("estimator", String(200), nullable=False),
    Column("model_version", String(32), nullable=True),
    Column("promoted", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("artifact", Text, nullable=True),
    Index("ix_trainings_series_trained", "series_id", "trained_at"),
)

champions_table = Table(
    "champions",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    Column("training_id", Integer, ForeignKey("trainings.id"), nullable=False),
    Column("estimator", String(200), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("mase", Float, nullable=True),
    Column("promoted_at", UTCDateTime, nullable=False),
)

job_runs_table = Table(
    "job_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(32), nullable=False),
    Column("series", String(300), nullable=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("ok", Boolean, nullable=True),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_job_runs_job_started", "job", "started_at"),
)
