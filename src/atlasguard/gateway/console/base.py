"""What every console route shares: who is asking, sessions, forms, answers.

:func:`console_call` runs a route's work for an admin principal (by session
cookie or by key in a header) inside :func:`~atlasguard.gateway.calls.audited`
and turns refusals into pages; :func:`checked_form` reads an action's form
after checking its origin and CSRF token; :func:`secure` puts the
content-security policy and the other headers on every answer.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.templating import Jinja2Templates

from atlasguard.gateway.calls import Call, audited
from atlasguard.gateway.console.sessions import Session, SessionStore
from atlasguard.gateway.http import credential_of, read_body
from atlasguard.gateway.service import Gateway
from atlasguard.identity.store import PrincipalRecord
from atlasguard.runtime.pipeline import Denied
from atlasguard.runtime.settings import ServingSettings

__all__ = [
    "COOKIE",
    "CSP",
    "Viewer",
    "admin_of",
    "checked_form",
    "console_call",
    "render_page",
    "router",
    "secure",
]

COOKIE = "atlasguard_console"
LOGIN_COOKIE = "atlasguard_console_login"
MAX_FORM_BYTES = 16 * 1024
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes form posts send Origin: null
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
HERE = Path(__file__).parent
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}

PAGES = ("coverage", "traffic", "alerts", "audit", "registry", "efficacy")

templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/console", include_in_schema=False)


def settings_of(gateway: Gateway) -> ServingSettings:
    settings = gateway.policy.settings("serving")
    return settings if isinstance(settings, ServingSettings) else ServingSettings()


def sessions_of(request: Request) -> SessionStore:
    """The app's session store (``create_app`` makes it over the deployment's database)."""
    store: SessionStore = request.app.state.console_sessions
    return store


@dataclass(frozen=True, slots=True)
class Viewer:
    """The admin looking at the console, and the session they look through (if any)."""

    principal: PrincipalRecord | str
    session: Session | None

    @property
    def name(self) -> str:
        return self.principal if isinstance(self.principal, str) else self.principal.name


def live_session(gateway: Gateway, store: SessionStore, token: str) -> Session | None:
    """The session, if it is live and its admin still is one with the key they used."""
    session = store.find(token)
    if session is None:
        return None
    identity = gateway.deployment.identity
    record = identity.principal(session.principal)
    admin = record is not None and record.is_admin
    if session.credential.startswith("key:"):
        held = {k.key_id for k in identity.list_keys(session.principal) if k.active}
        live = admin and session.key_id in held
    elif session.credential == "oidc:admin":  # an admin principal of the store
        live = admin
    else:  # "oidc:group": the identity provider's admin group, as of the sign-in
        live = session.credential == "oidc:group"
    if not live:
        store.close(token)  # revoked or demoted: the session ends with the key
        return None
    return session


def set_session(request: Request, response: Response, token: str, minutes: int) -> None:
    """Give the browser its session: HttpOnly, SameSite=Strict, for /console only."""
    response.set_cookie(
        COOKIE,
        token,
        max_age=minutes * 60,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


async def admin_of(call: Call) -> Viewer:
    """The admin asking: by credential header, else by session cookie."""
    request = call.request
    if credential_of(request) is not None:
        return Viewer(await call.admin(), None)
    token = request.cookies.get(COOKIE)
    if not token:
        raise Denied("sign in to the console with an admin key", reason="unauthenticated")
    session = await run_in_threadpool(live_session, call.gateway, sessions_of(request), token)
    if session is None:
        raise Denied("the console session has ended: sign in again", reason="unauthenticated")
    call.outcome.principal = session.principal
    return Viewer(session.principal, session)


def same_origin(request: Request) -> None:
    """Refuse a POST another site's page sent (SameSite=Strict is the first line)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Denied("cross-site request refused", reason="forbidden")
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise Denied("cross-site request refused", reason="forbidden")


async def read_form(request: Request) -> dict[str, str]:
    raw = await read_body(request, MAX_FORM_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Denied("the form is not UTF-8", reason="malformed") from None
    try:
        fields = parse_qs(text, max_num_fields=20)
    except ValueError:  # more fields than any console form has
        raise Denied("the form has too many fields", reason="malformed") from None
    return {k: v[0] for k, v in fields.items()}


async def checked_form(call: Call, viewer: Viewer) -> dict[str, str]:
    """The form of an action, after its origin and CSRF token are checked."""
    same_origin(call.request)
    form = await read_form(call.request)
    if viewer.session is not None:  # a browser session: the token proves the page is ours
        sent = form.get("csrf") or call.request.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(sent.encode(), viewer.session.csrf.encode()):
            raise Denied(
                "the form's CSRF token is missing or stale: reload the page", reason="forbidden"
            )
    return form


def secure(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def render(request: Request, name: str, code: int = 200, **context: Any) -> Response:
    response = templates.TemplateResponse(request, name, context, status_code=code)
    return secure(response)


def as_page(request: Request, response: Response, *, to_sign_in: bool = True) -> Response:
    """A refusal as a page: the sign-in page for 401 (``to_sign_in``), else an explanation."""
    status = response.status_code
    if status < 400 or not isinstance(response, JSONResponse):
        return secure(response)
    try:
        doc = json.loads(bytes(response.body))
    except ValueError:  # pragma: no cover - refusals are JSON
        doc = {}
    if to_sign_in and status == 401 and request.method == "GET" and credential_of(request) is None:
        redirect = RedirectResponse("/console/login", status_code=303)
        redirect.delete_cookie(COOKIE, path="/console")
        return secure(redirect)
    # Styled inline (the style sheet's own route refuses a non-admin's key too), under
    # a one-time nonce: the policy still allows no other inline style, and no script.
    nonce = secrets.token_urlsafe(16)
    page = render(
        request,
        "refused.html",
        status,
        status=status,
        error=doc.get("error", "refused"),
        reason=doc.get("reason", ""),
        style=stylesheet(),
        nonce=nonce,
    )
    page.headers["Content-Security-Policy"] = CSP.replace(
        "style-src 'self'", f"style-src 'self' 'nonce-{nonce}'"
    )
    for name, value in response.headers.items():  # Retry-After, RateLimit-*, X-Request-Id...
        if name.lower() not in ("content-type", "content-length"):
            page.headers.setdefault(name, value)
    return page


@lru_cache(maxsize=1)
def stylesheet() -> str:
    return (HERE / "static" / "console.css").read_text(encoding="utf-8")


Work = Callable[[Call, Viewer], Awaitable[Response]]


async def console_call(request: Request, action: str, work: Work, *, page: bool = True) -> Response:
    """Run ``work`` for an admin, audited as ``action``; refusals as pages (or JSON)."""

    async def run(call: Call) -> Response:
        viewer = await admin_of(call)
        return await work(call, viewer)

    response = await audited(request, action, None, run)
    if page:
        return as_page(request, response)
    return secure(response)


def render_page(request: Request, viewer: Viewer, name: str, **context: Any) -> Response:
    return render(
        request,
        f"{name}.html",
        page=name,
        pages=PAGES,
        who=viewer.name,
        csrf=viewer.session.csrf if viewer.session else "",
        **context,
    )


def results_dir(gateway: Gateway) -> Path | None:
    name = settings_of(gateway).console_results
    return gateway.policy.base_dir / name if name else None
