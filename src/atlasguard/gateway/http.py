"""HTTP translation, in one place: refusal reasons to statuses, credentials, bodies.

The runtime refuses with a :class:`~atlasguard.runtime.pipeline.Denied` and a
stable reason; :data:`STATUS` is the one table that turns each reason into an
HTTP status, and :func:`refusal` the one function that builds the answer
(``WWW-Authenticate`` on 401, ``Retry-After`` and the ``RateLimit-*`` headers of
draft-ietf-httpapi-ratelimit-headers on 429). Bodies are read through
:func:`read_body`, bounded, and only after the caller is authenticated.

>>> STATUS["unauthenticated"], STATUS["rate"], STATUS["too-large"]
(401, 429, 413)
"""

from __future__ import annotations

import asyncio
import math
import re
import tempfile
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from atlasguard.errors import UnsafeArtifactError
from atlasguard.runtime.pipeline import REASONS, Denied, Limit, Reason

if TYPE_CHECKING:
    from atlasguard.gateway.service import Gateway

__all__ = [
    "STATUS",
    "body_chunks",
    "clean",
    "client_of",
    "credential_of",
    "gateway_of",
    "ratelimit_headers",
    "read_body",
    "refusal",
]

STATUS: Mapping[Reason, int] = {
    "unauthenticated": 401,
    "throttled": 429,
    "forbidden": 403,
    "not-found": 404,
    "malformed": 400,
    "too-large": 413,
    "unsupported-media": 415,
    "invalid-input": 422,
    "over-limit": 422,
    "rate": 429,
    "quota": 429,
    "suspended": 403,
    "detected": 422,
    "unsafe": 422,
    "refused": 422,
    "unavailable": 503,
    "audit-unavailable": 503,
    "model-error": 500,
    "upstream": 502,
    "timeout": 408,
}
"""The HTTP status of every refusal reason (a test checks that none is missing)."""

# Where the server keeps private copies: never shown to a client.
_SERVER_PATH = re.compile(
    rf"(?:{re.escape(tempfile.gettempdir())}|\S*/(?:\.)?atlasguard-[a-z]+-[^/\s]+)/(?:[^/\s]+/)*"
)

if set(STATUS) != set(REASONS):  # pragma: no cover - caught by the tests
    raise RuntimeError("gateway.http.STATUS and runtime.pipeline.REASONS disagree")


def gateway_of(request: Request) -> Gateway:
    """The gateway an application serves (``app.state.gateway``)."""
    gateway: Gateway = request.app.state.gateway
    return gateway


def credential_of(request: Request) -> str | None:
    """The API key or token from ``Authorization: Bearer`` or ``X-API-Key``."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.headers.get("x-api-key")


def client_of(request: Request) -> str:
    """The peer's address, for the audit record's details."""
    return request.client.host if request.client else "-"


def ratelimit_headers(limits: tuple[Limit, ...]) -> dict[str, str]:
    """``RateLimit-Limit/-Remaining/-Reset`` for the limit closest to exhaustion, plus
    ``RateLimit-Policy`` listing every limit (draft-ietf-httpapi-ratelimit-headers-06)."""
    if not limits:
        return {}
    # The draft asks for the policy with the lowest remaining quota when several apply.
    closest = min(limits, key=lambda w: (w.remaining, w.reset or math.inf))
    headers = {
        "RateLimit-Limit": str(closest.limit),
        "RateLimit-Remaining": str(closest.remaining),
    }
    if closest.reset is not None:
        headers["RateLimit-Reset"] = str(max(0, math.ceil(closest.reset)))
    headers["RateLimit-Policy"] = ", ".join(
        f"{w.limit};w={math.ceil(w.window)}" if w.window else str(w.limit) for w in limits
    )
    return headers


def clean(message: str) -> str:
    """A message fit to send: no server paths (temporary directories), encodable text."""
    text = _SERVER_PATH.sub("", message)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def refusal(denied: Denied) -> JSONResponse:
    """The HTTP answer to a refusal: its status, ``{"error", "reason"}``, and headers.

    A refusal caused by a scan carries its findings as data (``findings``:
    file, rule, severity, message).
    """
    headers = ratelimit_headers(denied.limits)
    if denied.reason == "unauthenticated":
        headers["WWW-Authenticate"] = 'Bearer realm="atlasguard"'
    if denied.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(denied.retry_after)))
    doc: dict[str, object] = {"error": clean(str(denied)), "reason": denied.reason}
    cause = denied.__cause__
    if isinstance(cause, UnsafeArtifactError) and cause.findings:
        doc["error"] = clean(str(cause).splitlines()[0].rstrip(":"))
        doc["findings"] = [
            {
                "file": clean(path),
                "rule": f.rule,
                "severity": f.severity.label,
                "message": clean(f.message),
            }
            for path, f in cause.findings
        ]
    return JSONResponse(doc, status_code=STATUS[denied.reason], headers=headers)


def too_large(limit: int) -> Denied:
    return Denied(f"request body larger than {limit} bytes", reason="too-large")


BODY_IDLE_SECONDS = 30.0
"""A body that stops arriving for this long is refused (``timeout``, 408)."""


async def body_chunks(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body as it arrives, refused with ``too-large`` once past ``limit`` bytes.

    A body that stalls for :data:`BODY_IDLE_SECONDS` is refused with ``timeout``.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    size = 0
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(BODY_IDLE_SECONDS) as idle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                idle.reschedule(loop.time() + BODY_IDLE_SECONDS)
                yield chunk
    except TimeoutError:
        raise Denied(
            f"the request body stopped arriving for {BODY_IDLE_SECONDS:g} s", reason="timeout"
        ) from None


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (``Denied(too-large)`` beyond).

    The same rules as :func:`body_chunks`, without its generator: the common
    one-message body costs one ``receive`` and no timer reschedule.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_IDLE_SECONDS) as idle:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
                idle.reschedule(asyncio.get_running_loop().time() + BODY_IDLE_SECONDS)
    except TimeoutError:
        raise Denied(
            f"the request body stopped arriving for {BODY_IDLE_SECONDS:g} s", reason="timeout"
        ) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
