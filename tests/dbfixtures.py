"""Databases for tests: a SQLite file, and a fresh database on the machine's PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from atlasguard.db import connect

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of ``kind`` (``sqlite`` or ``postgresql``), dropped afterwards."""
    if kind == "sqlite":
        eng = connect(f"sqlite:///{tmp_path / 'atlasguard.db'}")
        try:
            yield eng
        finally:
            eng.dispose()
        return
    name = f"ag_test_{uuid.uuid4().hex[:12]}"
    admin = connect(PG_ADMIN).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    eng = connect(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
