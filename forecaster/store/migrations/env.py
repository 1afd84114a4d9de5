"""Alembic environment: migrates the engine handed over in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from forecaster.store.db import unbounded
from forecaster.store.tables import metadata

config = context.config
engine = config.attributes["engine"]

# a migration rewrites whole tables: it takes as long as it takes (no statement timeout)
with engine.begin() as connection, unbounded(connection):
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
