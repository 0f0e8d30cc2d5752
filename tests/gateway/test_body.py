"""Reading a request body: bounded in size and in idle time, whole or in chunks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import ClientDisconnect, Request

from atlasguard.gateway import http
from atlasguard.runtime.pipeline import Denied


def _request(
    messages: list[dict[str, Any]], headers: dict[str, str] | None = None, *, stall: bool = False
) -> Request:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        if stall:
            await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    return Request(scope, receive)


async def _chunks(request: Request, limit: int) -> bytes:
    return b"".join([c async for c in http.body_chunks(request, limit)])


READERS: list[Callable[[Request, int], Awaitable[bytes]]] = [http.read_body, _chunks]


@pytest.mark.parametrize("read", READERS)
@settings(max_examples=50, deadline=None)
@given(parts=st.lists(st.binary(max_size=64), min_size=1, max_size=6), limit=st.integers(0, 200))
def test_the_body_is_whole_or_refused_past_the_limit(
    read: Callable[[Request, int], Awaitable[bytes]], parts: list[bytes], limit: int
) -> None:
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]
    whole = b"".join(parts)
    if len(whole) > limit:
        with pytest.raises(Denied) as refused:
            asyncio.run(read(_request(messages), limit))
        assert refused.value.reason == "too-large"
    else:
        assert asyncio.run(read(_request(messages), limit)) == whole


@pytest.mark.parametrize("read", READERS)
def test_a_declared_length_past_the_limit_is_refused_before_reading(
    read: Callable[[Request, int], Awaitable[bytes]],
) -> None:
    request = _request([], {"content-length": "101"}, stall=True)
    with pytest.raises(Denied) as refused:
        asyncio.run(read(request, 100))
    assert refused.value.reason == "too-large"


@pytest.mark.parametrize("read", READERS)
def test_a_body_that_stops_arriving_is_a_timeout(
    read: Callable[[Request, int], Awaitable[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "BODY_IDLE_SECONDS", 0.05)
    request = _request([{"type": "http.request", "body": b"{", "more_body": True}], stall=True)
    with pytest.raises(Denied) as refused:
        asyncio.run(read(request, 100))
    assert refused.value.reason == "timeout"


@pytest.mark.parametrize("read", READERS)
def test_a_client_that_leaves_mid_body_ends_the_read(
    read: Callable[[Request, int], Awaitable[bytes]],
) -> None:
    request = _request([{"type": "http.request", "body": b"{", "more_body": True}])
    with pytest.raises(ClientDisconnect):
        asyncio.run(read(request, 100))
