"""Alembic environment: always run with a connection handed in by atlasguard.db.migrate."""

from __future__ import annotations

from alembic import context

from atlasguard.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable from the alembic CLI
    raise RuntimeError("run migrations through atlasguard.db.migrate(engine)")
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
