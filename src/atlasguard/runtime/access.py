"""Access (AML.M0019): who is asking, and may they reach this model or object?

:class:`Access` authenticates a credential — an API key, or a JWT from the
deployment's identity provider — and authorizes the principal for a name
through a grant. Every front end (the gateway's routes, the admin API, the
registry routes, :func:`atlasguard.protect`) goes through it, so a refusal is
built once: ``Denied(reason="unauthenticated")`` or
``Denied(reason="forbidden")``, with the same message whatever exists, so a
refusal never reveals which models a deployment serves.

:meth:`Access.authenticate_cached` and :meth:`Access.authorize_cached`
answer from memory alone (a key checked within the refresh interval, its
grants read within it) or say they cannot; front ends with an event loop use
them to stay off threads in the common case and fall back to
:meth:`Access.authenticate` and :meth:`Access.authorize`, which may hash a key
or read the database.

>>> from atlasguard.db import connect
>>> from atlasguard.identity.store import IdentityStore
>>> store = IdentityStore.create(connect("sqlite://"))
>>> key = store.create_key("alice"); _ = store.grant("alice", "digits")
>>> principal = Access(store).resolve(key.secret, "digits")
>>> principal.name, sorted(principal.roles)
('alice', ['user'])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from atlasguard.identity.store import (
    AuthenticationError,
    Grant,
    IdentityStore,
    PrincipalRecord,
)
from atlasguard.runtime.pipeline import Denied, Principal

if TYPE_CHECKING:
    from atlasguard.identity.tokens import JwtVerifier

__all__ = ["Access", "forbidden", "unauthenticated"]


def unauthenticated(detail: str = "") -> Denied:
    """The one refusal for a missing or bad credential."""
    message = "authentication failed" + (f": {detail}" if detail else "")
    return Denied(message, reason="unauthenticated")


def forbidden() -> Denied:
    """The one refusal for a principal without a grant (whether or not the name exists)."""
    return Denied("forbidden: no grant for this principal and name", reason="forbidden")


class Access:
    """Authenticate credentials and authorize principals against the identity store.

    Grants reach the principal directly, through the groups it is a member of
    in the store, and through the groups a verified token asserts.
    """

    name = "access"
    mitigates = frozenset({"AML.M0019"})

    def __init__(self, store: IdentityStore, *, tokens: JwtVerifier | None = None) -> None:
        self.store = store
        self._tokens = tokens

    # -- authentication -------------------------------------------------------------

    def authenticate(self, credential: str | None) -> PrincipalRecord:
        """The principal behind a key or token; raises ``Denied(unauthenticated)``.

        May hash the key (scrypt, once per key and process), read the database or
        fetch the identity provider's keys: call it off an event loop.
        """
        try:
            if self._tokens is not None:
                from atlasguard.identity.tokens import looks_like_jwt

                if looks_like_jwt(credential):
                    name, groups = self._tokens.identity(credential or "")
                    # A token's groups add grants; they never make its principal an admin.
                    return PrincipalRecord(name=name, is_admin=False, created_at=0.0, groups=groups)
            return self.store.authenticate(credential)
        except AuthenticationError as exc:
            raise unauthenticated(str(exc)) from None

    def admin(self, credential: str | None) -> PrincipalRecord:
        """An authenticated admin principal; ``Denied`` unauthenticated or forbidden.

        Only API keys of principals made admin in the store qualify: tokens and
        groups never make anyone an admin.
        """
        record = self.authenticate(credential)
        if not record.is_admin:
            raise Denied("forbidden: admin only", reason="forbidden")
        return record

    # -- authorization --------------------------------------------------------------

    def grants(self, record: PrincipalRecord, name: str) -> list[Grant]:
        """The grants that let ``record`` reach ``name`` (empty: none)."""
        return self.store.authorize(record, name)

    def authorize(self, record: PrincipalRecord, name: str) -> Principal:
        """The principal with the roles its grants on ``name`` give; ``Denied(forbidden)``."""
        return _principal(record, self.grants(record, name))

    def resolve(self, credential: str | None, name: str) -> Principal:
        """Authenticate, then authorize for ``name``. May block: see :meth:`authenticate`."""
        return self.authorize(self.authenticate(credential), name)

    def authenticate_cached(self, credential: str | None) -> PrincipalRecord | None:
        """:meth:`authenticate` from memory only, or ``None`` when it needs the slow path.

        Never blocks: a key not checked within the store's refresh interval, or a
        token, gives ``None``; the caller then uses :meth:`authenticate` off its
        event loop (which also explains a refusal).
        """
        if self._tokens is not None:
            from atlasguard.identity.tokens import looks_like_jwt

            if looks_like_jwt(credential):
                return None
        return self.store.cached_principal(credential)

    def authorize_cached(self, record: PrincipalRecord, name: str) -> Principal | None:
        """:meth:`authorize` from memory only, or ``None`` when the grants must be read."""
        grants = self.store.cached_grants(record, name)
        return None if grants is None else _principal(record, grants)


def _principal(record: PrincipalRecord, grants: Iterable[Grant]) -> Principal:
    roles = frozenset(g.role for g in grants)
    if not roles:
        raise forbidden()
    return Principal(name=record.name, roles=roles, groups=record.groups)
