"""The Open Inference Protocol routes: health, server and model metadata, readiness, infer.

Thin routes: each authenticates through :class:`~atlasguard.gateway.calls.Call`,
decodes with the protocol codec (:mod:`atlasguard.gateway.oip`) and hands
arrays to the model's :class:`~atlasguard.runtime.protect.Protected`; every
call about a model — answered, refused or failed — is one audit record.
Server liveness, readiness and metadata name no model and need no
credential; they are not audited (a load balancer probes them constantly).

An inference runs on the event loop when it is short and never waits on the
network (:class:`~atlasguard.gateway.service.Placement`): a body of at most
64 KiB is decoded there and a model measured as fast runs there; anything
else goes to a worker thread. The wait for the audit record holds no thread.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from atlasguard import __version__
from atlasguard.gateway.calls import Call, audited
from atlasguard.gateway.http import gateway_of, ratelimit_headers, read_body
from atlasguard.gateway.oip import (
    InvalidInput,
    infer_response,
    model_metadata,
    parse_infer_request,
)
from atlasguard.gateway.service import Gateway, ServedModel
from atlasguard.runtime.pipeline import Denied
from atlasguard.runtime.pipeline import Request as Query
from atlasguard.runtime.pipeline import Response as Answer

__all__ = ["INLINE_BODY_BYTES", "router"]

INLINE_BODY_BYTES = 64 * 1024
"""The largest body decoded on the event loop; larger ones are decoded in a thread."""

router = APIRouter()

# The body is read raw (bounded) and parsed by the codec; this only documents it.
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


def _run(
    served: ServedModel, query: Query, clock: Callable[[], float] = time.thread_time
) -> Answer:
    """The guarded call, timed for its placement.

    On a worker thread in CPU time (waits for the GIL do not count); on the event
    loop, which nothing else runs on meanwhile, ``time.perf_counter`` is the same
    and cheaper.
    """
    start = clock()
    try:
        return served.protected.run(query)
    finally:
        served.placement.observe(clock() - start, query.rows)


@router.post("/v2/models/{model}/infer", openapi_extra={"requestBody": _INFER_BODY})
async def infer(model: str, request: Request) -> Response:
    gateway = gateway_of(request)

    async def work(call: Call) -> Response:
        principal = await call.authorize(model)
        served = gateway.models.get(model)
        if served is None:
            raise _not_served()
        body = await read_body(request, gateway.max_body_bytes)
        call.outcome.input_digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if len(body) <= INLINE_BODY_BYTES:
            parsed = parse_infer_request(body, served.spec, max_body_bytes=gateway.max_body_bytes)
        else:
            parsed = await run_in_threadpool(
                parse_infer_request, body, served.spec, max_body_bytes=gateway.max_body_bytes
            )
        if parsed.id is not None:
            call.outcome.details["id"] = parsed.id
        query = served.protected.request(principal, parsed.inputs, call.outcome)
        if served.placement.inline(query.rows):
            answer = _run(served, query, time.perf_counter)
        else:
            answer = await run_in_threadpool(_run, served, query)
        outputs = answer.outputs
        if parsed.outputs:
            missing = [n for n in parsed.outputs if n not in outputs]
            if missing:
                raise InvalidInput(f"unknown output {missing[0]!r}", reason="invalid-input")
            outputs = {n: outputs[n] for n in parsed.outputs}
        call.outcome.answered(outputs, notes=answer.notes)
        doc = infer_response(
            model, served.spec.version, outputs, request_id=parsed.id, flags=answer.flags
        )
        return JSONResponse(doc, headers=ratelimit_headers(answer.limits))

    return await audited(request, "infer", model, work)


def _not_served() -> Denied:
    return Denied("model is not being served", reason="not-found")


async def _served(call: Call, gateway: Gateway, model: str) -> ServedModel:
    """The model, once the caller is authorized for its name (refusals never say it exists)."""
    await call.authorize(model)
    served = gateway.models.get(model)
    if served is None:
        raise _not_served()
    return served


@router.get("/v2/health/live")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/v2/health/ready")
async def ready(request: Request) -> JSONResponse:
    ok = bool(gateway_of(request).models)
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get("/v2")
async def server_metadata() -> dict[str, Any]:
    return {"name": "atlasguard", "version": __version__, "extensions": []}


@router.get("/v2/models/{model}")
async def metadata(model: str, request: Request) -> Response:
    gateway = gateway_of(request)

    async def work(call: Call) -> Response:
        served = await _served(call, gateway, model)
        return JSONResponse(model_metadata(model, served.spec, served.backend.outputs))

    return await audited(request, "metadata", model, work)


@router.get("/v2/models/{model}/ready")
async def model_ready(model: str, request: Request) -> Response:
    gateway = gateway_of(request)

    async def work(call: Call) -> Response:
        await _served(call, gateway, model)
        return JSONResponse({"name": model, "ready": True})

    return await audited(request, "ready", model, work)
