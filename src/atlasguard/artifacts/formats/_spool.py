"""Shared plumbing for container scanners: bounded views, spooling, streaming decompression.

Containers hand their members to the dispatcher as seekable streams. A member
stored uncompressed is a :class:`RangeReader` over the container (nothing is
copied); a compressed one is decompressed chunk by chunk into a spooled
temporary file, every chunk charged to the per-file budget so a zip bomb hits
a limit instead of the disk or the memory.

>>> import io
>>> view = RangeReader(io.BytesIO(b"0123456789"), 2, 5)
>>> view.read()
b'23456'
"""

from __future__ import annotations

import io
import tempfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO, BinaryIO, Protocol, cast

from atlasguard.artifacts.findings import Location
from atlasguard.artifacts.formats.base import LimitExceeded, ScanContext

__all__ = [
    "CHUNK",
    "LZMA_MEMLIMIT",
    "DecompressError",
    "Decompressor",
    "RangeReader",
    "RatioExceeded",
    "Readable",
    "ZlibDecompressor",
    "as_binary",
    "decompress_to_spool",
    "iter_chunks",
    "new_spool",
    "stream_size",
    "view",
]

CHUNK = 1024 * 1024
"""Read and decompression granularity."""

LZMA_MEMLIMIT = 512 * 1024 * 1024
"""Memory an LZMA/xz decoder may use; hostile headers may ask for gigabytes."""

_RATIO_FLOOR = 1024 * 1024  # the ratio limit applies once a member is larger than this


class RatioExceeded(LimitExceeded):
    """One member's compression ratio is beyond the limit: skip it, keep scanning the rest."""


class DecompressError(Exception):
    """The compressed data is corrupt; ``produced`` bytes were recovered before the error."""

    def __init__(self, message: str, produced: int) -> None:
        super().__init__(message)
        self.produced = produced


