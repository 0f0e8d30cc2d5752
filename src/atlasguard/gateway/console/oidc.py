"""Signing in to the console through the deployment's OpenID Connect issuer.

The authorization-code flow with PKCE, for a public client: ``/console/oidc/start``
sends the browser to the issuer with a fresh ``state``, ``nonce`` and code
challenge (kept, for ten minutes, in an HttpOnly cookie limited to
``/console/oidc``); ``/console/oidc/callback`` checks the ``state``, exchanges
the code at the token endpoint, and verifies the ID token — signature against
``[controls.access]``'s JWKS, issuer, audience (the client id), expiry and
``nonce`` — before opening a console session like a key's.

Tokens never make a principal an admin of the API (see
:mod:`atlasguard.identity.tokens`); for the console, a token's principal is an
admin when the store says so (``jwt:<sub>`` marked admin) or when its groups
claim names ``console_oidc_admin_group``. A group-made admin's session lasts
its time unless signed out: the group cannot be asked again without the
issuer. The issuer's endpoints are the policy's, never a request's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from atlasguard.gateway.calls import Call, audited
from atlasguard.gateway.console.base import (
    Viewer,
    as_page,
    console_call,
    render,
    router,
    secure,
    sessions_of,
    set_session,
    settings_of,
)
from atlasguard.gateway.http import credential_of
from atlasguard.gateway.service import Gateway
from atlasguard.identity.store import group_name
from atlasguard.runtime.pipeline import Denied
from atlasguard.runtime.settings import AccessSettings, ServingSettings

__all__ = ["FLOW_COOKIE", "enabled"]

FLOW_COOKIE = "atlasguard_console_oidc"
FLOW_SECONDS = 600
TOKEN_TIMEOUT = 10.0


def enabled(settings: ServingSettings) -> bool:
    """True when the policy names a client and the issuer's two endpoints."""
    return bool(
        settings.console_oidc_client_id
        and settings.console_oidc_authorize_url
        and settings.console_oidc_token_url
    )


