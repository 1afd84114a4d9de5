"""Tables of the forecast consumers: anomaly scores, regression events, detector state,
webhooks, the KEDA scaler's planner state.

Defined on the same :data:`forecaster.store.tables.metadata` as the core tables;
created by migration ``0002`` (the planner state by ``0009``).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
)

from forecaster.store.tables import UTCDateTime, metadata

anomaly_scores_table = Table(
    "anomaly_scores",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    Column("ts", UTCDateTime, primary_key=True),
    Column("value", Float, nullable=False),
    Column("yhat", Float, nullable=False),
    Column("yhat_lower", Float, nullable=False),
    Column("yhat_upper", Float, nullable=False),
    Column("score", Float, nullable=False),
    Column("side", SmallInteger, nullable=False),
    Column("publication_id", Integer, nullable=True),
    Column("model", String(240), nullable=False),
)

regression_events_table = Table(
    "regression_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), nullable=False),
    Column("start", UTCDateTime, nullable=False),
    Column("end", UTCDateTime, nullable=True),
    Column("peak_score", Float, nullable=False),
    Column("direction", String(8), nullable=False),
    Column("model", String(240), nullable=False),
    Column("detected_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # why it closed when not by the series returning (migration 0008), else null
    Column("closed_reason", String(300), nullable=True),
    Index("ix_regression_events_series_start", "series_id", "start"),
    Index("ix_regression_events_updated", "updated_at"),
)

detector_state_table = Table(
    "detector_state",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    Column("state", JSON, nullable=False),
    Column("open_event_id", Integer, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

webhook_deliveries_table = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(400), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("series", String(300), nullable=False),
    Column("url", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=False),
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
)

#: The memory of the KEDA scaler's replica planners (one row per trigger), written
#: behind the answers and read when a scaler starts (migration 0009).
planner_state_table = Table(
    "planner_state",
    metadata,
    # sha256 of the trigger (namespace, ScaledObject name and metadata)
    Column("key", String(64), primary_key=True),
    Column("scaled_object", String(600), nullable=False),  # namespace/name, for people
    Column("series", String(300), nullable=False),
    # JSON text written with orjson: the JSON type's serializer took 150 us a state,
    # 80 ms of the scaler's CPU per save of 500 planners
    Column("state", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_planner_state_updated", "updated_at"),
)
