"""The access guard (AML.M0019): known principals only, and only through a grant.

401 for missing or bad credentials, 403 for a principal without a grant for
the model. Both messages are the same whatever models exist, so a refusal
never reveals which models a deployment serves.

>>> import numpy as np
>>> from atlasguard.db import connect
>>> from atlasguard.identity.store import IdentityStore
>>> from atlasguard.runtime.pipeline import Request
>>> store = IdentityStore.create(connect("sqlite://"))
>>> key = store.create_key("alice"); _ = store.grant("alice", "digits")
>>> req = AccessGuard(store).before(Request(model="digits", inputs={}, credential=key.secret))
>>> req.principal.name, sorted(req.principal.roles)
('alice', ['user'])
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from atlasguard.identity.store import AuthenticationError, IdentityStore, PrincipalRecord
from atlasguard.runtime.pipeline import Denied, Principal, Request, Response

if TYPE_CHECKING:
    from atlasguard.identity.tokens import JwtVerifier

__all__ = ["AccessGuard"]


class AccessGuard:
    """Authenticate the request's credential, then require a grant for its model.

    The credential is an API key, or, when a :class:`JwtVerifier` is given, a
    JWT bearer token from the deployment's identity provider. Grants reach the
    principal directly, through the groups it is a member of in the store, and
    through the groups its token asserts.
    """

    name = "access"
    mitigates = frozenset({"AML.M0019"})

    def __init__(self, store: IdentityStore, *, tokens: JwtVerifier | None = None) -> None:
        self._store = store
        self._tokens = tokens

    def authenticate(self, credential: str | None) -> PrincipalRecord:
        """The principal behind a key or token; raises :class:`AuthenticationError`."""
        if self._tokens is not None:
            from atlasguard.identity.tokens import looks_like_jwt

            if looks_like_jwt(credential):
                name, groups = self._tokens.identity(credential or "")
                # A token's groups add grants; they never make its principal an admin.
                return PrincipalRecord(name=name, is_admin=False, created_at=0.0, groups=groups)
        return self._store.authenticate(credential)

    def before(self, request: Request) -> Request:
        try:
            record = self.authenticate(request.credential)
        except AuthenticationError as exc:
            raise Denied(
                f"authentication failed: {exc}",
                status=401,
                reason="unauthenticated",
                headers={"WWW-Authenticate": 'Bearer realm="atlasguard"'},
            ) from None
        grants = self._store.authorize(record, request.model)
        if not grants:
            raise Denied(
                "forbidden: no grant for this principal and model", status=403, reason="forbidden"
            )
        principal = Principal(
            name=record.name, roles=frozenset(g.role for g in grants), groups=record.groups
        )
        return replace(request, principal=principal)

    def after(self, request: Request, response: Response) -> Response:
        return response
