"""Consumer tables: anomaly scores, regression events, detector state, webhook deliveries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from forecaster.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _series_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["series_id"], ["series.id"], name=f"fk_{table}_series_id_series", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "anomaly_scores",
        sa.Column("series_id", sa.Integer, nullable=False),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("yhat", sa.Float, nullable=False),
        sa.Column("yhat_lower", sa.Float, nullable=False),
        sa.Column("yhat_upper", sa.Float, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("side", sa.SmallInteger, nullable=False),
        sa.Column("publication_id", sa.Integer, nullable=True),
        sa.Column("model", sa.String(240), nullable=False),
        _series_fk("anomaly_scores"),
        sa.PrimaryKeyConstraint("series_id", "ts", name="pk_anomaly_scores"),
    )
    op.create_table(
        "regression_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("series_id", sa.Integer, nullable=False),
        sa.Column("start", UTCDateTime, nullable=False),
        sa.Column("end", UTCDateTime, nullable=True),
        sa.Column("peak_score", sa.Float, nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("model", sa.String(240), nullable=False),
        sa.Column("detected_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        _series_fk("regression_events"),
        sa.PrimaryKeyConstraint("id", name="pk_regression_events"),
    )
    op.create_index(
        "ix_regression_events_series_start", "regression_events", ["series_id", "start"]
    )
    op.create_index("ix_regression_events_updated", "regression_events", ["updated_at"])
    op.create_table(
        "detector_state",
        sa.Column("series_id", sa.Integer, nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("open_event_id", sa.Integer, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        _series_fk("detector_state"),
        sa.PrimaryKeyConstraint("series_id", name="pk_detector_state"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("series", sa.String(300), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("claimed_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.UniqueConstraint("key", name="uq_webhook_deliveries_key"),
    )


def downgrade() -> None:
    op.drop_index("ix_regression_events_updated", table_name="regression_events")
    op.drop_index("ix_regression_events_series_start", table_name="regression_events")
    for table in ("webhook_deliveries", "detector_state", "regression_events", "anomaly_scores"):
        op.drop_table(table)
