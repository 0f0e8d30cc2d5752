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

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from atlasguard.identity.store import (
    AuthenticationError,
    Grant,
    IdentityStore,
    PrincipalRecord,
    SlowKeyError,
    is_group,
    looks_like_key,
)
from atlasguard.identity.tokens import looks_like_jwt
from atlasguard.runtime.pipeline import Denied, Principal

if TYPE_CHECKING:
    from atlasguard.identity.tokens import JwtVerifier

__all__ = ["Access", "FailureLimiter", "forbidden", "throttled", "unauthenticated"]


def unauthenticated(detail: str = "") -> Denied:
    """The one refusal for a missing or bad credential."""
    message = "authentication failed" + (f": {detail}" if detail else "")
    return Denied(message, reason="unauthenticated")


def throttled(retry_after: float) -> Denied:
    """The refusal for a client (or everyone) over the limit of failed authentications."""
    return Denied(
        "too many failed authentications; try again later",
        reason="throttled",
        retry_after=retry_after,
    )


class FailureLimiter:
    """Failed authentications allowed per client and in all: a token bucket each.

    A client over its limit (or everyone, over the global one) gets
    ``Denied(throttled)`` instead of having its credential checked the slow way
    (a token's signature, an old key's scrypt): failures cannot be turned into
    CPU. Keys checked from memory still pass, so a valid client behind the same
    address as an attacker keeps working. The per-client table keeps the
    ``clients`` most recent addresses.

    >>> limiter = FailureLimiter(per_client=2, per_client_burst=2, clock=lambda: 0.0)
    >>> [limiter.failed("10.0.0.1") for _ in range(3)]
    [0.0, 0.0, 0.5]
    """

    def __init__(
        self,
        *,
        per_client: float = 5.0,
        per_client_burst: int = 20,
        overall: float = 200.0,
        overall_burst: int = 400,
        clients: int = 65_536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client_rate, self._client_burst = per_client, per_client_burst
        self._rate, self._burst = overall, overall_burst
        self._max_clients = clients
        self._clock = clock
        self._clients: OrderedDict[str, float] = OrderedDict()  # client -> theoretical arrival
        self._overall = -float("inf")
        self._lock = threading.Lock()

    def wait(self, client: str | None) -> float:
        """Seconds until ``client`` may fail again (0: it may now)."""
        now = self._clock()
        with self._lock:
            tat = self._clients.get(client or "-", -float("inf"))
            own = tat - (self._client_burst - 1) / self._client_rate - now
            overall = self._overall - (self._burst - 1) / self._rate - now
        return max(0.0, own, overall)

    def failed(self, client: str | None) -> float:
        """Count one failure of ``client``; return how long it must now wait (0: none)."""
        key = client or "-"
        now = self._clock()
        with self._lock:
            tat = max(self._clients.pop(key, now), now) + 1 / self._client_rate
            self._clients[key] = tat
            if len(self._clients) > self._max_clients:
                self._clients.popitem(last=False)
            self._overall = max(self._overall, now) + 1 / self._rate
            own = tat - self._client_burst / self._client_rate - now
            overall = self._overall - self._burst / self._rate - now
        return max(0.0, own, overall)


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

    def __init__(
        self,
        store: IdentityStore,
        *,
        tokens: JwtVerifier | None = None,
        limiter: FailureLimiter | None = None,
    ) -> None:
        self.store = store
        self._tokens = tokens
        self.limiter = limiter or FailureLimiter()

    # -- authentication -------------------------------------------------------------

    def authenticate(self, credential: str | None, *, client: str | None = None) -> PrincipalRecord:
        """The principal behind a key or token; ``Denied`` unauthenticated or throttled.

        ``client`` (an address) is what failures are counted against. May read
        the database or fetch the identity provider's keys: call it off an event
        loop. A client over its failure limit has no token or old key checked.
        """
        try:
            if self._tokens is not None and looks_like_jwt(credential):
                wait = self.limiter.wait(client)
                if wait:
                    raise throttled(wait)
                name, groups = self._tokens.identity(credential or "")
                # A token's groups add grants; they never make its principal an admin.
                return PrincipalRecord(name=name, is_admin=False, created_at=0.0, groups=groups)
            try:
                return self.store.authenticate(credential, slow=False)  # one HMAC
            except SlowKeyError:
                wait = self.limiter.wait(client)
                if wait:
                    raise throttled(wait) from None
                return self.store.authenticate(credential)
        except AuthenticationError as exc:
            if not looks_like_key(credential) and not (
                self._tokens is not None and looks_like_jwt(credential)
            ):
                raise unauthenticated(str(exc)) from None  # refused without any work
            after = self.limiter.failed(client)
            if after:
                raise throttled(after) from None
            raise unauthenticated(str(exc)) from None

    def admin(self, credential: str | None, *, client: str | None = None) -> PrincipalRecord:
        """An authenticated admin principal; ``Denied`` unauthenticated or forbidden.

        Only API keys of principals made admin in the store qualify: tokens and
        groups never make anyone an admin.
        """
        record = self.authenticate(credential, client=client)
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

    def resolve(self, credential: str | None, name: str, *, client: str | None = None) -> Principal:
        """Authenticate, then authorize for ``name``. May block: see :meth:`authenticate`."""
        return self.authorize(self.authenticate(credential, client=client), name)

    def authenticate_cached(self, credential: str | None) -> PrincipalRecord | None:
        """:meth:`authenticate` from memory only, or ``None`` when it needs the slow path.

        Never blocks: a key not checked within the store's refresh interval, or a
        token, gives ``None``; the caller then uses :meth:`authenticate` off its
        event loop (which also explains a refusal).
        """
        if self._tokens is not None and looks_like_jwt(credential):
            return None
        return self.store.cached_principal(credential)

    def authorize_cached(self, record: PrincipalRecord, name: str) -> Principal | None:
        """:meth:`authorize` from memory only, or ``None`` when the grants must be read."""
        grants = self.store.cached_grants(record, name)
        return None if grants is None else _principal(record, grants)


def _principal(record: PrincipalRecord, grants: Iterable[Grant]) -> Principal:
    held = list(grants)
    if not held:
        raise forbidden()
    # A grant's own rate or quota (keys create --rate --quota) goes with the principal.
    limits = next(((g.rate, g.quota) for g in held if g.rate or g.quota), None)
    # A grant's own output policy (an admin's restriction) wins over its role's.
    output = next((g.output for g in held if g.output), "")
    # the groups it reaches the model through count too (the query monitor watches a
    # group's members together): a token's groups first, then its grants' groups
    through = tuple(sorted({g.principal for g in held if is_group(g.principal)}))
    return Principal(
        name=record.name,
        roles=frozenset(g.role for g in held),
        groups=record.groups + tuple(g for g in through if g not in record.groups),
        grant_limits=limits,
        output=output,
    )
