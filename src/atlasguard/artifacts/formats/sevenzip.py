"""7z archives, through ``py7zr`` (imported only when a 7z file is met).

Each member is extracted into a spooled temporary file, bounded by the per-file
decompression budget, and handed to the dispatcher. Without ``py7zr`` the
archive is reported ``unreadable``: a file the scanner cannot open may still
be opened by whoever receives it.

>>> from atlasguard.artifacts.formats.sevenzip import SCANNERS
>>> SCANNERS[0].sniff(b"7z\\xbc\\xaf\\x27\\x1c\\x00\\x04")
True
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any, BinaryIO

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats._spool import as_binary
from atlasguard.artifacts.formats.base import (
    FormatScanner,
    LimitExceeded,
    ScanContext,
    limit_finding,
    unreadable_finding,
)
from atlasguard.artifacts.formats.zip import escapes_archive

__all__ = ["SCANNERS", "SevenZipScanner"]

_MAGIC = b"7z\xbc\xaf\x27\x1c"


class _Sink:
    """A py7zr writer that spools one member, charging every byte to the budget."""

    def __init__(self, ctx: ScanContext) -> None:
        self.ctx = ctx
        # py7zr extracts every member before we scan any: keep each one small in memory.
        self.spool: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=min(ctx.limits.spool_bytes, 1 << 20)
        )
        self.written = 0

    def write(self, data: bytes) -> int:
        self.ctx.check_time()
        self.ctx.charge(len(data))
        self.written += len(data)
        return self.spool.write(data)

    def read(self, size: int | None = None) -> bytes:
        return self.spool.read(size if size is not None else -1)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.spool.seek(offset, whence)

    def flush(self) -> None:
        self.spool.flush()

    def size(self) -> int:
        return self.written

    def close(self) -> None:
        """py7zr closes its writers; the spool must outlive that until it is scanned."""


class _Factory:
    """py7zr's ``WriterFactory``: one :class:`_Sink` per member name."""

    def __init__(self, ctx: ScanContext) -> None:
        self.ctx = ctx
        self.sinks: dict[str, _Sink] = {}

    def create(self, filename: str) -> _Sink:
        sink = _Sink(self.ctx)
        old = self.sinks.pop(filename, None)
        if old is not None:
            old.spool.close()
        self.sinks[filename] = sink
        return sink


class SevenZipScanner:
    """Every member of a 7z archive."""

    name = "7z"

    def sniff(self, head: bytes) -> bool:
        return head[:6] == _MAGIC

    def scan(self, stream: BinaryIO, ctx: ScanContext) -> Iterable[Finding]:
        where = ctx.location(0)
        try:
            import py7zr  # lazy: an optional dependency
        except ImportError:
            yield unreadable_finding("7z support needs py7zr", where)
            return
        try:
            archive = py7zr.SevenZipFile(stream, mode="r")
        except Exception as exc:  # py7zr raises many types on malformed input
            yield unreadable_finding(f"7z archive cannot be opened: {exc}", where)
            return
        with archive:
            yield from self._members(archive, ctx)

    def _members(self, archive: Any, ctx: ScanContext) -> Iterator[Finding]:
        where = ctx.location(0)
        try:
            infos = archive.list()
        except Exception as exc:  # malformed headers
            yield unreadable_finding(f"7z archive listing cannot be read: {exc}", where)
            return
        if len(infos) > ctx.limits.max_members:
            yield limit_finding(LimitExceeded(f"more than {ctx.limits.max_members} members", where))
            return
        for info in infos:
            name = str(info.filename)
            if escapes_archive(name):
                yield Finding(
                    rule="archive-path-escape",
                    severity=Severity.HIGH,
                    message=f"member name {name!r} escapes the extraction directory",
                    location=ctx.location(inner=name),
                )
            if getattr(info, "is_symlink", False):
                yield Finding(
                    rule="archive-link",
                    severity=Severity.MEDIUM,
                    message=f"member {name!r} is a symbolic link",
                    location=ctx.location(inner=name),
                )
        factory = _Factory(ctx)
        try:
            try:
                archive.extractall(factory=factory)
            except LimitExceeded:
                raise
            except Exception as exc:  # corrupt data, unsupported filters, passwords
                yield unreadable_finding(
                    f"7z data cannot be extracted in full: {type(exc).__name__}: {exc}; "
                    "what was extracted is scanned",
                    where,
                )
            for name, sink in factory.sinks.items():
                ctx.check_time()
                sink.spool.seek(0)
                yield from ctx.scan_member(as_binary(sink.spool), name)
        finally:
            for sink in factory.sinks.values():
                sink.spool.close()


SCANNERS: tuple[FormatScanner, ...] = (SevenZipScanner(),)
