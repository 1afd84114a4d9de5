"""Initial schema: series, observations, publications, forecast points, trainings, champions, job runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from forecaster.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "series",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("family", sa.String(128), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("step_seconds", sa.Integer, nullable=False),
        sa.Column("horizon_steps", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("last_observation_at", UTCDateTime, nullable=True),
        sa.Column("current_publication_id", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_series"),
        sa.UniqueConstraint("name", name="uq_series_name"),
    )
    op.create_table(
        "observations",
        sa.Column("series_id", sa.Integer, nullable=False),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["series.id"],
            name="fk_observations_series_id_series",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("series_id", "ts", name="pk_observations"),
    )
    op.create_table(
        "publications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("series_id", sa.Integer, nullable=False),
        sa.Column("generated_at", UTCDateTime, nullable=False),
        sa.Column("origin", UTCDateTime, nullable=False),
        sa.Column("step_seconds", sa.Integer, nullable=False),
        sa.Column("horizon_steps", sa.Integer, nullable=False),
        sa.Column("level", sa.Float, nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["series.id"],
            name="fk_publications_series_id_series",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_publications"),
    )
    op.create_index(
        "ix_publications_series_generated", "publications", ["series_id", "generated_at"]
    )
    op.create_table(
        "forecast_points",
        sa.Column("publication_id", sa.Integer, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("ds", UTCDateTime, nullable=False),
        sa.Column("yhat", sa.Float, nullable=False),
        sa.Column("yhat_lower", sa.Float, nullable=False),
        sa.Column("yhat_upper", sa.Float, nullable=False),
        sa.ForeignKeyConstraint(
            ["publication_id"],
            ["publications.id"],
            name="fk_forecast_points_publication_id_publications",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("publication_id", "step", name="pk_forecast_points"),
    )
    op.create_table(
        "trainings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("series_id", sa.Integer, nullable=False),
        sa.Column("trained_at", UTCDateTime, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("estimator", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=True),
        sa.Column("promoted", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("artifact", sa.Text, nullable=True),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name="fk_trainings_series_id_series", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_trainings"),
    )
    op.create_index("ix_trainings_series_trained", "trainings", ["series_id", "trained_at"])
    op.create_table(
        "champions",
        sa.Column("series_id", sa.Integer, nullable=False),
        sa.Column("training_id", sa.Integer, nullable=False),
        sa.Column("estimator", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("mase", sa.Float, nullable=True),
        sa.Column("promoted_at", UTCDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name="fk_champions_series_id_series", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["training_id"], ["trainings.id"], name="fk_champions_training_id_trainings"
        ),
        sa.PrimaryKeyConstraint("series_id", name="pk_champions"),
    )
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job", sa.String(32), nullable=False),
        sa.Column("series", sa.String(300), nullable=True),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("ok", sa.Boolean, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_runs"),
    )
    op.create_index("ix_job_runs_job_started", "job_runs", ["job", "started_at"])


def downgrade() -> None:
    for index, table in (
        ("ix_job_runs_job_started", "job_runs"),
        ("ix_trainings_series_trained", "trainings"),
        ("ix_publications_series_generated", "publications"),
    ):
        op.drop_index(index, table_name=table)
    for table in (
        "job_runs",
        "champions",
        "trainings",
        "forecast_points",
        "publications",
        "observations",
        "series",
    ):
        op.drop_table(table)
