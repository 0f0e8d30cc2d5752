"""Limits on what comes before a request's body: its size, its headers, its time.

Uvicorn's httptools protocol buffers a request head of any size for as long as
a client cares to send it: one 64 MiB header was answered, and a few unfinished
ones held hundreds of MiB. :class:`GuardedHttpToolsProtocol` refuses a head
larger than ``MAX_HEAD_BYTES`` or with more than ``MAX_HEADERS`` headers with
``431 Request Header Fields Too Large``, and one not complete within
``HEAD_SECONDS`` of its first byte with ``408 Request Timeout``; either way the
connection is closed and nothing reaches the application.

``atlasguard serve`` runs Uvicorn with this protocol.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HEAD_SECONDS", "MAX_HEADERS", "MAX_HEAD_BYTES", "GuardedHttpToolsProtocol"]

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
HEAD_SECONDS = 10.0

_END = b"\r\n\r\n"
_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Uvicorn's httptools protocol, refusing heads that are too large, too many or too slow."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._tail = b""
        self._headers_seen = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._in_head and data:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(HEAD_SECONDS, self._refuse, 408)
            window = self._tail + data
            end = window.find(_END)
            if end < 0:
                self._head_bytes += len(data)
                self._tail = window[-(len(_END) - 1) :]
            else:  # the head ends in this chunk: count only up to its end
                self._head_bytes += end + len(_END) - len(self._tail)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(431)
                return
        super().data_received(data)
        if self._headers_seen > MAX_HEADERS:
            self._refuse(431)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers_seen += 1
        if self._headers_seen <= MAX_HEADERS:  # past it: refused once this chunk is parsed
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._end_head()
        if self._headers_seen <= MAX_HEADERS:  # else no request starts: refused above
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._headers_seen <= MAX_HEADERS:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._headers_seen > MAX_HEADERS:
            return
        super().on_message_complete()
        # A keep-alive connection's next request starts with a new head.
        self._in_head, self._head_bytes, self._tail, self._headers_seen = True, 0, b"", 0

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        super().connection_lost(exc)

    def _end_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int) -> None:
        self._end_head()
        if self.transport.is_closing():
            return
        body = _REASONS[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()
