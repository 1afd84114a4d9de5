"""Catalogue change marker: ``store_revision`` and ``series.revision``.

The serving processes (API workers, KEDA scaler) keep the catalogue in memory and
used to re-read every ``series`` row each second or two. Every write transaction
that changes a series row or its champion now increments the one-row
``store_revision`` counter and stamps the rows it changed with the new value, so a
reader holding revision N reads only the rows above N (and nothing when the counter
has not moved).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "store_revision",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "revision": 0}])
    with op.batch_alter_table("series") as batch:
        batch.add_column(sa.Column("revision", sa.BigInteger, nullable=False, server_default="0"))
        batch.create_index("ix_series_revision", ["revision"])


def downgrade() -> None:
    with op.batch_alter_table("series") as batch:
        batch.drop_index("ix_series_revision")
        batch.drop_column("revision")
    op.drop_table("store_revision")
