"""JWT bearer tokens (RS256/ES256) from an identity provider, mapped to principals.

A token is accepted only when its signature verifies against a key of the
configured JWKS (a file, or a URL fetched by the gateway itself), and its
``iss``, ``aud`` and ``exp`` hold. The principal is the value of
``principal_claim`` (``sub`` by default) with a prefix (``jwt:`` by default),
so that a token cannot pose as a local principal; like every principal it
reaches a model only through a grant.

>>> import time, jwt
>>> from jwt.algorithms import ECAlgorithm
>>> from cryptography.hazmat.primitives.asymmetric import ec
>>> key = ec.generate_private_key(ec.SECP256R1())
>>> jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "k1"}
>>> v = JwtVerifier(jwks={"keys": [jwk]}, issuer="https://idp", audience="atlasguard")
>>> token = jwt.encode({"sub": "alice", "iss": "https://idp", "aud": "atlasguard",
...                     "exp": int(time.time()) + 60}, key, "ES256", headers={"kid": "k1"})
>>> v.principal(token)
'jwt:alice'
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt

from atlasguard.errors import ConfigurationError
from atlasguard.identity.store import AuthenticationError

__all__ = ["ALGORITHMS", "JwtVerifier", "looks_like_jwt"]

ALGORITHMS = ("RS256", "ES256")
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


def looks_like_jwt(credential: str | None) -> bool:
    """True for a compact JWS (three base64url parts), which API keys never are."""
    return bool(credential) and len(credential or "") < 16384 and bool(_JWT.match(credential or ""))


class JwtVerifier:
    """Verify tokens against a JWKS; :meth:`principal` raises :class:`AuthenticationError`."""

    def __init__(
        self,
        *,
        jwks: Mapping[str, Any] | None = None,
        jwks_url: str | None = None,
        issuer: str,
        audience: str,
        principal_claim: str = "sub",
        prefix: str = "jwt:",
        leeway: float = 30.0,
    ) -> None:
        if (jwks is None) == (jwks_url is None):
            raise ConfigurationError("JWT verification needs exactly one of a JWKS or a JWKS URL")
        if not issuer or not audience:
            raise ConfigurationError("JWT verification needs an issuer and an audience")
        self._issuer = issuer
        self._audience = audience
        self._claim = principal_claim
        self._prefix = prefix
        self._leeway = leeway
        self._keys: dict[str, Any] = {}
        self._client: jwt.PyJWKClient | None = None
        if jwks is not None:
            try:
                keyset = jwt.PyJWKSet.from_dict(dict(jwks))
            except (jwt.PyJWKSetError, jwt.InvalidKeyError, ValueError) as exc:
                raise ConfigurationError(f"invalid JWKS: {exc}") from None
            self._keys = {k.key_id or "": k for k in keyset.keys}
        else:
            self._client = jwt.PyJWKClient(str(jwks_url), cache_keys=True, lifespan=300, timeout=5)

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> JwtVerifier:
        try:
            jwks = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read JWKS file {path}: {exc}") from None
        return cls(jwks=jwks, **kwargs)

    def _key(self, token: str) -> Any:
        if self._client is not None:
            try:
                return self._client.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientError as exc:
                raise AuthenticationError(f"no signing key for this token: {exc}") from None
        try:
            kid = jwt.get_unverified_header(token).get("kid", "")
        except jwt.DecodeError:
            raise AuthenticationError("malformed token") from None
        key = self._keys.get(kid) or (
            next(iter(self._keys.values())) if len(self._keys) == 1 and not kid else None
        )
        if key is None:
            raise AuthenticationError("token signed by an unknown key")
        return key.key

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token``."""
        try:
            return dict(
                jwt.decode(
                    token,
                    self._key(token),
                    algorithms=list(ALGORITHMS),
                    issuer=self._issuer,
                    audience=self._audience,
                    leeway=self._leeway,
                    options={"require": ["exp", "iss", "aud", self._claim]},
                )
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError(f"invalid token: {exc}") from None

    def principal(self, token: str) -> str:
        """The principal a valid token stands for."""
        value = self.claims(token).get(self._claim)
        if not isinstance(value, str) or not value:
            raise AuthenticationError(f"token claim {self._claim!r} is not a name")
        return f"{self._prefix}{value}"
