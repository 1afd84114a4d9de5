"""Long-lead band scale on publications (forecaster.recalibration).

The publish job stretches forecast steps beyond an hour of lead by a second factor,
learnt from how the longer-lead forecasts of the last day fared, and records it
next to ``band_scale`` so later recalibrations can undo it. Nullable: older
publications stretched every step by ``band_scale``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("publications") as batch:
        batch.add_column(sa.Column("band_scale_long", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("publications") as batch:
        batch.drop_column("band_scale_long")
