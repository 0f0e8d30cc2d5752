"""safetensors: no code, but a header worth checking.

A safetensors file is an 8-byte little-endian header length, a JSON header
and a byte buffer. The format runs no code; its risks are parsers that
disagree (duplicate keys, overlapping or out-of-bounds ranges, sizes that do
not match the dtype) and data hidden in gaps or after the last tensor. Each
is a ``safetensors-header`` finding; hidden bytes are handed to the dispatcher.

>>> import json, struct
>>> from atlasguard.artifacts.formats.safetensors import SCANNERS
>>> head = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
>>> SCANNERS[0].sniff(struct.pack("<Q", len(head)) + head)
True
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats._spool import stream_size, view
from atlasguard.artifacts.formats.base import FormatScanner, ScanContext

__all__ = ["DTYPE_BITS", "SCANNERS", "SafetensorsScanner"]

_ABSOLUTE_MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's own limit
_HEADER_START = re.compile(rb'\{\s*"(?:[^"\\\x00-\x1f]|\\.){0,1024}"\s*:')

DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "C64": 64,
    "I64": 64, "U64": 64, "F64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip
"""Bits per element of each dtype the reference implementation knows."""


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def _finding(
    message: str, ctx: ScanContext, offset: int | None = None, severity: Severity = Severity.HIGH
) -> Finding:
    return Finding(
        rule="safetensors-header", severity=severity, message=message, location=ctx.location(offset)
    )


def _is_uint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class SafetensorsScanner:
    """Header sanity of a safetensors file."""

    name = "safetensors"

    def sniff(self, head: bytes) -> bool:
        if len(head) < 10:
            return False
        n = int.from_bytes(head[:8], "little")
        # Lengths over the limit are recognised (and reported) up to 4 GiB.
        if not 2 <= n < 1 << 32:
            # Larger declared headers are refused by every reader; and pickles of a dict
            # ('}q\x00X' + length) would otherwise read as a length of a few gigabytes.
            return False
        # The header is a JSON object of tensor names: '{"name":' (or '{}' for no tensors).
        return bool(_HEADER_START.match(head, 8)) or (head[8:10] == b"{}" and n <= 16)

    def scan(self, stream: BinaryIO, ctx: ScanContext) -> Iterable[Finding]:
        size = stream_size(stream)
        stream.seek(0)
        n = int.from_bytes(stream.read(8), "little")
        limit = min(ctx.limits.max_header_bytes, _ABSOLUTE_MAX_HEADER)
        if n > limit:
            yield _finding(f"header of {n} bytes is larger than the {limit}-byte limit", ctx, 0)
            return
        if 8 + n > size:
            yield _finding(f"header of {n} bytes runs past the end of the file", ctx, 0)
            return
        try:
            header = json.loads(stream.read(n).decode("utf-8"), object_pairs_hook=_no_duplicates)
        except _Duplicate as exc:
            yield _finding(f"header names {exc} twice: readers disagree on which applies", ctx, 8)
            return
        except (ValueError, RecursionError) as exc:
            yield _finding(f"header is not valid UTF-8 JSON: {exc}", ctx, 8)
            return
        if not isinstance(header, dict):
            yield _finding("header is not a JSON object", ctx, 8)
            return
        buffer = size - 8 - n
        ranges: list[tuple[int, int, str]] = []
        for name, info in header.items():
            ctx.check_time()
            if name == "__metadata__":
                yield from self._metadata(info, ctx)
                continue
            problem = self._tensor(name, info, buffer)
            if problem:
                yield _finding(problem, ctx, 8)
            else:
                begin, end = info["data_offsets"]
                ranges.append((begin, end, name))
        yield from self._layout(stream, ranges, buffer, 8 + n, ctx)

    def _metadata(self, info: object, ctx: ScanContext) -> Iterator[Finding]:
        if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
            yield _finding("__metadata__ is not a string-to-string map", ctx, 8, Severity.MEDIUM)

    def _tensor(self, name: str, info: object, buffer: int) -> str | None:
        if not isinstance(info, dict):
            return f"tensor {name!r}: entry is not an object"
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
            return f"tensor {name!r}: unknown dtype {dtype!r}"
        if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
            return f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers"
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_uint(o) for o in offsets)
            or offsets[0] > offsets[1]
        ):
            return f"tensor {name!r}: data_offsets {offsets!r} is not [begin, end]"
        if offsets[1] > buffer:
            return f"tensor {name!r}: data_offsets {offsets} past the {buffer}-byte buffer"
        bits = math.prod(shape) * DTYPE_BITS[dtype]
        if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
            return (
                f"tensor {name!r}: {offsets[1] - offsets[0]} bytes but shape {shape} of "
                f"{dtype} needs {bits / 8:g}"
            )
        return None

    def _layout(
        self,
        stream: BinaryIO,
        ranges: list[tuple[int, int, str]],
        buffer: int,
        base: int,
        ctx: ScanContext,
    ) -> Iterator[Finding]:
        ranges.sort()
        cursor = 0
        for begin, end, name in ranges:
            ctx.check_time()
            if begin < cursor:
                yield _finding(f"tensor {name!r} overlaps the previous tensor", ctx, base + begin)
            elif begin > cursor:
                yield from self._hidden(stream, base + cursor, begin - cursor, ctx)
            cursor = max(cursor, end)
        if cursor < buffer:
            yield from self._hidden(stream, base + cursor, buffer - cursor, ctx)

    def _hidden(
        self, stream: BinaryIO, start: int, length: int, ctx: ScanContext
    ) -> Iterator[Finding]:
        yield _finding(
            f"{length} bytes at offset {start} belong to no tensor", ctx, start, Severity.MEDIUM
        )
        data = view(stream, start, length)
        try:
            yield from ctx.scan_member(data, f"<unclaimed@{start}>")
        finally:
            data.close()


SCANNERS: tuple[FormatScanner, ...] = (SafetensorsScanner(),)
