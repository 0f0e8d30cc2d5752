"""Request heads: too large, too many headers or too slow is refused before the application."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

import atlasguard.gateway.protocol as protocol
from atlasguard.gateway.protocol import GuardedHttpToolsProtocol

CALLS: list[str] = []


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    CALLS.append(scope["path"])
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok %d" % len(body)})


@pytest.fixture
def port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(protocol, "HEAD_SECONDS", 0.5)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="error", http=GuardedHttpToolsProtocol
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    CALLS.clear()
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(10)


def _exchange(port: int, raw: bytes, *, pause: float = 0.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        if pause:
            time.sleep(pause)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_an_ordinary_request_and_a_large_body_pass(port: int) -> None:
    body = b"x" * (1 << 20)  # the head limit is not a body limit
    head = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
    answer = _exchange(port, head % len(body) + body)
    assert answer.startswith(b"HTTP/1.1 200") and b"ok %d" % len(body) in answer


def test_a_huge_header_is_431_and_never_reaches_the_app(port: int) -> None:
    raw = b"GET /big HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    assert _exchange(port, raw).startswith(b"HTTP/1.1 431")
    assert "/big" not in CALLS


def test_an_unfinished_huge_header_is_refused_before_it_ends(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(64):  # 4 MiB of a header that never ends
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed while we were still sending
        answer = sock.recv(4096)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431")
    assert "/slow" not in CALLS


def test_too_many_headers_is_431(port: int) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    raw = b"GET /many HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    assert _exchange(port, raw).startswith(b"HTTP/1.1 431")
    assert "/many" not in CALLS


def test_a_head_that_does_not_finish_in_time_is_408(port: int) -> None:
    answer = _exchange(port, b"GET /late HTTP/1.1\r\nHost: x\r\n", pause=1.0)
    assert answer.startswith(b"HTTP/1.1 408")
    assert "/late" not in CALLS


def test_keep_alive_requests_each_get_a_fresh_head_budget(port: int) -> None:
    one = b"GET /k HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 40_000 + b"\r\n\r\n"
    last = b"GET /k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = _exchange(port, one + one + last)  # 80 KB of heads in all, 40 KB each
    assert answer.count(b"HTTP/1.1 200") == 3
