"""``/v1/admin``: the operations of ``atlasguard keys``, for admin principals, over HTTP.

Thin routes over :class:`~atlasguard.runtime.admin.Admin`, which records each
change before making it. The caller is authenticated (API key or token, like
any request) and must be an admin before a byte of a body is read; refusals
are audit records like any other call.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from atlasguard.gateway.calls import Call, audited
from atlasguard.gateway.http import gateway_of, read_body
from atlasguard.identity.store import is_group
from atlasguard.runtime.pipeline import Denied

__all__ = ["KeyRequest", "router"]

MAX_BODY_BYTES = 64 * 1024

router = APIRouter(prefix="/v1/admin")


class KeyRequest(BaseModel):
    principal: str = Field(min_length=1, max_length=200)
    models: list[str] = Field(default_factory=list, max_length=100)
    role: str = "user"
    rate: str = ""
    quota: str = ""
    admin: bool = False


_KEY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": KeyRequest.model_json_schema()}},
    }
}


@router.post("/keys", status_code=201, openapi_extra=_KEY_BODY)
async def create_key(request: Request) -> Response:
    admin = gateway_of(request).deployment.admin

    async def work(call: Call) -> Response:
        actor = await call.admin()  # before the body: nobody learns its shape without a key
        raw = await read_body(request, MAX_BODY_BYTES)
        try:
            body = KeyRequest.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "body"
            raise Denied(f"{where}: {first['msg']}", reason="invalid-input") from None
        if is_group(body.principal):  # refused before anything is granted
            raise Denied(
                f"{body.principal} is a group: groups hold no keys; grant it with "
                "`atlasguard keys create --principal group:NAME --models ...`",
                reason="malformed",
            )
        issued = await call.delegate(
            admin.create_key,
            actor.name,
            body.principal,
            models=body.models,
            role=body.role,
            rate=body.rate,
            quota=body.quota,
            admin=body.admin,
        )
        if issued is None:  # pragma: no cover - groups were refused above
            raise Denied("no key was issued", reason="malformed")
        doc = {"key_id": issued.key_id, "principal": issued.principal, "key": issued.secret}
        return JSONResponse(doc, status_code=201)

    return await audited(request, "admin.keys.create", None, work)


@router.get("/keys")
async def list_keys(request: Request) -> Response:
    deployment = gateway_of(request).deployment

    async def work(call: Call) -> Response:
        actor = await call.admin()

        def listing() -> list[dict[str, Any]]:
            return [
                {
                    "key_id": k.key_id,
                    "principal": k.principal,
                    "active": k.active,
                    "grants": [
                        f"{g.role}:{g.models}" for g in deployment.identity.grants_of(k.principal)
                    ],
                }
                for k in deployment.admin.list_keys(actor.name)
            ]

        return JSONResponse(await call.delegate(listing))

    return await audited(request, "admin.keys.list", None, work)


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: str, request: Request) -> Response:
    admin = gateway_of(request).deployment.admin

    async def work(call: Call) -> Response:
        actor = await call.admin()
        await call.delegate(admin.revoke_key, actor.name, key_id)
        return JSONResponse({"revoked": key_id})

    return await audited(request, "admin.keys.revoke", key_id, work)
