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
    "console_sessions",
    "grants",
    "group_members",
    "metadata",
    "monitor_suspensions",
    "principals",
    "registry_aliases",
    "registry_objects",
    "registry_versions",
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
    # The Merkle frontier at this size (migration 0005): lets a new process extend
    # the signed head without reading every leaf; checked against ``root`` on use.
    Column("frontier", LargeBinary, nullable=True),
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
    # The secret itself is never stored: HMAC-SHA256(salt, secret) for keys made since
    # migration 0006 (scheme "hmac-sha256"), scrypt(secret, salt) for older ones.
    Column("salt", LargeBinary(16), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("scheme", String(16), nullable=False, server_default="scrypt"),
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
    # The grant's own output policy (migration 0008), e.g. "label": stricter than its role's.
    Column("output", String(50), nullable=False, default="", server_default=""),
    UniqueConstraint("principal", "models", "role", name="uq_grants_principal_models_role"),
)

# -- groups (migration 0004) ----------------------------------------------------------

group_members = Table(
    "group_members",
    metadata,
    # Both are principal names: the group is ``group:<name>``, the member never a group.
    Column("group", String(200), ForeignKey("principals.name"), primary_key=True),
    Column("member", String(200), ForeignKey("principals.name"), primary_key=True, index=True),
    Column("created_at", Float, nullable=False),
)

# -- query monitor (migration 0007) ----------------------------------------------------

monitor_suspensions = Table(
    "monitor_suspensions",
    metadata,
    # One row per suspended (principal, model): written when the query monitor alarms,
    # deleted when an administrator lifts it; every worker and restart reads it.
    Column("principal", String(200), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("since", Float, nullable=False),
    Column("until", Float, nullable=False),
    Column("why", String(500), nullable=False),
)

# -- registry (migration 0003) --------------------------------------------------------

registry_objects = Table(
    "registry_objects",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
    # The creator: owner implies manager rights on this object.
    Column("owner", String(200), ForeignKey("principals.name"), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("framework", String(100), nullable=False, default=""),
    Column("tags", Text, nullable=False, default="[]"),  # JSON list of strings
    Column("created_at", Float, nullable=False),
)

registry_versions = Table(
    "registry_versions",
    metadata,
    Column("name", String(128), ForeignKey("registry_objects.name"), primary_key=True),
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("digest", String(64), nullable=False),  # manifest root digest (hex)
    Column("layout", String(8), nullable=False),  # "file" or "dir"
    Column("manifest", Text, nullable=False),  # Manifest.to_json()
    Column("blobs", Text, nullable=False),  # JSON {relative path: blob key}
    Column("size", _BigInt, nullable=False),
    Column("encrypted", Boolean, nullable=False),
    Column("lineage", Text, nullable=False, default="[]"),  # JSON list of refs
    Column("meta", Text, nullable=False, default="{}"),  # JSON {str: str}
    Column("created_by", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("name", "digest", name="uq_registry_versions_name_digest"),
)

registry_aliases = Table(
    "registry_aliases",
    metadata,
    Column("name", String(128), ForeignKey("registry_objects.name"), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("number", Integer, nullable=False),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", Float, nullable=False),
)


# -- console (migration 0008) -----------------------------------------------------------

console_sessions = Table(
    "console_sessions",
    metadata,
    # SHA-256 of the session cookie's secret: the cookie itself is never stored.
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("principal", String(200), nullable=False, index=True),
    # What the person signed in with: "key:<key id>" or "token" (a JWT, until its expiry).
    Column("credential", String(64), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)
