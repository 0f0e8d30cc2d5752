from __future__ import annotations

import base64
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from atlasguard.db import connect
from atlasguard.errors import ConfigurationError
from atlasguard.identity.store import AuthenticationError, IdentityStore
from atlasguard.identity.tokens import JwtVerifier, looks_like_jwt
from atlasguard.runtime.access import Access
from atlasguard.runtime.pipeline import Denied

ISS, AUD = "https://idp.example", "atlasguard"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWKS = {
    "keys": [
        ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True) | {"kid": "ec1"},
        RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True) | {"kid": "rsa1"},
    ]
}


def _token(key: Any = EC_KEY, alg: str = "ES256", kid: str = "ec1", **claims: Any) -> str:
    body = {"sub": "alice", "iss": ISS, "aud": AUD, "exp": int(time.time()) + 60} | claims
    return jwt.encode(body, key, alg, headers={"kid": kid})


@pytest.fixture
def verifier() -> JwtVerifier:
    return JwtVerifier(jwks=JWKS, issuer=ISS, audience=AUD)


def test_es256_and_rs256_tokens_map_to_prefixed_principals(verifier: JwtVerifier) -> None:
    assert verifier.principal(_token()) == "jwt:alice"
    assert verifier.principal(_token(RSA_KEY, "RS256", "rsa1", sub="bob")) == "jwt:bob"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (lambda: _token(exp=int(time.time()) - 3600), "expired"),
        (lambda: _token(iss="https://evil"), "invalid token"),
        (lambda: _token(aud="other"), "invalid token"),
        (lambda: _token(ec.generate_private_key(ec.SECP256R1())), "invalid token"),
        (lambda: _token(kid="nope"), "unknown key"),
    ],
)
def test_bad_tokens_are_refused(verifier: JwtVerifier, token: Any, message: str) -> None:
    with pytest.raises(AuthenticationError, match=message):
        verifier.principal(token())


def test_algorithm_confusion_and_none_are_refused(verifier: JwtVerifier) -> None:
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": "rsa1"}).encode())
    claims = {"sub": "mallory", "iss": ISS, "aud": AUD, "exp": int(time.time()) + 60}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode())
    import hashlib
    import hmac

    signing_input = header.rstrip(b"=") + b"." + payload.rstrip(b"=")
    sig = base64.urlsafe_b64encode(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
    forged = (signing_input + b"." + sig.rstrip(b"=")).decode()
    with pytest.raises(AuthenticationError):
        verifier.principal(forged)
    unsigned = jwt.encode(claims, None, "none", headers={"kid": "ec1"})
    with pytest.raises(AuthenticationError):
        verifier.principal(unsigned)


def test_jwks_file_and_configuration_errors(tmp_path: Path) -> None:
    f = tmp_path / "jwks.json"
    f.write_text(json.dumps(JWKS), encoding="utf-8")
    assert JwtVerifier.from_file(f, issuer=ISS, audience=AUD).principal(_token()) == "jwt:alice"
    with pytest.raises(ConfigurationError):
        JwtVerifier(jwks=JWKS, issuer="", audience=AUD)
    with pytest.raises(ConfigurationError):
        JwtVerifier(jwks={"keys": [{"kty": "nope"}]}, issuer=ISS, audience=AUD)


def test_tokens_still_need_a_grant(verifier: JwtVerifier) -> None:
    store = IdentityStore.create(connect("sqlite://"), refresh_seconds=0.0)
    access = Access(store, tokens=verifier)
    with pytest.raises(Denied) as info:
        access.resolve(_token(), "digits")
    assert info.value.reason == "forbidden"
    store.grant("jwt:alice", "digits", "user")
    assert access.resolve(_token(), "digits").name == "jwt:alice"
    assert not looks_like_jwt("agk_0123456789abcdef_" + "a" * 43)


def _forged(header: dict[str, Any], payload: dict[str, Any] | None = None) -> str:
    import base64

    def part(obj: Any) -> str:
        raw = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    body = payload or {"sub": "eve", "iss": ISS, "aud": AUD, "exp": 4_102_444_800}
    return f"{part(header)}.{part(body)}.{part(b'x' * 64)}"


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "RS256", "kid": "ec1"},  # an RSA algorithm on the EC key: TypeError in PyJWT
        {"alg": "ES256", "kid": "rsa1"},
        {"alg": "HS256", "kid": "rsa1"},
        {"alg": "ES384", "kid": "ec1"},
        {"alg": "none", "kid": "ec1"},
        {"alg": "RS256", "kid": ["rsa1"]},
        {"alg": "RS256", "kid": {"a": 1}},
        {"alg": 7, "kid": "ec1"},
        {"kid": "ec1"},
        {"alg": "ES256", "kid": "ec1", "crit": ["x"]},
    ],
)
def test_a_token_whose_algorithm_does_not_fit_its_key_is_refused_not_an_error(
    verifier: JwtVerifier, header: dict[str, Any]
) -> None:
    with pytest.raises(AuthenticationError):
        verifier.principal(_forged(header))


@given(st.dictionaries(st.text(max_size=8), st.none() | st.text(max_size=8) | st.integers()))
def test_any_header_is_a_refusal_or_a_principal(header: dict[str, Any]) -> None:
    v = JwtVerifier(jwks=JWKS, issuer=ISS, audience=AUD)
    with contextlib.suppress(AuthenticationError):  # anything else fails the test
        v.principal(_forged(header))
