"""The KEDA scaler's planner state: the scale-down memory of each trigger.

A planner scales down only after its stabilisation window and in bounded steps; its
window and last step lived in the scaler's memory alone, so a restarted scaler (a
rollout, an OOM kill) could drop replicas at once right behind a peak. The scaler
now writes each planner's state here behind its answers and reads it back at start.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from forecaster.store.tables import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "planner_state",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("scaled_object", sa.String(600), nullable=False),
        sa.Column("series", sa.String(300), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_planner_state"),
    )
    op.create_index("ix_planner_state_updated", "planner_state", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_planner_state_updated", table_name="planner_state")
    op.drop_table("planner_state")
