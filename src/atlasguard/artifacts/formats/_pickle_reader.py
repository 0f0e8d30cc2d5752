"""Buffered forward reading of a pickle stream, and the error for a malformed one.

The reader keeps at most about one chunk in memory and skips large
arguments with a seek, never reading them.

>>> import io
>>> r = Reader(io.BytesIO(b"cos\\nsystem\\n"), 0, 12)
>>> r.take(1), r.line(), r.line()
(b'c', b'os', b'system')
"""

from __future__ import annotations

from typing import BinaryIO

__all__ = ["CHUNK", "MAX_LINE", "Malformed", "Reader"]

CHUNK = 1 << 20
MAX_LINE = 1 << 16


class Malformed(Exception):
    """The stream is not a pickle ``pickle`` could load past this offset."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class Reader:
    """Buffered forward reader over a seekable stream, from ``start`` to ``end``."""

    def __init__(self, stream: BinaryIO, start: int, end: int) -> None:
        self.stream = stream
        self.end = end
        self.base = start
        self.buf = b""
        self.pos = 0
        stream.seek(start)

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def fill(self, n: int) -> bool:
        """Make ``n`` bytes available at ``pos``; False at end of stream."""
        have = len(self.buf) - self.pos
        if have >= n:
            return True
        self.base += self.pos
        want = max(n - have, CHUNK)
        more = self.stream.read(min(want, max(self.end - self.base - have, 0)))
        self.buf = self.buf[self.pos :] + more
        self.pos = 0
        return len(self.buf) >= n

    def at_eof(self) -> bool:
        return not self.fill(1)

    def take(self, n: int) -> bytes:
        if not self.fill(n):
            raise Malformed("pickle data was truncated", self.offset)
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        """Skip ``n`` bytes without reading them into memory."""
        if len(self.buf) - self.pos >= n:
            self.pos += n
            return
        target = self.offset + n
        if target > self.end:
            raise Malformed("pickle data was truncated", self.offset)
        self.stream.seek(target)
        self.base, self.buf, self.pos = target, b"", 0

    def line(self) -> bytes | None:
        """One ``\\n``-terminated line without the newline; ``None`` when too long to keep."""
        search = self.pos
        while True:
            nl = self.buf.find(b"\n", search)
            if nl >= 0:
                data = self.buf[self.pos : nl]
                self.pos = nl + 1
                return data if len(data) <= MAX_LINE else None
            pending = len(self.buf) - self.pos
            if pending > MAX_LINE:
                self._drop_line()
                return None
            if not self.fill(pending + 4096) and len(self.buf) - self.pos == pending:
                raise Malformed("pickle data was truncated", self.offset)
            search = self.pos + pending

    def _drop_line(self) -> None:
        """Skip the rest of an over-long line without keeping it."""
        while True:
            self.base += len(self.buf)
            self.buf, self.pos = self.stream.read(min(CHUNK, max(self.end - self.base, 0))), 0
            if not self.buf:
                raise Malformed("pickle data was truncated", self.offset)
            nl = self.buf.find(b"\n")
            if nl >= 0:
                self.pos = nl + 1
                return
