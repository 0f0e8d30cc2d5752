"""``/console``: the routes of the console, for admin principals.

Who may look: an admin principal, signed in once with an admin key (the
browser then holds a short-lived session cookie — HttpOnly, SameSite=Strict,
never the key), or calling with the key itself in ``Authorization`` /
``X-API-Key``. Anyone else gets 403, on every route; no credential at all
gets the sign-in page. Every route runs in :func:`~atlasguard.gateway.calls.audited`,
so each page view and each action is an audit record like any other admin
call; actions are made through :class:`~atlasguard.runtime.admin.Admin`,
which records them before making them.

Actions are POSTs that carry the session's CSRF token, from the console's own
origin. Every answer has a strict content-security policy: the page, its one
style sheet and its one script come from the gateway, nothing inline, nothing
external.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.templating import Jinja2Templates

from atlasguard.gateway.calls import Call, audited
from atlasguard.gateway.console import views
from atlasguard.gateway.console.sessions import Session, SessionStore
from atlasguard.gateway.http import credential_of, gateway_of, read_body
from atlasguard.gateway.service import Gateway
from atlasguard.identity.store import PrincipalRecord, key_id_of
from atlasguard.runtime.pipeline import Denied
from atlasguard.runtime.settings import ServingSettings

__all__ = ["COOKIE", "CSP", "router"]

COOKIE = "atlasguard_console"
LOGIN_COOKIE = "atlasguard_console_login"
MAX_FORM_BYTES = 16 * 1024
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes form posts send Origin: null
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_HERE = Path(__file__).parent
_STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
_VERBS = ("revoke", "tighten", "label-only", "lift")
_PAGES = ("coverage", "traffic", "alerts", "audit", "registry", "efficacy")

templates = Jinja2Templates(directory=str(_HERE / "templates"))
router = APIRouter(prefix="/console", include_in_schema=False)


def _settings(gateway: Gateway) -> ServingSettings:
    settings = gateway.policy.settings("serving")
    return settings if isinstance(settings, ServingSettings) else ServingSettings()


def _sessions(request: Request) -> SessionStore:
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


def _live(gateway: Gateway, store: SessionStore, token: str) -> Session | None:
    """The session, if it is live and its admin still is one with the key they used."""
    session = store.find(token)
    if session is None:
        return None
    identity = gateway.deployment.identity
    record = identity.principal(session.principal)
    held = {k.key_id for k in identity.list_keys(session.principal) if k.active}
    if record is None or not record.is_admin or session.key_id not in held:
        store.close(token)  # revoked or demoted: the session ends with the key
        return None
    return session


async def _admin(call: Call) -> Viewer:
    """The admin asking: by credential header, else by session cookie."""
    request = call.request
    if credential_of(request) is not None:
        return Viewer(await call.admin(), None)
    token = request.cookies.get(COOKIE)
    if not token:
        raise Denied("sign in to the console with an admin key", reason="unauthenticated")
    session = await run_in_threadpool(_live, call.gateway, _sessions(request), token)
    if session is None:
        raise Denied("the console session has ended: sign in again", reason="unauthenticated")
    call.outcome.principal = session.principal
    return Viewer(session.principal, session)


def _same_origin(request: Request) -> None:
    """Refuse a POST another site's page sent (SameSite=Strict is the first line)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Denied("cross-site request refused", reason="forbidden")
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise Denied("cross-site request refused", reason="forbidden")


async def _form(request: Request) -> dict[str, str]:
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


async def _checked_form(call: Call, viewer: Viewer) -> dict[str, str]:
    """The form of an action, after its origin and CSRF token are checked."""
    _same_origin(call.request)
    form = await _form(call.request)
    if viewer.session is not None:  # a browser session: the token proves the page is ours
        sent = form.get("csrf") or call.request.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(sent.encode(), viewer.session.csrf.encode()):
            raise Denied(
                "the form's CSRF token is missing or stale: reload the page", reason="forbidden"
            )
    return form


def _secure(response: Response) -> Response:
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _render(request: Request, name: str, code: int = 200, **context: Any) -> Response:
    response = templates.TemplateResponse(request, name, context, status_code=code)
    return _secure(response)


