"""Reference band on forecast points, for regression detection.

Watched series publish, beside the served forecast, the forecast without
recent-level corrections (``predict(follow_level=False)``); the detector judges
observations against it. Nullable: other series and older publications have none.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = ("ref_yhat", "ref_lower", "ref_upper")


def upgrade() -> None:
    with op.batch_alter_table("forecast_points") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("forecast_points") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
