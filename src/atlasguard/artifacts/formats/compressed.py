"""Compressed streams: gzip, bz2, xz, raw lzma, zlib, joblib's ``ZF`` files and lz4 frames.

These are the compressors joblib writes (``joblib.dump(obj, f, compress=...)``
with ``zlib``, ``gzip``, ``bz2``, ``xz``, ``lzma`` or ``lz4``; see
``joblib/compressor.py``), and the outer layers of ``.tar.gz`` and friends.
Each is recognised by its magic bytes and, for the weak magics (zlib, raw
lzma), by decompressing the first bytes. The stream is decompressed chunk by
chunk into a spool, every byte charged to the per-file budget, and the result
handed to the dispatcher, so the pickle inside a compressed joblib file, or the
tar inside a ``.tar.xz``, is examined by its own scanner.

>>> import gzip
>>> from atlasguard.artifacts.formats.compressed import SCANNERS
>>> [s.name for s in SCANNERS if s.sniff(gzip.compress(b"data"))]
['gzip']
"""

from __future__ import annotations

import bz2
import lzma
from collections.abc import Callable, Iterable
from typing import BinaryIO

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats._spool import (
    LZMA_MEMLIMIT,
    DecompressError,
    Decompressor,
    RatioExceeded,
    ZlibDecompressor,
    as_binary,
    decompress_to_spool,
    iter_chunks,
    new_spool,
)
from atlasguard.artifacts.formats.base import (
    FormatScanner,
    ScanContext,
    limit_finding,
    unreadable_finding,
)

__all__ = ["SCANNERS", "CompressedScanner"]

_JOBLIB_ZF = b"ZF"
_ZF_HEADER = 2 + len(f"{2**64:#x}")  # "ZF" + the hex length, padded (joblib <= 0.9.2)
_LZ4_MAGIC = b"\x04\x22\x4d\x18"


def _zlib_header_ok(head: bytes) -> bool:
    return (
        len(head) >= 2
        and head[0] & 0x0F == 8
        and head[0] >> 4 <= 7
        and (head[0] << 8 | head[1]) % 31 == 0
        and not head[1] & 0x20  # no preset dictionary: nobody writes one for a file
    )


def _trial(factory: Callable[[], Decompressor], data: bytes) -> bool:
    """True when ``data`` starts a valid stream (decompresses without error, some output)."""
    try:
        return bool(factory().decompress(data, 64))
    except Exception:  # any decoder error means "not this format"
        return False


def _lzma_alone_header_ok(head: bytes) -> bool:
    if len(head) < 13 or head[0] != 0x5D:
        return False
    dict_size = int.from_bytes(head[1:5], "little")
    plausible = any(dict_size in (1 << n, 3 << (n - 1)) for n in range(12, 32))
    usize = int.from_bytes(head[5:13], "little")
    return plausible and (usize == 2**64 - 1 or usize < 1 << 48)


def _xz() -> Decompressor:
    return lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=LZMA_MEMLIMIT)


def _lzma_alone() -> Decompressor:
    return lzma.LZMADecompressor(lzma.FORMAT_ALONE, memlimit=LZMA_MEMLIMIT)


def _lz4() -> Decompressor:
    import lz4.frame  # lazy: an optional dependency

    decompressor: Decompressor = lz4.frame.LZ4FrameDecompressor()
    return decompressor


def _zf_offset(head: bytes) -> int:
    return _ZF_HEADER + 1 if head[_ZF_HEADER : _ZF_HEADER + 1] == b" " else _ZF_HEADER


class CompressedScanner:
    """One compression format: sniff its magic, decompress bounded, dispatch the content."""

    def __init__(
        self,
        name: str,
        sniff: Callable[[bytes], bool],
        factory: Callable[[], Decompressor],
        *,
        skip: Callable[[bytes], int] | None = None,
        multi: bool = False,
    ) -> None:
        self.name = name
        self._sniff = sniff
        self._factory = factory
        self._skip = skip
        self._multi = multi

    def sniff(self, head: bytes) -> bool:
        try:
            return self._sniff(head)
        except ImportError:
            return False

    def scan(self, stream: BinaryIO, ctx: ScanContext) -> Iterable[Finding]:
        where = ctx.location()
        try:
            decompressor = self._factory()
        except ImportError as exc:
            yield unreadable_finding(f"{self.name} support needs {exc.name or 'a package'}", where)
            return
        if self._skip is not None:
            stream.seek(self._skip(stream.read(64)))
        spool = new_spool(ctx)
        try:
            try:
                decompress_to_spool(
                    iter_chunks(stream, None, ctx),
                    decompressor,
                    ctx,
                    where,
                    sink=spool,
                    multi_stream=self._factory if self._multi else None,
                )
            except DecompressError as exc:
                # A loader streams too: what decompressed before the error may run, so scan it.
                yield unreadable_finding(
                    f"{self.name} data is corrupt after {exc.produced} bytes ({exc}); "
                    "the recovered part is scanned",
                    where,
                    severity=Severity.MEDIUM,
                )
            except RatioExceeded as exc:
                yield limit_finding(exc)
            spool.seek(0)
            yield from ctx.scan_member(as_binary(spool), f"<{self.name}>")
        finally:
            spool.close()


SCANNERS: tuple[FormatScanner, ...] = (
    CompressedScanner(
        "gzip", lambda h: h[:3] == b"\x1f\x8b\x08", lambda: ZlibDecompressor(31), multi=True
    ),
    CompressedScanner(
        "bz2",
        lambda h: (
            h[:3] == b"BZh"
            and h[3:4] in tuple(b"%d" % i for i in range(1, 10))
            and h[4:10] in (b"1AY&SY", b"\x17\x72\x45\x38\x50\x90")
        ),
        bz2.BZ2Decompressor,
        multi=True,
    ),
    CompressedScanner(
        "xz",
        lambda h: h[:6] == b"\xfd7zXZ\x00",
        _xz,
        multi=True,
    ),
    CompressedScanner(
        "lzma",
        lambda h: _lzma_alone_header_ok(h) and _trial(_lzma_alone, h),
        _lzma_alone,
    ),
    CompressedScanner("lz4", lambda h: h[:4] == _LZ4_MAGIC, _lz4, multi=True),
    CompressedScanner(
        "joblib-zfile",
        lambda h: (
            h[:2] == _JOBLIB_ZF
            and all(c in b"0123456789abcdefx " for c in h[2:_ZF_HEADER])
            and _trial(lambda: ZlibDecompressor(15), h[_zf_offset(h) :])
        ),
        lambda: ZlibDecompressor(15),
        skip=_zf_offset,
    ),
    CompressedScanner(
        "zlib",
        lambda h: _zlib_header_ok(h) and _trial(lambda: ZlibDecompressor(15), h),
        lambda: ZlibDecompressor(15),
    ),
)
"""Sniffed in this order; all must come before the pickle scanner."""
