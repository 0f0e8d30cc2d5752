"""Tables of the metadata database (SQLAlchemy Core). Changes need a migration."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["audit_checkpoints", "audit_records", "metadata"]

metadata = MetaData()

_BigInt = BigInteger().with_variant(Integer(), "sqlite")

audit_records = Table(
    "audit_records",
    metadata,
    # The leaf index in the Merkle tree: dense, 0-based, assigned under a lock.
    Column("idx", _BigInt, primary_key=True, autoincrement=False),
    Column("created_at", Float, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("body", Text, nullable=False),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("size", _BigInt, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("note", Text, nullable=False),
)
