"""Job requests: admin-triggered ingest/train/publish/reload runs picked up by the scheduler.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from forecaster.store.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job", sa.String(16), nullable=False),
        sa.Column("series", sa.String(300), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_at", UTCDateTime, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=True),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_requests"),
    )
    op.create_index("ix_job_requests_status", "job_requests", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_job_requests_status", table_name="job_requests")
    op.drop_table("job_requests")
