"""Why a regression event closed, when it was not the series returning to its band.

The scheduler closes the open event of a series it stops judging (a retired
``split_by`` member, ``watch:`` removed, the series removed from the spec) at the
last observation it judged; ``closed_reason`` says so, and ``GET /v1/regressions``
shows it. Null for events that closed because the deviation ended (or are open).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("regression_events") as batch:
        batch.add_column(sa.Column("closed_reason", sa.String(300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("regression_events") as batch:
        batch.drop_column("closed_reason")
