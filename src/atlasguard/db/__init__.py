"""The one metadata database of a deployment: SQLite by default, PostgreSQL when configured.

Every subsystem that keeps state (audit log, principals, registry) declares its
tables on :data:`atlasguard.db.schema.metadata`; the schema is created and
upgraded by Alembic migrations shipped in the package (:func:`migrate`).
SQLAlchemy and Alembic come with the ``gateway`` extra and are imported here only.

>>> from atlasguard.db import connect
>>> engine = connect("sqlite://")
>>> engine.dialect.name
'sqlite'
"""

from __future__ import annotations

from atlasguard.db.engine import connect, database_url
from atlasguard.db.migrate import migrate

__all__ = ["connect", "database_url", "migrate"]
