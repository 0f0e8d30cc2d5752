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
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)

from atlasguard.catalog.coverage import Coverage
from atlasguard.gateway.calls import Call, audited
from atlasguard.gateway.console import efficacy_page, views
from atlasguard.gateway.console.base import (
    COOKIE,
    HERE,
    LOGIN_COOKIE,
    STATIC,
    Viewer,
    as_page,
    checked_form,
    console_call,
    live_session,
    read_form,
    render,
    render_page,
    results_dir,
    router,
    same_origin,
    secure,
    sessions_of,
    set_session,
    settings_of,
)
from atlasguard.gateway.http import credential_of, gateway_of
from atlasguard.gateway.service import Gateway
from atlasguard.identity.store import key_id_of
from atlasguard.runtime.pipeline import Denied
from atlasguard.runtime.settings import ServingSettings

__all__ = ["router"]

_VERBS = ("revoke", "tighten", "label-only", "lift")
_SIGN_IN_ERRORS = {
    "key": "That key was not accepted (unknown, revoked or expired): check it, or ask an "
    "administrator for a new one.",
}


# -- signing in ------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> Response:
    if credential_of(request) is not None:  # a key in a header: admins go on, others 403

        async def work(call: Call, viewer: Viewer) -> Response:
            return secure(RedirectResponse("/console/coverage", status_code=303))

        return await console_call(request, "console.login", work)
    gateway = gateway_of(request)
    token = request.cookies.get(COOKIE)
    if (
        token
        and await run_in_threadpool(live_session, gateway, sessions_of(request), token) is not None
    ):
        return secure(RedirectResponse("/console/coverage", status_code=303))
    nonce = secrets.token_urlsafe(24)
    from atlasguard.gateway.console.oidc import enabled

    response = render(
        request,
        "login.html",
        nonce=nonce,
        # a code, never text from the URL: a link cannot put words in the console's mouth
        error=_SIGN_IN_ERRORS.get(request.query_params.get("error", ""), ""),
        oidc=enabled(settings_of(gateway)),
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
    settings = settings_of(gateway)

    async def work(call: Call) -> Response:
        if credential_of(request) is not None:  # a key in a header: only an admin goes on
            await call.admin()
        same_origin(request)
        form = await read_form(request)
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
            sessions_of(request).open,
            record.name,
            f"key:{key_id}",
            seconds=settings.console_session_minutes * 60,
        )
        response = RedirectResponse("/console/coverage", status_code=303)
        set_session(request, response, opened.token, settings.console_session_minutes)
        response.delete_cookie(LOGIN_COOKIE, path="/console", httponly=True, samesite="strict")
        return response

    response = await audited(request, "console.login", None, work)
    if response.status_code == 401:  # a wrong key: the form again, saying so
        return secure(RedirectResponse("/console/login?error=key", status_code=303))
    return as_page(request, response)


