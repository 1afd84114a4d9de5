"""Band scale on publications (forecaster.recalibration).

The publish job stretches the served band by how the last day's forecasts fared
and records the factor, so later recalibrations judge against the estimator's own
band. Nullable: older publications were not stretched (factor 1).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("publications") as batch:
        batch.add_column(sa.Column("band_scale", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("publications") as batch:
        batch.drop_column("band_scale")
