"""Engines: the URL from the policy, SQLite tuned for durability, PostgreSQL as given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

from atlasguard.errors import ConfigurationError

__all__ = ["READ_ONLY", "connect", "database_url"]


def database_url(configured: str, state_dir: Path) -> str:
    """The policy's ``database_url``, or SQLite in ``state_dir`` when it is empty."""
    if configured:
        return configured
    state_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{state_dir / 'atlasguard.db'}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL for concurrent readers; FULL so an acknowledged write survives a crash.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def connect(url: str) -> Engine:
    """An engine for ``url``; raises :class:`ConfigurationError` for a URL it cannot use."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        if url.startswith("sqlite"):
            if url in ("sqlite://", "sqlite:///:memory:"):
                # One in-memory database on one connection shared by every thread: for
                # examples and single-threaded tests only (concurrent writers would share
                # one transaction); deployments use a file or PostgreSQL.
                engine = create_engine(
                    url,
                    connect_args={"timeout": 30, "check_same_thread": False},
                    poolclass=StaticPool,
                )
            else:
                engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling defers BEGIN; take it over so that
            # BEGIN IMMEDIATE serialises writers (the audit log relies on it).
            event.listen(engine, "connect", _disable_pysqlite_begin)
            event.listen(engine, "begin", _begin_immediate)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except Exception as exc:  # SQLAlchemy raises several unrelated types for bad URLs
        raise ConfigurationError(f"cannot use database URL {url!r}: {exc}") from None


def _disable_pysqlite_begin(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


READ_ONLY = {"atlasguard_read_only": True}
"""Execution options for a connection that only reads: on SQLite it begins a deferred
transaction (a WAL snapshot that never blocks writers) instead of ``BEGIN IMMEDIATE``."""


def _begin_immediate(conn: Any) -> None:
    if conn.get_execution_options().get("atlasguard_read_only"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