@router.post("/logout")
async def logout(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        await checked_form(call, viewer)
        token = request.cookies.get(COOKIE)
        await run_in_threadpool(sessions_of(request).close, token)
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(COOKIE, path="/console")
        return response

    return await console_call(request, "console.logout", work)


@router.get("/static/{name}")
async def static(name: str, request: Request) -> Response:
    if name not in STATIC:
        return secure(PlainTextResponse("not found", status_code=404))
    if credential_of(request) is not None:  # a key in a header: admins only, like every route

        async def work(call: Call, viewer: Viewer) -> Response:
            return FileResponse(HERE / "static" / name, media_type=STATIC[name])

        return await console_call(request, "console.static", work)
    return secure(FileResponse(HERE / "static" / name, media_type=STATIC[name]))


# -- pages -----------------------------------------------------------------------------


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        return RedirectResponse("/console/coverage", status_code=303)

    return await console_call(request, "console.home", work)


EVIDENCE_SECONDS = 60.0
"""How long the console reuses the commands' runs it read (finding one reads the log)."""


def _coverage(request: Request) -> Coverage:
    """Coverage of the live policy: what the gateway runs, and the commands on record."""
    from atlasguard.catalog.coverage import compute_coverage
    from atlasguard.runtime.evidence import command_evidence

    gateway = gateway_of(request)
    deployment = gateway.deployment
    cached = getattr(request.app.state, "console_evidence", None)
    if cached is None or time.monotonic() - cached[0] > EVIDENCE_SECONDS:
        cached = (time.monotonic(), command_evidence(gateway.policy, deployment.audit))
        request.app.state.console_evidence = cached
    return compute_coverage(gateway.policy, parts=(*deployment.parts, *cached[1]))


@router.get("/coverage")
async def coverage(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:

        gateway = call.gateway
        selected = request.query_params.get("m", "")[:20] or None
        cov = await run_in_threadpool(_coverage, request)
        data = views.coverage_view(cov, gateway.policy, selected)
        efficacy: list[dict[str, Any]] = []
        measured: list[dict[str, Any]] = []
        detail = data["detail"]
        if detail is not None:
            results = results_dir(gateway)
            found = await run_in_threadpool(
                efficacy_page.efficacy_view, gateway.deployment.audit, results
            )
            efficacy = [lab for lab in found["labs"] if selected in lab["mitigations"].split(",")]
            keys = [c["key"] for c in detail["settings"]]
            measured = efficacy_page.rows_about(found["tables"], keys)
        return render_page(
            request, viewer, "coverage", cov=data, efficacy=efficacy, measured=measured
        )

    return await console_call(request, "console.coverage", work)


@router.get("/coverage/{name}.json")
async def coverage_export(name: str, request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        from atlasguard.catalog.export import misp_cluster, navigator_layer

        if name not in ("navigator", "misp"):
            raise Denied("export navigator.json or misp.json", reason="not-found")
        cov = await run_in_threadpool(_coverage, request)
        doc = navigator_layer(cov) if name == "navigator" else misp_cluster(cov)
        filename = f"atlasguard-{name}.json"
        return JSONResponse(
            doc, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
        )

    return await console_call(request, "console.export", work)


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
        return render_page(request, viewer, "traffic", traffic=data, outcomes=views.OUTCOMES)

    return await console_call(request, "console.traffic", work)


@router.get("/traffic.json")
async def traffic_json(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        return JSONResponse(await run_in_threadpool(_traffic, call.gateway))

    return await console_call(request, "console.traffic", work, page=False)


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
        settings = settings_of(call.gateway)
        return render_page(
            request,
            viewer,
            "alerts",
            alerts=data,
            done=request.query_params.get("done", "")[:300],
            tighten_rate=settings.console_tighten_rate,
            tighten_quota=settings.console_tighten_quota,
            output_on=call.gateway.policy.enabled("output"),
        )

    return await console_call(request, "console.alerts", work)


@router.post("/alerts/{verb}")
async def alert_action(verb: str, request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        form = await checked_form(call, viewer)
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
    return await console_call(request, action, work)


@router.get("/registry")
async def registry(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        data = await run_in_threadpool(views.registry_view, call.gateway, viewer.name)
        return render_page(request, viewer, "registry", reg=data)

    return await console_call(request, "console.registry", work)


@router.get("/efficacy")
async def efficacy(request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        results = results_dir(call.gateway)
        data = await run_in_threadpool(
            efficacy_page.efficacy_view, call.gateway.deployment.audit, results
        )
        where = call.gateway.policy.settings("serving")
        folder = where.console_results if isinstance(where, ServingSettings) else "results"
        return render_page(request, viewer, "efficacy", eff=data, folder=folder)

    return await console_call(request, "console.efficacy", work)


@router.get("/results/{name}")
async def result_plot(name: str, request: Request) -> Response:
    async def work(call: Call, viewer: Viewer) -> Response:
        results = results_dir(call.gateway)
        if results is None or not name.endswith(".png") or not views.RESULT_NAME.match(name):
            raise Denied("no such plot", reason="not-found")
        path = results / name
        if not path.is_file() or path.is_symlink():
            raise Denied("no such plot", reason="not-found")
        return FileResponse(path, media_type="image/png")

    return await console_call(request, "console.plot", work)
