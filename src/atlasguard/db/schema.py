"""Tables of the metadata database (SQLAlchemy Core). Changes need a migration."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "api_keys",
    "audit_checkpoints",
    "audit_records",
    "grants",
    "metadata",
    "principals",
]

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

principals = Table(
    "principals",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("principal", String(200), ForeignKey("principals.name"), nullable=False, index=True),
    # scrypt(secret, salt): a slow hash; the secret itself is never stored.
    Column("salt", LargeBinary(16), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
)

grants = Table(
    "grants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("principal", String(200), ForeignKey("principals.name"), nullable=False, index=True),
    Column("models", String(200), nullable=False),  # a model name or an fnmatch pattern
    Column("role", String(50), nullable=False),
    Column("rate", String(50), nullable=False, default=""),
    Column("quota", String(50), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("principal", "models", "role", name="uq_grants_principal_models_role"),
)