def _as_page(request: Request, response: Response) -> Response:
    """A refusal as a page: the sign-in page for 401, an explanation otherwise."""
    status = response.status_code
    if status < 400 or not isinstance(response, JSONResponse):
        return _secure(response)
    try:
        doc = json.loads(bytes(response.body))
    except ValueError:  # pragma: no cover - refusals are JSON
        doc = {}
    if status == 401 and request.method == "GET" and credential_of(request) is None:
        redirect = RedirectResponse("/console/login", status_code=303)
        redirect.delete_cookie(COOKIE, path="/console")
        return _secure(redirect)
    # Styled inline (the style sheet's own route refuses a non-admin's key too), under
    # a one-time nonce: the policy still allows no other inline style, and no script.
    nonce = secrets.token_urlsafe(16)
    page = _render(
        request,
        "refused.html",
        status,
        status=status,
        error=doc.get("error", "refused"),
        reason=doc.get("reason", ""),
        style=_stylesheet(),
        nonce=nonce,
    )
    page.headers["Content-Security-Policy"] = CSP.replace(
        "style-src 'self'", f"style-src 'self' 'nonce-{nonce}'"
    )
    return page


@lru_cache(maxsize=1)
def _stylesheet() -> str:
    return (_HERE / "static" / "console.css").read_text(encoding="utf-8")


Work = Callable[[Call, Viewer], Awaitable[Response]]


async def _console(request: Request, action: str, work: Work, *, page: bool = True) -> Response:
    """Run ``work`` for an admin, audited as ``action``; refusals as pages (or JSON)."""

    async def run(call: Call) -> Response:
        viewer = await _admin(call)
        return await work(call, viewer)

    response = await audited(request, action, None, run)
    if page:
        return _as_page(request, response)
    return _secure(response)


def _page(request: Request, viewer: Viewer, name: str, **context: Any) -> Response:
    return _render(
        request,
        f"{name}.html",
        page=name,
        pages=_PAGES,
        who=viewer.name,
        csrf=viewer.session.csrf if viewer.session else "",
        **context,
    )


