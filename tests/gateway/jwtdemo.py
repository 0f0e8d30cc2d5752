"""A demo project that trusts a test identity provider: its JWKS, its policy, its tokens."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ISSUER = "https://idp"
AUDIENCE = "atlasguard"


class TestIdp:
    """An EC P-256 key whose JWKS the demo policy at ``root`` trusts."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, root: Path, *, groups_claim: str = "") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True) | {"kid": "k1"}
        (root / "jwks.json").write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
        config = root / "atlasguard.toml"
        text = config.read_text(encoding="utf-8")
        settings = [("jwt_issuer", ISSUER), ("jwt_audience", AUDIENCE), ("jwks_file", "jwks.json")]
        if groups_claim:
            settings.append(("jwt_groups_claim", groups_claim))
        for name, value in settings:
            assert f'{name} = ""' in text, f"the demo policy has no {name} to set"
            text = text.replace(f'{name} = ""', f'{name} = "{value}"')
        config.write_text(text, encoding="utf-8")
        self.config = config

    def token(self, sub: str, **claims: Any) -> str:
        body = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}
        return jwt.encode(body | claims, self.key, "ES256", headers={"kid": "k1"})