def _redirect_uri(request: Request, settings: ServingSettings) -> str:
    return settings.console_oidc_redirect_url or str(request.url_for("oidc_callback"))


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@router.get("/oidc/start")
async def oidc_start(request: Request) -> Response:
    if credential_of(request) is not None:  # a key in a header: admins go on, others 403

        async def signed(call: Call, viewer: Viewer) -> Response:
            return RedirectResponse("/console/coverage", status_code=303)

        return await console_call(request, "console.login", signed)
    settings = settings_of(request.app.state.gateway)
    if not enabled(settings):
        return secure(RedirectResponse("/console/login", status_code=303))
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.console_oidc_client_id,
            "redirect_uri": _redirect_uri(request, settings),
            "scope": "openid profile",
            "state": state,
            "nonce": nonce,
            "code_challenge": _challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    response = RedirectResponse(f"{settings.console_oidc_authorize_url}?{query}", status_code=303)
    response.set_cookie(
        FLOW_COOKIE,
        f"{state}.{nonce}.{verifier}",
        max_age=FLOW_SECONDS,
        path="/console/oidc",
        httponly=True,
        # Lax, not Strict: the issuer sends the browser back with a cross-site redirect.
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return secure(response)


async def _exchange(settings: ServingSettings, request: Request, code: str, verifier: str) -> str:
    """The ID token the token endpoint gives for ``code``."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": _redirect_uri(request, settings),
        "client_id": settings.console_oidc_client_id,
        "code_verifier": verifier,
    }
    try:
        async with httpx.AsyncClient(timeout=TOKEN_TIMEOUT, follow_redirects=False) as client:
            answer = await client.post(settings.console_oidc_token_url, data=form)
    except httpx.HTTPError:
        raise Denied(
            "the identity provider's token endpoint did not answer; try again, or sign in "
            "with an admin key",
            reason="upstream",
        ) from None
    doc: Any = None
    if answer.status_code == 200 and len(answer.content) <= 1 << 16:
        try:
            doc = answer.json()
        except ValueError:
            doc = None
    token = doc.get("id_token") if isinstance(doc, dict) else None
    if not isinstance(token, str):
        raise Denied(
            f"the identity provider refused the sign-in ({answer.status_code}); sign in again",
            reason="unauthenticated",
        )
    return token


def _admin_kind(
    gateway: Gateway, settings: ServingSettings, name: str, groups: tuple[str, ...]
) -> str:
    """``oidc:admin`` or ``oidc:group`` for a console admin; ``Denied`` for anyone else."""
    record = gateway.deployment.identity.principal(name)
    if record is not None and record.is_admin:
        return "oidc:admin"
    group = settings.console_oidc_admin_group
    if group and group_name(group) in groups:
        return "oidc:group"
    raise Denied(
        f"{name} is not an admin of this console: ask for the identity provider's "
        f"{group or 'admin'} group, or sign in with an admin key",
        reason="forbidden",
    )


@router.get("/oidc/callback", name="oidc_callback")
async def oidc_callback(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    settings = settings_of(gateway)

    async def work(call: Call) -> Response:
        from atlasguard.identity.store import AuthenticationError
        from atlasguard.identity.tokens import JwtVerifier

        if credential_of(request) is not None:  # a key in a header: only an admin goes on
            await call.admin()
        if not enabled(settings):
            raise Denied("sign-in through an identity provider is off", reason="not-found")
        flow = request.cookies.get(FLOW_COOKIE, "")
        state, nonce, verifier = ([*flow.split(".", 2), "", ""])[:3]
        sent = request.query_params.get("state", "")
        if not state or not hmac.compare_digest(sent.encode(), state.encode()):
            raise Denied(
                "the sign-in is stale or was not started here: start again", reason="forbidden"
            )
        if "error" in request.query_params:
            raise Denied("the identity provider refused the sign-in", reason="unauthenticated")
        code = request.query_params.get("code", "")
        if not code or len(code) > 2048:
            raise Denied("the identity provider sent no code", reason="malformed")
        id_token = await _exchange(settings, request, code, verifier)
        access = gateway.policy.settings("access")
        if not isinstance(access, AccessSettings) or not access.jwt_issuer:
            raise Denied("[controls.access] names no jwt_issuer to verify with", reason="refused")
        common: dict[str, Any] = {
            "issuer": access.jwt_issuer,
            "audience": settings.console_oidc_client_id,  # an ID token is for the client
            "principal_claim": access.jwt_principal_claim,
            "groups_claim": access.jwt_groups_claim,
        }
        if access.jwks_file:
            checker = JwtVerifier.from_file(gateway.policy.base_dir / access.jwks_file, **common)
        else:
            checker = JwtVerifier(jwks_url=access.jwks_url or None, **common)

        def verified() -> tuple[dict[str, Any], str, tuple[str, ...]]:
            claims = checker.claims(id_token)
            name, groups = checker.identity(id_token)
            return claims, name, groups

        try:
            claims, name, groups = await run_in_threadpool(verified)
        except AuthenticationError as exc:
            raise Denied(f"the ID token is not valid: {exc}", reason="unauthenticated") from None
        if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(
            claims["nonce"].encode(), nonce.encode()
        ):
            raise Denied("the ID token was not issued for this sign-in", reason="unauthenticated")
        call.outcome.principal = name
        kind = await run_in_threadpool(_admin_kind, gateway, settings, name, groups)
        call.outcome.details["via"] = kind
        opened = await run_in_threadpool(
            sessions_of(request).open, name, kind, seconds=settings.console_session_minutes * 60
        )
        # A page, not a redirect: a Strict cookie set at the end of a cross-site redirect
        # chain would not go with the next request; a same-site navigation carries it.
        page = render(request, "signed_in.html", who=name)
        set_session(request, page, opened.token, settings.console_session_minutes)
        page.delete_cookie(FLOW_COOKIE, path="/console/oidc", httponly=True, samesite="lax")
        return page

    # a refused sign-in says why (the sign-in page would hide it)
    return as_page(request, await audited(request, "console.login", None, work), to_sign_in=False)
