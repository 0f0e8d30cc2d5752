"""Tar archives (plain; ``.tar.gz``/``.bz2``/``.xz`` arrive here through the compressed scanner).

Every regular member is handed to the dispatcher as a window of the archive
(nothing copied), whatever its name: the legacy PyTorch tar format (members
``sys_info``, ``pickle``, ``storages``, ``tensors``) needs no special case.
Links, device files and names that escape the extraction directory are
findings. A header the standard library cannot parse ends the walk with an
``unreadable`` finding: what follows it was not examined.

>>> import io, tarfile
>>> from atlasguard.artifacts.formats.tar import SCANNERS
>>> buf = io.BytesIO()
>>> with tarfile.open(fileobj=buf, mode="w") as tf:
...     tf.addfile(tarfile.TarInfo("empty"))
>>> SCANNERS[0].sniff(buf.getvalue()[:4096])
True
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable
from typing import BinaryIO

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats._spool import stream_size, view
from atlasguard.artifacts.formats.base import (
    FormatScanner,
    LimitExceeded,
    ScanContext,
    limit_finding,
    unreadable_finding,
)
from atlasguard.artifacts.formats.zip import escapes_archive

__all__ = ["SCANNERS", "TarScanner", "valid_header"]


def valid_header(block: bytes) -> bool:
    """True when ``block`` is a tar header block with a correct checksum (v7, ustar, GNU)."""
    if len(block) < 512 or not block[0]:
        return False
    field = block[148:156].replace(b"\0", b" ").strip()
    try:
        recorded = int(field, 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:512])
    signed = unsigned - 2 * sum(b for b in block[:148] + block[156:512] if b > 127)
    return recorded in (unsigned, signed)


class TarScanner:
    """Every member of a tar archive."""

    name = "tar"

    def sniff(self, head: bytes) -> bool:
        return valid_header(head[:512])

    def scan(self, stream: BinaryIO, ctx: ScanContext) -> Iterable[Finding]:
        size = stream_size(stream)
        stream.seek(0)
        try:
            archive = tarfile.open(fileobj=stream, mode="r:")  # noqa: SIM115
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            yield unreadable_finding(f"tar archive cannot be opened: {exc}", ctx.location(0))
            return
        count = 0
        offset = 0
        try:
            while True:
                ctx.check_time()
                try:
                    member = archive.next()
                except (tarfile.TarError, EOFError, OSError, ValueError, UnicodeError) as exc:
                    yield unreadable_finding(
                        f"tar header after offset {offset} cannot be read ({exc}); the rest "
                        "of the archive was not examined",
                        ctx.location(offset),
                    )
                    return
                if member is None:
                    return
                count += 1
                if count > ctx.limits.max_members:
                    yield limit_finding(
                        LimitExceeded(f"more than {ctx.limits.max_members} members", ctx.location())
                    )
                    return
                offset = member.offset
                getattr(archive, "members", []).clear()  # tarfile keeps every header otherwise
                yield from self._member(stream, size, member, ctx)
        finally:
            archive.close()

    def _member(
        self, stream: BinaryIO, size: int, member: tarfile.TarInfo, ctx: ScanContext
    ) -> Iterable[Finding]:
        where = ctx.location(member.offset, inner=member.name)
        if escapes_archive(member.name):
            yield Finding(
                rule="archive-path-escape",
                severity=Severity.HIGH,
                message=f"member name {member.name!r} escapes the extraction directory",
                location=where,
            )
        if member.issym() or member.islnk():
            target = member.linkname
            # A symlink's relative target is resolved from the link's own directory.
            escapes = (
                escapes_archive(_join(member.name, target))
                if member.issym() and not target.startswith(("/", "\\"))
                else escapes_archive(target)
            )
            yield Finding(
                rule="archive-link",
                severity=Severity.HIGH if escapes else Severity.MEDIUM,
                message=f"member {member.name!r} is a link to {target!r}"
                + (", outside the archive" if escapes else ""),
                location=where,
            )
            return
        if member.ischr() or member.isblk() or member.isfifo():
            yield Finding(
                rule="archive-special-file",
                severity=Severity.MEDIUM,
                message=f"member {member.name!r} is a device or FIFO",
                location=where,
            )
            return
        if not member.isfile():
            return
        if member.offset_data + member.size > size:
            yield unreadable_finding(
                f"member {member.name!r} claims {member.size} bytes, past the end of the file",
                where,
            )
        if member.sparse:
            yield unreadable_finding(
                f"member {member.name!r} is a sparse file, scanned as stored",
                where,
                severity=Severity.MEDIUM,
            )
        data = view(stream, member.offset_data, min(member.size, size - member.offset_data))
        try:
            yield from ctx.scan_member(data, member.name)
        finally:
            data.close()


def _join(member: str, target: str) -> str:
    """Where a relative symlink ``member -> target`` points, from the archive root."""
    parts = member.replace("\\", "/").split("/")[:-1]
    for part in target.replace("\\", "/").split("/"):
        if part == "..":
            if not parts:
                return "../" + target
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


SCANNERS: tuple[FormatScanner, ...] = (TarScanner(),)
