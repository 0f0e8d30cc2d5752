"""One request, one audit record: the wrapper every gateway route runs in.

:func:`audited` runs a route's work with a :class:`Call` — the request's
:class:`~atlasguard.runtime.auditor.Outcome`, its authentication and
authorization — and, whatever happens, records the outcome through the
deployment's auditor before the answer leaves: allowed, refused for any
reason (a :class:`~atlasguard.runtime.pipeline.Denied`, translated by
:func:`~atlasguard.gateway.http.refusal`), or failed (500, with no detail of
the server's internals). An answer whose record cannot be written becomes a
503. Routes whose work is audited by the library they call (the registry)
mark the call ``delegated``: then only refusals decided before the hand-over
are recorded here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from atlasguard.gateway.http import client_of, credential_of, gateway_of, refusal
from atlasguard.gateway.metrics import Metrics
from atlasguard.gateway.service import Gateway
from atlasguard.identity.store import PrincipalRecord
from atlasguard.runtime.auditor import Outcome
from atlasguard.runtime.pipeline import Denied, Principal, new_request_id
from atlasguard.runtime.protect import ModelError

__all__ = ["Call", "audited"]

logger = logging.getLogger("atlasguard.gateway")

_MAX_NAME = 200  # characters of a name from the URL kept in the audit record
T = TypeVar("T")


class Call:
    """One request in progress: who is asking, and what its audit record will say."""

    def __init__(self, request: Request, gateway: Gateway, action: str, name: str | None) -> None:
        self.request = request
        self.gateway = gateway
        self.outcome = Outcome(
            action=action,
            model=name[:_MAX_NAME] if name is not None else None,
            request_id=new_request_id(),
            details={"client": client_of(request)},
        )
        self.delegated = False  # a library that audits its own decisions was called

    async def delegate(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn`` — a library call that records its own decision — in a thread.

        Its refusals come back as :class:`Denied` marked as recorded, so that
        :func:`audited` does not record them twice; ``translate`` maps the
        library's own exceptions to refusals.
        """
        try:
            result = await run_in_threadpool(fn, *args, **kwargs)
        except Denied as denied:
            denied.recorded = True
            raise
        except Exception as exc:
            refused = self.translate(exc)
            if refused is None:
                raise
            refused.recorded = True
            raise refused from exc
        self.delegated = True
        return result

    def translate(self, exc: Exception) -> Denied | None:
        """The refusal a library exception stands for (``None``: a server failure)."""
        from atlasguard.errors import UnsafeArtifactError, UsageError, VerificationError
        from atlasguard.registry.access import AccessDeniedError

        if isinstance(exc, AccessDeniedError):
            return Denied(str(exc), reason="forbidden")
        if isinstance(exc, UnsafeArtifactError):
            return Denied(str(exc), reason="unsafe")
        if isinstance(exc, VerificationError):
            return Denied(str(exc), reason="refused")
        if isinstance(exc, LookupError):
            return Denied(str(exc), reason="not-found")
        if isinstance(exc, UsageError):
            return Denied(str(exc), reason="malformed")
        return None

    async def authenticate(self) -> PrincipalRecord:
        """The caller's principal (``Denied(unauthenticated)``), from memory when possible."""
        access = self.gateway.deployment.access
        credential = credential_of(self.request)
        record = access.authenticate_cached(credential)
        if record is None:
            client = client_of(self.request)
            record = await run_in_threadpool(access.authenticate, credential, client=client)
        self.outcome.principal = record.name
        return record

    async def authorize(self, name: str) -> Principal:
        """Authenticate, then require a grant on ``name`` (``Denied(forbidden)``)."""
        record = await self.authenticate()
        access = self.gateway.deployment.access
        principal = access.authorize_cached(record, name)
        if principal is None:
            principal = await run_in_threadpool(access.authorize, record, name)
        return principal

    async def admin(self) -> PrincipalRecord:
        """Authenticate an admin principal (``Denied(forbidden)`` for anyone else)."""
        record = await self.authenticate()
        if not record.is_admin:
            raise Denied("forbidden: admin only", reason="forbidden")
        return record


async def audited(
    request: Request,
    action: str,
    name: str | None,
    work: Callable[[Call], Awaitable[Response]],
) -> Response:
    """Run ``work``; record its outcome (durably) before its answer leaves."""
    gateway = gateway_of(request)
    with gateway.deployment.auditor.coming():  # the audit writer waits for this record
        return await _audited(request, gateway, action, name, work)


async def _audited(
    request: Request,
    gateway: Gateway,
    action: str,
    name: str | None,
    work: Callable[[Call], Awaitable[Response]],
) -> Response:
    call = Call(request, gateway, action, name)
    outcome = call.outcome
    try:
        response = await work(call)
    except ModelError as exc:
        logger.error("model %s failed: %r", name, exc.__cause__)
        outcome.fail()
        response = refusal(exc)
    except Denied as denied:
        outcome.refuse(denied.reason)
        response = refusal(denied)
        if denied.recorded:  # the library refused it and recorded it
            return _counted(request, action, outcome, response)
    except Exception:
        logger.exception("%s %s failed", action, name)
        outcome.fail("error")
        response = JSONResponse(
            {"error": "the server failed on this request", "reason": "error"}, status_code=500
        )
    else:
        if call.delegated:
            return _counted(request, action, outcome, response)
    try:
        await gateway.deployment.auditor.arecord(outcome)
    except Denied as unavailable:
        outcome.refuse(unavailable.reason)
        response = refusal(unavailable)
    response.headers["X-Request-Id"] = outcome.request_id or ""
    return _counted(request, action, outcome, response)


def _counted(request: Request, action: str, outcome: Outcome, response: Response) -> Response:
    metrics: Metrics | None = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.count(action, outcome)
    return response
