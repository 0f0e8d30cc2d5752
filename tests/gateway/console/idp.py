"""A small OpenID Connect provider for the console's sign-in tests, served over real HTTP.

Authorization-code flow with PKCE: ``/authorize`` signs in whoever ``user`` names
(no consent screen) and sends the browser back with a code; ``/token`` checks the
code's verifier and answers an ID token signed with the :class:`TestIdp` key the
demo policy trusts. ``forge`` makes the next ID token wrong in one way.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.gateway.jwtdemo import ISSUER, TestIdp
from tests.gateway.test_http import _free_port

CLIENT_ID = "atlasguard-console"


class Provider:
    """The provider's state: who signs in next, the codes it gave, what to forge."""

    __test__ = False

    def __init__(self, idp: TestIdp) -> None:
        self.idp = idp
        self.user: tuple[str, list[str]] = ("alice", ["atlas-admins"])
        self.codes: dict[str, dict[str, Any]] = {}
        self.forge = ""  # "nonce", "key", "audience" or ""
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = Starlette(
            routes=[
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Provider:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != CLIENT_ID or q.get("code_challenge_method") != "S256":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(16)
        sub, groups = self.user
        self.codes[code] = {
            "challenge": q["code_challenge"],
            "nonce": q.get("nonce", ""),
            "redirect_uri": q["redirect_uri"],
            "sub": sub,
            "groups": groups,
        }
        back = urlencode({"code": code, "state": q.get("state", "")})
        return RedirectResponse(f"{q['redirect_uri']}?{back}", status_code=302)

    async def token(self, request: Request) -> Response:
        fields = parse_qs((await request.body()).decode("utf-8", "replace"))
        form = {k: v[0] for k, v in fields.items()}
        grant = self.codes.pop(form.get("code", ""), None)
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        verifier = form.get("code_verifier", "").encode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if challenge.decode() != grant["challenge"]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        claims = {
            "sub": grant["sub"],
            "iss": ISSUER,
            "aud": "someone-else" if self.forge == "audience" else CLIENT_ID,
            "exp": int(time.time()) + 300,
            "nonce": "other" if self.forge == "nonce" else grant["nonce"],
            "groups": grant["groups"],
        }
        key = self.idp.key
        if self.forge == "key":
            from cryptography.hazmat.primitives.asymmetric import ec

            key = ec.generate_private_key(ec.SECP256R1())
        token = jwt.encode(claims, key, "ES256", headers={"kid": "k1"})
        return JSONResponse({"id_token": token, "token_type": "Bearer"})

    def policy_text(self, text: str) -> str:
        """The demo policy, signing console admins in through this provider."""
        for name, value in (
            ("console_oidc_client_id", CLIENT_ID),
            ("console_oidc_authorize_url", f"{self.url}/authorize"),
            ("console_oidc_token_url", f"{self.url}/token"),
            ("console_oidc_admin_group", "atlas-admins"),
            ("jwt_groups_claim", "groups"),
        ):
            assert f'{name} = ""' in text, name
            text = text.replace(f'{name} = ""', f'{name} = "{value}"', 1)
        return text