# -- signing in ------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> Response:
    if credential_of(request) is not None:  # a key in a header: admins go on, others 403

        async def work(call: Call, viewer: Viewer) -> Response:
            return _secure(RedirectResponse("/console/coverage", status_code=303))

        return await _console(request, "console.login", work)
    gateway = gateway_of(request)
    token = request.cookies.get(COOKIE)
    if token and await run_in_threadpool(_live, gateway, _sessions(request), token) is not None:
        return _secure(RedirectResponse("/console/coverage", status_code=303))
    nonce = secrets.token_urlsafe(24)
    response = _render(
        request, "login.html", nonce=nonce, error=request.query_params.get("error", "")[:200]
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=600,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    gateway = gateway_of(request)
    settings = _settings(gateway)

    async def work(call: Call) -> Response:
        if credential_of(request) is not None:  # a key in a header: only an admin goes on
            await call.admin()
        _same_origin(request)
        form = await _form(request)
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not hmac.compare_digest(form.get("nonce", "").encode(), nonce.encode()):
            raise Denied("the sign-in form is stale: reload the page", reason="forbidden")
        credential = form.get("credential", "").strip()
        access = gateway.deployment.access
        client = request.client.host if request.client else None
        record = await run_in_threadpool(access.authenticate, credential, client=client)
        call.outcome.principal = record.name
        key_id = key_id_of(credential)
        if not record.is_admin or key_id is None:
            raise Denied(
                "the console is for admin principals: sign in with an admin key "
                "(`atlasguard keys create --principal NAME --admin`)",
                reason="forbidden",
            )
        opened = await run_in_threadpool(
            _sessions(request).open,
            record.name,
            f"key:{key_id}",
            seconds=settings.console_session_minutes * 60,
        )
        response = RedirectResponse("/console/coverage", status_code=303)
        response.set_cookie(
            COOKIE,
            opened.token,
            max_age=settings.console_session_minutes * 60,
            path="/console",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.delete_cookie(LOGIN_COOKIE, path="/console", httponly=True, samesite="strict")
        return response

    response = await audited(request, "console.login", None, work)
    if response.status_code == 401:  # a wrong key: the form again, with the reason
        try:
            error = json.loads(bytes(response.body)).get("error", "sign-in refused")
        except ValueError:  # pragma: no cover
            error = "sign-in refused"
        return _secure(
            RedirectResponse("/console/login?" + urlencode({"error": error[:200]}), status_code=303)
        )
    return _as_page(request, response)


@router.post("/logout")
async def logout(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        await _checked_form(call, viewer)
        token = request.cookies.get(COOKIE)
        await run_in_threadpool(_sessions(request).close, token)
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(COOKIE, path="/console")
        return response

    return await _console(request, "console.logout", work)


@router.get("/static/{name}")
async def static(name: str, request: Request) -> Response:
    if name not in _STATIC:
        return _secure(PlainTextResponse("not found", status_code=404))
    if credential_of(request) is not None:  # a key in a header: admins only, like every route

        async def work(call: Call, viewer: Viewer) -> Response:
            return FileResponse(_HERE / "static" / name, media_type=_STATIC[name])

        return await _console(request, "console.static", work)
    return _secure(FileResponse(_HERE / "static" / name, media_type=_STATIC[name]))


# -- pages -----------------------------------------------------------------------------


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        return RedirectResponse("/console/coverage", status_code=303)

    return await _console(request, "console.home", work)


@router.get("/coverage")
async def coverage(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        from atlasguard.catalog.coverage import compute_coverage

        gateway = call.gateway
        selected = request.query_params.get("m", "")[:20] or None
        cov = await run_in_threadpool(compute_coverage, gateway.policy)
        data = views.coverage_view(cov, gateway.policy, selected)
        efficacy: list[dict[str, Any]] = []
        measured: list[dict[str, Any]] = []
        detail = data["detail"]
        if detail is not None:
            results = _results_dir(gateway)
            found = await run_in_threadpool(views.efficacy_view, gateway.deployment.audit, results)
            efficacy = [lab for lab in found["labs"] if selected in lab["mitigations"].split(",")]
            keys = [c["key"] for c in detail["settings"]]
            measured = views.rows_about(found["tables"], keys)
        return _page(request, viewer, "coverage", cov=data, efficacy=efficacy, measured=measured)

    return await _console(request, "console.coverage", work)


@router.get("/coverage/{name}.json")
async def coverage_export(name: str, request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        from atlasguard.catalog.coverage import compute_coverage
        from atlasguard.catalog.export import misp_cluster, navigator_layer

        if name not in ("navigator", "misp"):
            raise Denied("export navigator.json or misp.json", reason="not-found")
        cov = await run_in_threadpool(compute_coverage, call.gateway.policy)
        doc = navigator_layer(cov) if name == "navigator" else misp_cluster(cov)
        filename = f"atlasguard-{name}.json"
        return JSONResponse(
            doc, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
        )

    return await _console(request, "console.export", work)


def _limits(gateway: Gateway) -> tuple[dict[str, str], dict[str, str]]:
    """Each principal's own daily quota, and a summary of its own restrictions."""
    daily: dict[str, str] = {}
    restricted: dict[str, str] = {}
    for g in gateway.deployment.identity.list_grants():
        if g.quota:
            daily.setdefault(g.principal, g.quota)
        parts = [
            f"{k} {v}" for k, v in (("rate", g.rate), ("quota", g.quota), ("output", g.output)) if v
        ]
        if parts:
            restricted.setdefault(g.principal, ", ".join(parts))
    return daily, restricted


def _traffic(gateway: Gateway) -> dict[str, Any]:
    daily, _ = _limits(gateway)
    return views.traffic_view(gateway.deployment.audit, gateway.policy, daily)


@router.get("/traffic")
async def traffic(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        data = await run_in_threadpool(_traffic, call.gateway)
        return _page(request, viewer, "traffic", traffic=data, outcomes=views.OUTCOMES)

    return await _console(request, "console.traffic", work)


@router.get("/traffic.json")
async def traffic_json(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        return JSONResponse(await run_in_threadpool(_traffic, call.gateway))

    return await _console(request, "console.traffic", work, page=False)


def _alerts(gateway: Gateway) -> dict[str, Any]:
    deployment = gateway.deployment
    suspended = []
    if deployment.policy.enabled("monitor"):
        suspended = [
            (s.principal, s.model, s.why, s.until)
            for s in deployment.suspensions.active(now=time.time())
        ]
    keys: dict[str, int] = {}
    for k in deployment.identity.list_keys():
        if k.active:
            keys[k.principal] = keys.get(k.principal, 0) + 1
    _, restricted = _limits(gateway)
    return views.alerts_view(deployment.audit, suspended, keys, restricted)


@router.get("/alerts")
async def alerts(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        data = await run_in_threadpool(_alerts, call.gateway)
        settings = _settings(call.gateway)
        return _page(
            request,
            viewer,
            "alerts",
            alerts=data,
            done=request.query_params.get("done", "")[:300],
            tighten_rate=settings.console_tighten_rate,
            tighten_quota=settings.console_tighten_quota,
            output_on=call.gateway.policy.enabled("output"),
        )

    return await _console(request, "console.alerts", work)


@router.post("/alerts/{verb}")
async def alert_action(verb: str, request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        form = await _checked_form(call, viewer)
        principal = form.get("principal", "")[:200]
        if not principal:
            raise Denied("say which principal", reason="malformed")
        call.outcome.details["target"] = principal
        admin = call.gateway.deployment.admin
        if verb == "revoke":
            revoked = await call.delegate(admin.revoke_keys_of, viewer.name, principal)
            done = f"revoked {len(revoked)} key(s) of {principal}: its next request gets 401"
        elif verb == "tighten":
            rate = form.get("rate", "").strip() or None
            quota = form.get("quota", "").strip() or None
            await call.delegate(admin.restrict, viewer.name, principal, rate=rate, quota=quota)
            done = f"{principal} now limited to {rate or 'its rate'} and {quota or 'its quota'}"
        elif verb == "label-only":
            if not call.gateway.policy.enabled("output"):
                raise Denied(
                    "output policies are off: set [controls.output] enabled = true first",
                    reason="refused",
                )
            await call.delegate(admin.restrict, viewer.name, principal, output="label")
            done = f"{principal} now gets labels only, no scores"
        elif verb == "lift":
            model = form.get("model", "").strip() or None
            await call.delegate(admin.lift_suspension, viewer.name, principal, model)
            done = f"lifted the suspension of {principal}"
        else:
            raise Denied("unknown action: revoke, tighten, label-only or lift", reason="not-found")
        return RedirectResponse("/console/alerts?" + urlencode({"done": done}), status_code=303)

    # the action's name goes to the metrics' labels: a closed set, never the URL's text
    action = f"console.alerts.{verb}" if verb in _VERBS else "console.alerts.unknown"
    return await _console(request, action, work)


@router.get("/audit")
async def audit(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        q = request.query_params
        filters = {k: q.get(k, "")[:200] for k in ("principal", "action", "decision")}
        before = q.get("before", "")
        log = call.gateway.deployment.audit
        page = await run_in_threadpool(
            lambda: views.audit_page(
                log,
                principal=filters["principal"],
                action=filters["action"],
                decision=filters["decision"],
                before=int(before) if before.isdigit() and len(before) <= 18 else None,
            )
        )
        state = await run_in_threadpool(_chain_state, call.gateway, q.get("verify") == "1")
        return _page(
            request,
            viewer,
            "audit",
            log=page,
            filters=filters,
            chain=state,
            next_link="?" + urlencode({**filters, "before": page["next"]}) if page["next"] else "",
            done=q.get("done", "")[:300],
        )

    return await _console(request, "console.audit", work)


def _chain_state(gateway: Gateway, verify: bool) -> dict[str, Any]:
    """The log's size, its checkpoints, and (on request) a full verification."""
    from atlasguard.errors import IntegrityError

    log = gateway.deployment.audit
    checkpoints = log.checkpoints()
    state: dict[str, Any] = {
        "records": log.size(),
        "checkpoints": len(checkpoints),
        "latest": checkpoints[-1].size if checkpoints else 0,
        "latest_at": views._clock(checkpoints[-1].created_at) if checkpoints else "",
        "can_sign": log.signs_checkpoints,
        "verifier": gateway.deployment.verifier is not None,
        "verified": None,
    }
    if verify:
        verifier = gateway.deployment.verifier
        if verifier is None:
            state["verified"] = {"ok": False, "why": "no public key to verify with ([keys])"}
        else:
            try:
                report = log.verify(verifier)
            except IntegrityError as exc:
                state["verified"] = {"ok": False, "why": str(exc)}
            else:
                state["verified"] = {
                    "ok": True,
                    "records": report.records,
                    "latest": report.latest_checkpoint,
                    "tail": report.unchecked_tail,
                    "root": report.root.hex(),
                }
    return state


@router.post("/audit/checkpoint")
async def audit_checkpoint(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        await _checked_form(call, viewer)
        log = call.gateway.deployment.audit
        if not log.signs_checkpoints:
            raise Denied("this deployment has no [keys] signing_key to sign with", reason="refused")
        # The checkpoint covers every record before this request's own.
        call.outcome.details["target"] = "audit head"
        checkpoint = await run_in_threadpool(log.checkpoint)
        done = f"signed a checkpoint over {checkpoint.size} records"
        return RedirectResponse("/console/audit?" + urlencode({"done": done}), status_code=303)

    return await _console(request, "console.audit.checkpoint", work)


@router.get("/audit/proof/{index}")
async def audit_proof(index: int, request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        proof = await run_in_threadpool(_proof, call.gateway, index)
        return _page(request, viewer, "proof", proof=proof, index=index)

    return await _console(request, "console.audit.proof", work)


def _proof(gateway: Gateway, index: int) -> dict[str, Any]:
    """An inclusion proof of one record, checked here against its signed checkpoint."""
    from atlasguard.audit.merkle import verify_inclusion
    from atlasguard.errors import IntegrityError

    try:
        proof = gateway.deployment.audit.prove(index)
    except IntegrityError as exc:
        return {"ok": False, "why": str(exc)}
    except LookupError:
        return {"ok": False, "why": f"there is no audit record {index}"}
    checks = []
    try:
        verify_inclusion(
            proof.leaf_hash, index, proof.checkpoint.size, list(proof.path), proof.checkpoint.root
        )
        checks.append("the record's hash and path lead to the checkpoint's root")
        if gateway.deployment.verifier is not None:
            gateway.deployment.verifier.verify(proof.checkpoint)
            checks.append(f"the checkpoint's signature verifies (key {proof.checkpoint.key_id})")
        ok = True
    except Exception as exc:  # a failed check is the answer, not an error
        checks.append(f"FAILED: {exc}")
        ok = False
    return {
        "ok": ok,
        "checks": checks,
        "record": proof.record.to_dict(),
        "leaf": proof.leaf_hash.hex(),
        "path": [h.hex() for h in proof.path],
        "size": proof.checkpoint.size,
        "root": proof.checkpoint.root.hex(),
        "signed_at": views._clock(proof.checkpoint.created_at),
        "key_id": proof.checkpoint.key_id,
    }


@router.get("/registry")
async def registry(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        data = await run_in_threadpool(views.registry_view, call.gateway, viewer.name)
        return _page(request, viewer, "registry", reg=data)

    return await _console(request, "console.registry", work)


def _results_dir(gateway: Gateway) -> Path | None:
    name = _settings(gateway).console_results
    return gateway.policy.base_dir / name if name else None


@router.get("/efficacy")
async def efficacy(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        results = _results_dir(call.gateway)
        data = await run_in_threadpool(views.efficacy_view, call.gateway.deployment.audit, results)
        where = call.gateway.policy.settings("serving")
        folder = where.console_results if isinstance(where, ServingSettings) else "results"
        return _page(request, viewer, "efficacy", eff=data, folder=folder)

    return await _console(request, "console.efficacy", work)


@router.get("/results/{name}")
async def result_plot(name: str, request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        results = _results_dir(call.gateway)
        if results is None or not name.endswith(".png") or not views.RESULT_NAME.match(name):
            raise Denied("no such plot", reason="not-found")
        path = results / name
        if not path.is_file() or path.is_symlink():
            raise Denied("no such plot", reason="not-found")
        return FileResponse(path, media_type="image/png")

    return await _console(request, "console.plot", work)
