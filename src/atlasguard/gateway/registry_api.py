"""``/v1/registry``: the registry over HTTP, for the gateway's own principals.

Thin routes over :class:`atlasguard.registry.service.Registry`: the caller is
authenticated exactly like an inference request (API key or JWT) and every
decision — allow or deny, reads included — is the registry's and is audited by
it. Refusals never say whether an object exists.
"""

from __future__ import annotations

import dataclasses
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from atlasguard.registry.model import Kind
from atlasguard.runtime.pipeline import Denied

if TYPE_CHECKING:
    from atlasguard.gateway.service import Gateway
    from atlasguard.registry.service import Registry

__all__ = ["registry_router"]


class PromoteRequest(BaseModel):
    alias: str = Field(min_length=1, max_length=100)


def _plain(value: Any) -> Any:
    data = dataclasses.asdict(value)
    return {
        k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, tuple) else v)
        for k, v in data.items()
    }


def registry_router(gateway: Gateway, registry: Registry, credential_of: Any) -> APIRouter:
    """The routes, bound to one gateway (for authentication) and its registry."""
    from atlasguard.identity.store import AuthenticationError
    from atlasguard.registry.access import AccessDeniedError

    router = APIRouter(prefix="/v1/registry")

    def who(request: Request) -> str:
        try:
            return gateway.access.authenticate(credential_of(request)).name
        except AuthenticationError as exc:
            raise Denied(
                f"authentication failed: {exc}",
                status=401,
                reason="unauthenticated",
                headers={"WWW-Authenticate": 'Bearer realm="atlasguard"'},
            ) from None

    def call(fn: Any, *args: Any) -> Any:  # the registry's refusals, as HTTP answers
        try:
            return fn(*args)
        except AccessDeniedError as exc:
            raise Denied(str(exc), status=403, reason="forbidden") from None

    @router.get("")
    async def list_objects(request: Request, kind: Kind | None = None) -> list[dict[str, Any]]:
        principal = await run_in_threadpool(who, request)

        def listing() -> list[Any]:
            return list(call(lambda: registry.list(principal, kind=kind)))

        return [_plain(o) for o in await run_in_threadpool(listing)]

    @router.get("/{ref}")
    async def show(ref: str, request: Request) -> dict[str, Any]:
        principal = await run_in_threadpool(who, request)
        obj, version = await run_in_threadpool(call, registry.show, principal, ref)
        return {"object": _plain(obj), "version": _plain(version)}

    @router.post("/{ref}/promote")
    async def promote(ref: str, body: PromoteRequest, request: Request) -> dict[str, Any]:
        principal = await run_in_threadpool(who, request)
        version = await run_in_threadpool(call, registry.promote, principal, ref, body.alias)
        return {"alias": body.alias, "version": _plain(version)}

    @router.get("/{ref}/content")
    async def content(ref: str, request: Request) -> StreamingResponse:
        principal = await run_in_threadpool(who, request)

        def pull_as_tar() -> tempfile.SpooledTemporaryFile[bytes]:
            with tempfile.TemporaryDirectory(prefix="atlasguard-pull-") as tmp:
                dest = Path(tmp) / "object"
                call(registry.pull, principal, ref, dest)  # re-verified before it leaves
                # closed by the response's generator once streamed
                spool: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
                    max_size=16 << 20
                )
                with tarfile.open(fileobj=spool, mode="w") as tar:
                    tar.add(dest, arcname=ref.split("@", 1)[0])
                spool.seek(0)
                return spool

        spool = await run_in_threadpool(pull_as_tar)

        def chunks() -> Iterator[bytes]:
            try:
                while block := spool.read(1 << 20):
                    yield block
            finally:
                spool.close()

        name = ref.replace("@", "-").replace(":", "-")
        return StreamingResponse(
            chunks(),
            media_type="application/x-tar",
            headers={"Content-Disposition": f'attachment; filename="{name}.tar"'},
        )

    return router
