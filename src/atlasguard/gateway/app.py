"""The HTTP layer: Open Inference Protocol routes, an admin API and metrics, over :class:`Gateway`.

Routes only translate between HTTP and the library; every security decision
is made by the guards (:mod:`atlasguard.runtime`). Refusals are
:class:`~atlasguard.runtime.pipeline.Denied` and become their status code in
one exception handler: 401 without valid credentials, 403 without a grant
(never a hint of which models exist), 429 over a quota, 400/413/422 for a
malformed request, 503 when the audit log cannot record the request.

``/metrics`` serves this process's Prometheus registry, or, when
``metrics_dir`` is given (``atlasguard serve --workers N`` does), the sum over
every worker through prometheus_client's multiprocess mode.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field, ValidationError

from atlasguard import __version__
from atlasguard.errors import AtlasguardError, ConfigurationError, UsageError
from atlasguard.gateway.service import Gateway
from atlasguard.runtime.pipeline import Denied

__all__ = ["create_app"]


class KeyRequest(BaseModel):
    principal: str = Field(min_length=1, max_length=200)
    models: list[str] = Field(default_factory=list, max_length=100)
    role: str = "user"
    rate: str = ""
    quota: str = ""
    admin: bool = False


# The body is read raw (bounded) and parsed by the guard pipeline; this only documents it.
_INFER_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object"},
                    "inputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "shape", "datatype", "data"],
                            "properties": {
                                "name": {"type": "string"},
                                "shape": {"type": "array", "items": {"type": "integer"}},
                                "datatype": {"type": "string"},
                                "parameters": {"type": "object"},
                                "data": {"type": "array"},
                            },
                        },
                    },
                    "outputs": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                    },
                },
            }
        }
    },
}


def _credential(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.headers.get("x-api-key")


async def _body_chunks(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body as it arrives, refused with 413 once past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Denied(f"request body larger than {limit} bytes", status=413, reason="invalid-input")
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Denied(
                f"request body larger than {limit} bytes", status=413, reason="invalid-input"
            )
        yield chunk


async def _read_body(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in _body_chunks(request, limit)])


def _check_multiprocess() -> None:
    from prometheus_client import values

    # prometheus_client picks its value class once, at import, from PROMETHEUS_MULTIPROC_DIR.
    if values.ValueClass is values.MutexValue:
        raise ConfigurationError(
            "multiprocess metrics need PROMETHEUS_MULTIPROC_DIR set before prometheus_client "
            "is imported (atlasguard serve --workers N sets it)"
        )


def _mark_dead_workers(metrics_dir: Path) -> None:
    """Drop the live gauges of workers that died without saying so (a crash, a kill)."""
    from prometheus_client import multiprocess

    pids = set()
    for file in metrics_dir.glob("*_*.db"):
        digits = file.stem.rpartition("_")[2]
        if digits.isdigit() and int(digits) != os.getpid():
            pids.add(int(digits))
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(metrics_dir))  # type: ignore[no-untyped-call]
        except PermissionError:  # alive, someone else's
            continue


def create_app(gateway: Gateway, *, metrics_dir: Path | None = None) -> FastAPI:
    """The ASGI application serving ``gateway``.

    Each call has its own metrics registry (never the process-wide default), so
    several apps can live in one process. ``metrics_dir`` switches ``/metrics``
    to Prometheus multiprocess mode: every worker writes its samples there and a
    scrape adds them up, whichever worker answers. It must be the directory in
    ``PROMETHEUS_MULTIPROC_DIR`` when prometheus_client was first imported.
    """
    if metrics_dir is not None:
        _check_multiprocess()
    registry = CollectorRegistry()
    requests_total = Counter(
        "atlasguard_requests_total",
        "Inference requests by decision",
        ["model", "decision", "reason"],
        registry=registry,
    )
    latency = Histogram(
        "atlasguard_request_seconds",
        "Inference latency",
        ["model"],
        registry=registry,
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if metrics_dir is not None:
            _mark_dead_workers(metrics_dir)
        yield
        gateway.close()
        if metrics_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), str(metrics_dir))  # type: ignore[no-untyped-call]

    app = FastAPI(
        title="atlasguard gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(Denied)
    async def _denied(_request: Request, exc: Denied) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc), "reason": exc.reason}, status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(AtlasguardError)
    async def _error(_request: Request, exc: AtlasguardError) -> JSONResponse:
        status = 400 if isinstance(exc, UsageError) else 500
        return JSONResponse({"error": str(exc), "reason": "error"}, status_code=status)

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> JSONResponse:
        ok = bool(gateway.models)
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "atlasguard", "version": __version__, "extensions": []}

    @app.get("/v2/models/{model}")
    async def model_metadata(model: str, request: Request) -> dict[str, Any]:
        from atlasguard.gateway.oip import model_metadata as render

        await run_in_threadpool(gateway.require, model, _credential(request))
        served = gateway.models.get(model)
        if served is None:
            raise Denied("model is not being served", status=404, reason="not-found")
        return render(model, served.spec, served.backend.outputs)

    @app.get("/v2/models/{model}/ready")
    async def model_ready(model: str, request: Request) -> JSONResponse:
        await run_in_threadpool(gateway.require, model, _credential(request))
        ok = model in gateway.models
        return JSONResponse({"name": model, "ready": ok}, status_code=200 if ok else 503)

    @app.post("/v2/models/{model}/infer", openapi_extra={"requestBody": _INFER_BODY})
    async def infer(model: str, request: Request) -> JSONResponse:
        from atlasguard.gateway.oip import infer_response

        start = time.perf_counter()
        credential = _credential(request)
        client = request.client.host if request.client else None
        try:
            body = await _read_body(request, gateway.max_body_bytes)
            response = await run_in_threadpool(
                gateway.infer, model, body, credential=credential, client=client
            )
        except Denied as exc:
            requests_total.labels(model, "deny", exc.reason).inc()
            raise
        requests_total.labels(model, "allow", "").inc()
        latency.labels(model).observe(time.perf_counter() - start)
        served = gateway.models[model]
        doc = infer_response(model, served.spec.version, response.outputs, request_id=None)
        return JSONResponse(doc, headers=dict(response.headers))

    if gateway.registry is not None:
        from atlasguard.gateway.registry_api import DEFAULT_MAX_PUSH_BYTES, registry_router

        # [controls.registry] max_push_bytes, once the registry's settings declare it.
        limit = getattr(
            gateway.policy.settings("registry"), "max_push_bytes", DEFAULT_MAX_PUSH_BYTES
        )
        app.include_router(
            registry_router(gateway, gateway.registry, _credential, max_push_bytes=limit)
        )

    def scrape() -> bytes:
        if metrics_dir is None:
            return generate_latest(registry)
        from prometheus_client import multiprocess

        # A fresh registry per scrape: the collector reads every worker's files anew.
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=str(metrics_dir))  # type: ignore[no-untyped-call]
        return generate_latest(merged)

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        text = scrape() if metrics_dir is None else await run_in_threadpool(scrape)
        return PlainTextResponse(text.decode(), media_type=CONTENT_TYPE_LATEST)

    # -- admin API: the same operations as `atlasguard keys`, for admin principals ----

    def _admin(request: Request) -> str:
        from atlasguard.identity.store import AuthenticationError

        try:
            record = gateway.identity.authenticate(_credential(request))
        except AuthenticationError as exc:
            raise Denied(
                f"authentication failed: {exc}",
                status=401,
                reason="unauthenticated",
                headers={"WWW-Authenticate": 'Bearer realm="atlasguard"'},
            ) from None
        if not record.is_admin:
            raise Denied("forbidden: admin only", status=403, reason="forbidden")
        return record.name

    def _audit_admin(actor: str, verb: str, target: str) -> None:
        from atlasguard.audit.records import AuditRecord

        gateway.audit.append(
            AuditRecord(
                time=time.time(),
                principal=actor,
                action=f"admin.{verb}",
                decision="allow",
                details={"target": target},
            )
        )

    @app.post(
        "/v1/admin/keys",
        status_code=201,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": KeyRequest.model_json_schema()}},
            }
        },
    )
    async def create_key(request: Request) -> dict[str, Any]:
        # Authenticate before reading the body: nobody learns the API's shape without a key.
        actor = await run_in_threadpool(_admin, request)
        raw = await _read_body(request, 64 * 1024)
        try:
            body = KeyRequest.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "body"
            raise Denied(f"{where}: {first['msg']}", status=422, reason="invalid-input") from None
        return await run_in_threadpool(_create_key, actor, body)

    def _create_key(actor: str, body: KeyRequest) -> dict[str, Any]:
        from atlasguard.identity.store import is_group

        if is_group(body.principal):  # refused before anything is granted or recorded
            raise UsageError(
                f"{body.principal} is a group: groups hold no keys; grant it with "
                "`atlasguard keys create --principal group:NAME --models ...`"
            )
        # Recorded before it happens: an action the log cannot hold does not happen.
        _audit_admin(
            actor,
            "keys.create",
            f"{body.principal} models={','.join(body.models)} role={body.role} admin={body.admin}",
        )
        for pattern in body.models:
            gateway.identity.grant(
                body.principal, pattern, body.role, rate=body.rate, quota=body.quota
            )
        issued = gateway.identity.create_key(body.principal, admin=body.admin)
        return {"key_id": issued.key_id, "principal": issued.principal, "key": issued.secret}

    @app.get("/v1/admin/keys")
    def list_keys(request: Request) -> list[dict[str, Any]]:
        _admin(request)
        return [
            {
                "key_id": k.key_id,
                "principal": k.principal,
                "active": k.active,
                "grants": [f"{g.role}:{g.models}" for g in gateway.identity.grants_of(k.principal)],
            }
            for k in gateway.identity.list_keys()
        ]

    @app.delete("/v1/admin/keys/{key_id}")
    def revoke_key(key_id: str, request: Request) -> dict[str, str]:
        actor = _admin(request)
        _audit_admin(actor, "keys.revoke", key_id)
        gateway.identity.revoke_key(key_id)
        return {"revoked": key_id}

    return app
