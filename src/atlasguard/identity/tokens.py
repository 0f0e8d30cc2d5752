"""JWT bearer tokens (RS256/ES256) from an identity provider, mapped to principals.

A token is accepted only when its signature verifies against a key of the
configured JWKS (a file, or a URL fetched by the gateway itself), and its
``iss``, ``aud`` and ``exp`` hold. The principal is the value of
``principal_claim`` (``sub`` by default) with a prefix (``jwt:`` by default),
so that a token cannot pose as a local principal; like every principal it
reaches a model only through a grant.

With ``groups_claim`` set (``groups`` for most identity providers), the token's
groups, a JSON list of strings or one string (one name, never split), become
``group:<name>`` principals whose grants reach the token's principal.
A claim of any other shape refuses the token. A name that cannot be an
atlasguard group (``/ml`` or ``ML Team``, say) is skipped: no grant can name
it, so it could not have granted anything. Groups never make a token an admin.

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
>>> v = JwtVerifier(jwks={"keys": [jwk]}, issuer="https://idp", audience="atlasguard",
...                 groups_claim="groups")
>>> token = jwt.encode({"sub": "alice", "iss": "https://idp", "aud": "atlasguard",
...                     "exp": int(time.time()) + 60, "groups": ["ml", "ops"]},
...                    key, "ES256", headers={"kid": "k1"})
>>> v.identity(token)
('jwt:alice', ('group:ml', 'group:ops'))
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt

from atlasguard.errors import ConfigurationError, UsageError
from atlasguard.identity.store import AuthenticationError, group_name, is_group

__all__ = ["ALGORITHMS", "MAX_GROUPS", "JwtVerifier", "looks_like_jwt", "parse_groups_claim"]

ALGORITHMS = ("RS256", "ES256")
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
MAX_GROUPS = 1000  # more than any sane token carries; bounds the work a token can cause


def _algorithm_for(key: Any) -> str:
    """The one algorithm a key verifies: its type decides, not the token."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return "ES256"
    raise AuthenticationError("token signed by a key of a type atlasguard does not accept")


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
        groups_claim: str = "",
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
        self._groups_claim = groups_claim
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
            except Exception as exc:  # a malformed header, whatever PyJWT makes of it
                raise AuthenticationError(f"malformed token ({exc.__class__.__name__})") from None
        try:
            kid = jwt.get_unverified_header(token).get("kid", "")
        except Exception as exc:  # DecodeError, and whatever else a hostile header causes
            raise AuthenticationError(f"malformed token ({exc.__class__.__name__})") from None
        if not isinstance(kid, str):
            raise AuthenticationError("malformed token: kid is not a string")
        key = self._keys.get(kid) or (
            next(iter(self._keys.values())) if len(self._keys) == 1 and not kid else None
        )
        if key is None:
            raise AuthenticationError("token signed by an unknown key")
        return key.key

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token``; :class:`AuthenticationError` for any failure.

        The algorithm is the one the key's type implies (RS256 for an RSA key,
        ES256 for an EC P-256 key), never the one the token's header names; and
        whatever the verifier raises becomes a refusal, never an error of the server.
        """
        key = self._key(token)
        try:
            return dict(
                jwt.decode(
                    token,
                    key,
                    algorithms=[_algorithm_for(key)],
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
        except Exception as exc:  # a malformed token must not reach the verifier's internals
            raise AuthenticationError(f"invalid token ({exc.__class__.__name__})") from None

    def principal(self, token: str) -> str:
        """The principal a valid token stands for."""
        return self._principal(self.claims(token))

    def identity(self, token: str) -> tuple[str, tuple[str, ...]]:
        """The principal a valid token stands for, and the groups it asserts.

        The groups are ``group:<name>`` principal names, empty unless the
        verifier has a ``groups_claim`` and the token carries it.
        """
        claims = self.claims(token)
        return self._principal(claims), self._groups(claims)

    def _principal(self, claims: Mapping[str, Any]) -> str:
        value = claims.get(self._claim)
        if not isinstance(value, str) or not value:
            raise AuthenticationError(f"token claim {self._claim!r} is not a name")
        name = f"{self._prefix}{value}"
        if is_group(name):  # with an empty prefix a subject could pose as a group
            raise AuthenticationError(f"token claim {self._claim!r} names a group")
        return name

    def _groups(self, claims: Mapping[str, Any]) -> tuple[str, ...]:
        if not self._groups_claim or claims.get(self._groups_claim) is None:
            return ()
        return parse_groups_claim(claims[self._groups_claim], claim=self._groups_claim)


def parse_groups_claim(value: object, *, claim: str = "groups") -> tuple[str, ...]:
    """The ``group:<name>`` names in a token's groups claim (a list, or one name).

    A string is one group's name, never split: identity providers send a single
    group as a plain string, and splitting ``"Sales Ops"`` would grant ``Ops``.
    Raises :class:`AuthenticationError` for a claim of any other shape; skips
    names that cannot be a group's (no grant can name them).

    >>> parse_groups_claim(["ml", "ops", "ml"])
    ('group:ml', 'group:ops')
    >>> parse_groups_claim("Sales Ops")
    ()
    """
    if isinstance(value, str):
        items: list[object] = [value]
    elif isinstance(value, list):
        items = list(value)
    else:
        raise AuthenticationError(f"token claim {claim!r} is not a list of group names")
    if len(items) > MAX_GROUPS:
        raise AuthenticationError(f"token claim {claim!r} lists more than {MAX_GROUPS} groups")
    out: dict[str, None] = {}
    for item in items:
        if not isinstance(item, str):
            raise AuthenticationError(f"token claim {claim!r} is not a list of group names")
        try:
            out[group_name(item)] = None
        except UsageError:
            continue
    return tuple(out)
