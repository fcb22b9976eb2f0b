"""Alembic environment: runs migrations on the engine handed in by forecast.storage.engine."""

from __future__ import annotations

from alembic import context

from forecast.storage.tables import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
