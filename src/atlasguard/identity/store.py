"""Principals, API keys (shown once, stored hashed) and grants (deny by default).

An API key reads ``agk_<key id>_<secret>``, the secret 256 random bits. Only
``HMAC-SHA256(salt, secret)`` is stored; the secret is shown once, at creation.
A slow password hash buys nothing against 256 random bits and would let anyone
with a well-formed bogus key make the server burn ~35 ms of CPU (keys made
before migration 0006 still carry ``scrypt`` and are moved to the HMAC on their
first successful use). Every rejection costs the same one HMAC, whether the
key id exists or not, was used recently or not: timing says nothing about which
keys exist. Every key row is held in memory and re-read at most every
``refresh_seconds`` (revocation takes effect within that time, 5 s by default).

A principal reaches a model only through a grant naming the model (or an
``fnmatch`` pattern of names) and a role; with no matching grant, access is
denied, and the denial never says whether the model exists.

Groups are principals named ``group:<name>``: a grant to a group reaches every
member, whether the membership is kept here (:meth:`IdentityStore.add_member`)
or asserted by a verified token (:attr:`PrincipalRecord.groups`). Groups hold no
keys, are never admins and do not nest. Membership, like grants, is re-read at
most every ``refresh_seconds``.

>>> from atlasguard.db import connect
>>> store = IdentityStore.create(connect("sqlite://"))
>>> _ = store.grant("group:ml", "digits-*", "reader")
>>> store.add_member("ml", "alice")
>>> [(g.principal, g.role) for g in store.grants_of("alice")]
[('group:ml', 'reader')]
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from atlasguard.db.migrate import migrate
from atlasguard.db.schema import api_keys, grants, group_members, principals
from atlasguard.errors import UsageError, VerificationError

__all__ = [
    "GROUP_PREFIX",
    "ROLES",
    "ApiKey",
    "AuthenticationError",
    "Grant",
    "IdentityStore",
    "IssuedKey",
    "PrincipalRecord",
    "SlowKeyError",
    "group_name",
    "is_group",
    "key_id_of",
    "looks_like_key",
]

ROLES = ("user", "reader", "editor", "manager", "admin")
_KEY = re.compile(r"^agk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,199}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
GROUP_PREFIX = "group:"
# A group's own name: a principal name without ':' (the prefix is the only one).
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,193}$")
_group_col = group_members.c["group"]


class AuthenticationError(VerificationError):
    """Missing, malformed, unknown, expired or revoked credentials (HTTP 401)."""


@dataclass(frozen=True, slots=True)
class PrincipalRecord:
    """An authenticated principal.

    ``groups`` are the groups its credential asserts (a token's groups claim),
    as ``group:<name>`` principal names; memberships kept in the store are
    looked up at authorization and need not be listed here.
    """

    name: str
    is_admin: bool
    created_at: float
    groups: tuple[str, ...] = ()


def is_group(name: str) -> bool:
    """True for a group's principal name (``group:<name>``)."""
    return name.startswith(GROUP_PREFIX)


def group_name(name: str) -> str:
    """The principal name of a group: ``ml`` and ``group:ml`` both give ``group:ml``.

    Raises :class:`UsageError` for a name that cannot be a group's.
    """
    bare = name.removeprefix(GROUP_PREFIX)
    if not _GROUP.match(bare):
        raise UsageError(f"invalid group name {name!r}: letters, digits and _.@- only")
    return GROUP_PREFIX + bare


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    principal: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None

    @property
    def active(self) -> bool:
        now = time.time()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: ``secret`` is the only copy of the full key; show it once."""

    key_id: str
    principal: str
    secret: str


@dataclass(frozen=True, slots=True)
class Grant:
    principal: str
    models: str
    role: str
    rate: str = ""
    quota: str = ""
    output: str = ""  # the grant's own output policy ("label"...), stricter than its role's

    def covers(self, model: str) -> bool:
        return fnmatch.fnmatchcase(model, self.models)


def _scrypt(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)


def _hmac(secret: str, salt: bytes) -> bytes:
    return hmac.new(salt, secret.encode(), hashlib.sha256).digest()


HMAC_SCHEME = "hmac-sha256"
SCRYPT_SCHEME = "scrypt"
# What an unknown key id is compared against: the same work as a known one, never a match.
_DUMMY_SALT = secrets.token_bytes(16)
_DUMMY_HASH = secrets.token_bytes(32)


@dataclass(slots=True)
class _KeyRow:
    principal: PrincipalRecord | None
    salt: bytes
    hash: bytes
    scheme: str
    active: bool


class SlowKeyError(AuthenticationError):
    """The key can only be checked with its old slow hash (scrypt): not from memory."""


def looks_like_key(credential: str | None) -> bool:
    """True for a well-formed API key (``agk_<key id>_<secret>``), valid or not."""
    return bool(credential) and _KEY.match(credential or "") is not None


def key_id_of(credential: str | None) -> str | None:
    """The key id of a well-formed API key (``agk_<key id>_<secret>``), else ``None``."""
    match = _KEY.match(credential or "")
    return match[1] if match is not None else None


def _parse_key(credential: str | None) -> tuple[str, str]:
    if not credential:
        raise AuthenticationError("no credentials")
    match = _KEY.match(credential)
    if match is None:
        raise AuthenticationError("malformed API key")
    key_id, secret = match.groups()
    return key_id, secret


class IdentityStore:
    """Principals, keys and grants in the deployment's metadata database."""

    def __init__(self, engine: Engine, *, refresh_seconds: float = 5.0) -> None:
        self._engine = engine
        self._refresh = refresh_seconds
        self._keys: dict[str, _KeyRow] = {}
        self._keys_at = -math.inf  # when every key row was last read (monotonic)
        # Keyed by the principal and the groups its token asserts, so one request's
        # token groups never reach another's; any local change clears it all.
        self._grants: dict[tuple[str, tuple[str, ...]], tuple[float, list[Grant]]] = {}
        self._lock = threading.Lock()

    @classmethod
    def create(cls, engine: Engine, *, refresh_seconds: float = 5.0) -> IdentityStore:
        migrate(engine)
        return cls(engine, refresh_seconds=refresh_seconds)

    # -- principals ------------------------------------------------------------------

    def ensure_principal(self, name: str, *, admin: bool = False) -> PrincipalRecord:
        """Create the principal if it does not exist (``admin`` only raises, never lowers)."""
        if not _NAME.match(name):
            raise UsageError(f"invalid principal name {name!r}: letters, digits and _.@:- only")
        if is_group(name):
            group_name(name)
            if admin:
                raise UsageError(f"{name} is a group: groups are never admins")
        with self._engine.begin() as conn:
            row = conn.execute(select(principals).where(principals.c.name == name)).first()
            if row is None:
                conn.execute(
                    principals.insert().values(name=name, created_at=time.time(), is_admin=admin)
                )
            elif admin and not row.is_admin:
                conn.execute(
                    update(principals).where(principals.c.name == name).values(is_admin=True)
                )
            row = conn.execute(select(principals).where(principals.c.name == name)).one()
        return PrincipalRecord(
            name=row.name, is_admin=bool(row.is_admin), created_at=row.created_at
        )

    def principal(self, name: str) -> PrincipalRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(principals).where(principals.c.name == name)).first()
        if row is None:
            return None
        return PrincipalRecord(
            name=row.name, is_admin=bool(row.is_admin), created_at=row.created_at
        )

    # -- keys ------------------------------------------------------------------------

    def create_key(
        self, principal: str, *, admin: bool = False, expires_at: float | None = None
    ) -> IssuedKey:
        """Issue a key for ``principal`` (created if needed). The secret is returned once."""
        if is_group(principal):
            raise UsageError(
                f"{principal} is a group: groups hold no keys; "
                "issue keys to its members (atlasguard groups add)"
            )
        self.ensure_principal(principal, admin=admin)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        with self._engine.begin() as conn:
            conn.execute(
                api_keys.insert().values(
                    key_id=key_id,
                    principal=principal,
                    salt=salt,
                    hash=_hmac(secret, salt),
                    scheme=HMAC_SCHEME,
                    created_at=time.time(),
                    expires_at=expires_at,
                    revoked_at=None,
                )
            )
        return IssuedKey(key_id=key_id, principal=principal, secret=f"agk_{key_id}_{secret}")

    def list_keys(self, principal: str | None = None) -> list[ApiKey]:
        query = select(api_keys).order_by(api_keys.c.created_at)
        if principal is not None:
            query = query.where(api_keys.c.principal == principal)
        with self._engine.connect() as conn:
            return [
                ApiKey(
                    key_id=r.key_id,
                    principal=r.principal,
                    created_at=r.created_at,
                    expires_at=r.expires_at,
                    revoked_at=r.revoked_at,
                )
                for r in conn.execute(query)
            ]

    def revoke_key(self, key_id: str) -> None:
        with self._engine.begin() as conn:
            done = conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            ).rowcount
        if not done:
            raise UsageError(f"no active key with id {key_id!r}")
        with self._lock:
            self._keys_at = -math.inf  # read again at the next check

    def authenticate(self, credential: str | None, *, slow: bool = True) -> PrincipalRecord:
        """The principal behind an API key; raises :class:`AuthenticationError` otherwise.

        A key that matches the rows in memory (re-read every ``refresh_seconds``)
        passes at once. Any other — unknown, wrong, just created, or made before
        migration 0006 — has its one row read again and checked; every rejection
        does exactly that, so timing says nothing about which key ids exist. With
        ``slow`` false (a client over its failure limit) that second look is
        refused with :class:`SlowKeyError` instead.
        """
        key_id, secret = _parse_key(credential)
        if time.monotonic() - self._keys_at > self._refresh:
            self._load_keys()
        try:
            return self._check(key_id, secret)
        except AuthenticationError:
            if not slow:
                raise SlowKeyError("this key needs a second look: try again later") from None
        self._load_key(key_id)
        try:
            return self._check(key_id, secret)
        except SlowKeyError:
            return self._check_slow(key_id, secret)

    def cached_principal(self, credential: str | None) -> PrincipalRecord | None:
        """The principal behind ``credential`` if memory alone can say so, else ``None``.

        ``None`` whenever :meth:`authenticate` would read the database or run the
        old slow hash; also for a bad key (:meth:`authenticate` then decides, and
        explains). Never blocks.
        """
        if time.monotonic() - self._keys_at > self._refresh:
            return None
        try:
            key_id, secret = _parse_key(credential)
            return self._check(key_id, secret)
        except AuthenticationError:
            return None

    def _check(self, key_id: str, secret: str) -> PrincipalRecord:
        """Check against the rows in memory: one HMAC whatever the key id."""
        row = self._keys.get(key_id)
        if row is not None and row.scheme == SCRYPT_SCHEME:
            raise SlowKeyError("invalid API key")
        salt, want = (row.salt, row.hash) if row is not None else (_DUMMY_SALT, _DUMMY_HASH)
        matches = hmac.compare_digest(_hmac(secret, salt), want)
        if row is None or not matches:
            raise AuthenticationError("invalid API key")
        if not row.active or row.principal is None:
            raise AuthenticationError("API key revoked or expired")
        return row.principal

    def _check_slow(self, key_id: str, secret: str) -> PrincipalRecord:
        """A key from before migration 0006: scrypt once, then move it to the HMAC."""
        row = self._keys[key_id]
        if not hmac.compare_digest(_scrypt(secret, row.salt), row.hash):
            raise AuthenticationError("invalid API key")
        fast = _hmac(secret, row.salt)
        with self._engine.begin() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.scheme == SCRYPT_SCHEME)
                .values(hash=fast, scheme=HMAC_SCHEME)
            )
        with self._lock:
            self._keys[key_id] = _KeyRow(row.principal, row.salt, fast, HMAC_SCHEME, row.active)
        if not row.active or row.principal is None:
            raise AuthenticationError("API key revoked or expired")
        return row.principal

    def _load_keys(self, key_id: str | None = None) -> None:
        """Read every key row and its principal (one query), or only ``key_id``'s."""
        now = time.time()
        query = select(
            api_keys.c.key_id,
            api_keys.c.salt,
            api_keys.c.hash,
            api_keys.c.scheme,
            api_keys.c.expires_at,
            api_keys.c.revoked_at,
            principals.c.name,
            principals.c.is_admin,
            principals.c.created_at,
        ).select_from(api_keys.outerjoin(principals, api_keys.c.principal == principals.c.name))
        if key_id is not None:
            query = query.where(api_keys.c.key_id == key_id)
        with self._engine.connect() as conn:
            rows = list(conn.execute(query))
        keys = {
            r.key_id: _KeyRow(
                principal=PrincipalRecord(r.name, bool(r.is_admin), r.created_at)
                if r.name is not None
                else None,
                salt=bytes(r.salt),
                hash=bytes(r.hash),
                scheme=r.scheme,
                active=r.revoked_at is None and (r.expires_at is None or r.expires_at > now),
            )
            for r in rows
        }
        with self._lock:
            if key_id is None:
                self._keys, self._keys_at = keys, time.monotonic()
            elif key_id in keys:
                self._keys[key_id] = keys[key_id]
            else:
                self._keys.pop(key_id, None)

    def _load_key(self, key_id: str) -> None:
        self._load_keys(key_id)

    # -- grants ----------------------------------------------------------------------

    def grant(
        self, principal: str, models: str, role: str = "user", *, rate: str = "", quota: str = ""
    ) -> Grant:
        if role not in ROLES:
            raise UsageError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
        if not models:
            raise UsageError("a grant needs a model name or pattern")
        self.ensure_principal(principal)
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    grants.insert().values(
                        principal=principal,
                        models=models,
                        role=role,
                        rate=rate,
                        quota=quota,
                        created_at=time.time(),
                    )
                )
        except DBIntegrityError:
            raise UsageError(f"{principal} already holds {role} on {models}") from None
        with self._lock:
            self._grants.clear()  # a group's grant reaches its members' entries too
        return Grant(principal=principal, models=models, role=role, rate=rate, quota=quota)

    def revoke_grant(self, principal: str, models: str, role: str | None = None) -> int:
        query = delete(grants).where(grants.c.principal == principal, grants.c.models == models)
        if role is not None:
            query = query.where(grants.c.role == role)
        with self._engine.begin() as conn:
            removed = int(conn.execute(query).rowcount)
        with self._lock:
            self._grants.clear()
        return removed

    def restrict(
        self,
        principal: str,
        *,
        rate: str | None = None,
        quota: str | None = None,
        output: str | None = None,
    ) -> int:
        """Set the rate, daily quota or output policy of every grant ``principal`` holds
        itself (not its groups'); ``None`` leaves a field as it is. Returns how many."""
        values = {
            k: v for k, v in (("rate", rate), ("quota", quota), ("output", output)) if v is not None
        }
        if not values:
            return 0
        with self._engine.begin() as conn:
            changed = int(
                conn.execute(
                    update(grants).where(grants.c.principal == principal).values(**values)
                ).rowcount
            )
        with self._lock:
            self._grants.clear()
        return changed

    def _own_grants(self, names: Sequence[str]) -> list[Grant]:
        """The grants held by exactly these principal names, in that order, then by age."""
        if not names:
            return []
        with self._engine.connect() as conn:
            rows = list(
                conn.execute(
                    select(grants).where(grants.c.principal.in_(names)).order_by(grants.c.id)
                )
            )
        rank = {name: i for i, name in enumerate(names)}
        rows.sort(key=lambda r: rank[r.principal])  # stable: by id within a principal
        return [
            Grant(
                principal=r.principal,
                models=r.models,
                role=r.role,
                rate=r.rate,
                quota=r.quota,
                output=r.output,
            )
            for r in rows
        ]

    def list_grants(self) -> list[Grant]:
        """Every grant of every principal, by principal, then by age."""
        with self._engine.connect() as conn:
            names = sorted({r[0] for r in conn.execute(select(grants.c.principal).distinct())})
        return self._own_grants(names)

    def grants_of(self, principal: str, groups: Iterable[str] = ()) -> list[Grant]:
        """Every grant ``principal`` holds, read fresh: its own, then its groups'.

        The groups are those it is a member of in this store, and ``groups``
        (``group:<name>`` names a verified token asserted).
        """
        names = _unique([principal, *self.groups_of(principal), *_token_groups(groups)])
        return self._own_grants(names)

    def authorize(self, principal: PrincipalRecord, model: str) -> list[Grant]:
        """The grants that let ``principal`` reach ``model``; empty means deny.

        Counts the principal's own grants, those of the groups it is a member of
        and those of the groups its credential asserts (``principal.groups``).
        Grants and memberships are re-read at most every ``refresh_seconds``.
        """
        key = (principal.name, principal.groups)
        now = time.monotonic()
        with self._lock:
            cached = self._grants.get(key)
        if cached is None or now - cached[0] > self._refresh:
            cached = (now, self.grants_of(principal.name, principal.groups))
            with self._lock:
                self._grants[key] = cached
        return [g for g in cached[1] if g.covers(model)]

    def cached_grants(self, principal: PrincipalRecord, model: str) -> list[Grant] | None:
        """:meth:`authorize` from memory, or ``None`` when the grants must be read again."""
        with self._lock:
            cached = self._grants.get((principal.name, principal.groups))
        if cached is None or time.monotonic() - cached[0] > self._refresh:
            return None
        return [g for g in cached[1] if g.covers(model)]

    # -- groups ----------------------------------------------------------------------

    def add_member(self, group: str, member: str) -> None:
        """Make ``member`` (created if needed) a member of ``group`` (created if needed).

        ``group`` is ``ml`` or ``group:ml``. Groups do not nest: a group cannot be a member.
        """
        group = group_name(group)
        if is_group(member):
            raise UsageError(
                f"groups do not nest: {member} cannot be a member of {group}; "
                "add its members instead"
            )
        self.ensure_principal(member)
        self.ensure_principal(group)
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    group_members.insert().values(
                        {"group": group, "member": member, "created_at": time.time()}
                    )
                )
        except DBIntegrityError:
            raise UsageError(f"{member} is already a member of {group}") from None
        with self._lock:
            self._grants.clear()

    def remove_member(self, group: str, member: str) -> None:
        """End ``member``'s membership of ``group``; its grants stop reaching the member."""
        group = group_name(group)
        with self._engine.begin() as conn:
            removed = conn.execute(
                delete(group_members).where(_group_col == group, group_members.c.member == member)
            ).rowcount
        if not removed:
            raise UsageError(f"{member} is not a member of {group}")
        with self._lock:
            self._grants.clear()

    def members(self, group: str) -> list[str]:
        """The members of ``group`` kept in this store, by name."""
        group = group_name(group)
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(group_members.c.member)
                .where(_group_col == group)
                .order_by(group_members.c.member)
            )
            return [r.member for r in rows]

    def groups_of(self, member: str) -> list[str]:
        """The groups ``member`` belongs to in this store (not those a token asserts)."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_group_col).where(group_members.c.member == member).order_by(_group_col)
            )
            return [str(r[0]) for r in rows]

    def list_groups(self) -> dict[str, list[str]]:
        """Every group (with members, or holding a grant) and its members."""
        with self._engine.connect() as conn:
            names = [
                r.name
                for r in conn.execute(
                    select(principals.c.name)
                    .where(principals.c.name.startswith(GROUP_PREFIX, autoescape=True))
                    .order_by(principals.c.name)
                )
            ]
            rows = list(
                conn.execute(
                    select(_group_col, group_members.c.member).order_by(
                        _group_col, group_members.c.member
                    )
                )
            )
        out: dict[str, list[str]] = {name: [] for name in names}
        for group, member in rows:
            out.setdefault(str(group), []).append(str(member))
        return out


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _token_groups(groups: Iterable[str]) -> list[str]:
    """Groups a credential asserts; anything but a group's name is refused, never used."""
    out = []
    for name in groups:
        if not is_group(name):
            raise UsageError(f"{name!r} is not a group (expected {GROUP_PREFIX}<name>)")
        out.append(group_name(name))
    return out