class Decompressor(Protocol):
    """What :func:`decompress_to_spool` needs: the zlib/bz2/lzma decompressor interface."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = ...) -> bytes: ...


def stream_size(stream: BinaryIO) -> int:
    """Size of a seekable stream; leaves the position unchanged."""
    pos = stream.tell()
    size = stream.seek(0, io.SEEK_END)
    stream.seek(pos)
    return size


def new_spool(ctx: ScanContext) -> IO[bytes]:
    """A temporary file that stays in memory up to ``ctx.limits.spool_bytes``."""
    return tempfile.SpooledTemporaryFile(max_size=ctx.limits.spool_bytes)


class RangeReader(io.RawIOBase):
    """A read-only, seekable window ``[start, start + length)`` of another stream.

    The underlying stream is shared; every read seeks it first, so nested
    scanners may interleave reads on several views safely.
    """

    def __init__(self, base: BinaryIO, start: int, length: int) -> None:
        super().__init__()
        self._base = base
        self._start = start
        self._length = max(0, length)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._length + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        want = min(len(buffer), self._length - self._pos)
        if want <= 0:
            return 0
        self._base.seek(self._start + self._pos)
        data = self._base.read(want)
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._length - self._pos
        size = max(0, min(size, self._length - self._pos))
        if size == 0:
            return b""
        self._base.seek(self._start + self._pos)
        data = self._base.read(size)
        self._pos += len(data)
        return data


class Readable(Protocol):
    """Anything with ``read(n)``: files, spools, :class:`RangeReader`."""

    def read(self, size: int = ..., /) -> bytes: ...


def view(base: BinaryIO, start: int, length: int) -> BinaryIO:
    """A buffered, seekable read-only window of ``base`` (see :class:`RangeReader`)."""
    return io.BufferedReader(RangeReader(base, start, length), buffer_size=64 * 1024)


def as_binary(spool: IO[bytes]) -> BinaryIO:
    """A spool typed as the ``BinaryIO`` the dispatcher takes (it is one at run time)."""
    return cast(BinaryIO, spool)


def iter_chunks(stream: Readable, length: int | None, ctx: ScanContext) -> Iterator[bytes]:
    """Yield ``length`` bytes (or everything, when ``None``) from ``stream`` in chunks."""
    remaining = length
    while remaining is None or remaining > 0:
        ctx.check_time()
        want = CHUNK if remaining is None else min(CHUNK, remaining)
        data = stream.read(want)
        if not data:
            return
        if remaining is not None:
            remaining -= len(data)
        yield data


def decompress_to_spool(
    chunks: Iterator[bytes],
    decompressor: Decompressor,
    ctx: ScanContext,
    location: Location,
    *,
    sink: IO[bytes] | None = None,
    on_output: Callable[[bytes], None] | None = None,
    multi_stream: Callable[[], Decompressor] | None = None,
) -> tuple[IO[bytes], int, int]:
    """Decompress ``chunks`` into a spool, bounded; return ``(spool, consumed, produced)``.

    ``consumed`` counts compressed bytes actually used (trailing data after the
    end of the stream is not counted). With ``multi_stream`` a new decompressor
    is started on the data following each end of stream (gzip, bz2 and xz
    members concatenated, as their command-line tools do). Raises
    :class:`RatioExceeded` on a bomb, :class:`LimitExceeded` when the
    per-file budget is spent and :class:`DecompressError` on corrupt data (the
    spool then holds what was recovered, at ``exc.produced`` bytes).
    """
    spool = sink if sink is not None else new_spool(ctx)
    try:
        consumed, produced = _pump(
            chunks, decompressor, ctx, location, spool, on_output, multi_stream
        )
    except BaseException:
        if sink is None:  # ours: the caller never sees it
            spool.close()
        raise
    spool.seek(0)
    return spool, consumed, produced


def _pump(
    chunks: Iterator[bytes],
    decompressor: Decompressor,
    ctx: ScanContext,
    location: Location,
    spool: IO[bytes],
    on_output: Callable[[bytes], None] | None,
    multi_stream: Callable[[], Decompressor] | None,
) -> tuple[int, int]:
    consumed = 0
    produced = 0
    ratio = ctx.limits.max_compression_ratio

    def emit(out: bytes) -> None:
        nonlocal produced
        if not out:
            return
        produced += len(out)
        ctx.charge(len(out))
        if produced > _RATIO_FLOOR and produced > ratio * max(consumed, 1):
            raise RatioExceeded(
                f"compression ratio above {ratio:g} ({produced} bytes from {consumed})",
                location,
            )
        if on_output is not None:
            on_output(out)
        spool.write(out)

    def step(data: bytes) -> bytes:
        try:
            # Bounded output per call: a few input bytes may expand enormously.
            return decompressor.decompress(data, CHUNK)
        except Exception as exc:  # zlib.error, lzma.LZMAError, OSError, EOFError
            raise DecompressError(str(exc) or type(exc).__name__, produced) from exc

    for chunk in chunks:
        data = chunk
        while data:
            ctx.check_time()
            consumed += len(data)
            emit(step(data))
            while not decompressor.eof:  # drain output held back by the bound
                ctx.check_time()
                out = step(b"")
                if not out:
                    break
                emit(out)
            data = b""
            if decompressor.eof:
                rest = decompressor.unused_data or b""
                consumed -= len(rest)
                if multi_stream is None or not rest.strip(b"\0"):
                    return consumed, produced
                decompressor = multi_stream()
                data = rest
    if not decompressor.eof:
        raise DecompressError("compressed stream ends before its end marker", produced)
    return consumed, produced


class ZlibDecompressor:
    """``zlib.decompressobj`` behind the bz2/lzma interface (``decompress(b"", n)`` drains)."""

    def __init__(self, wbits: int) -> None:
        self._d = zlib.decompressobj(wbits)
        self._tail = b""

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        data = self._tail + data if self._tail else data
        out = self._d.decompress(data, max_length)
        self._tail = self._d.unconsumed_tail
        return out
