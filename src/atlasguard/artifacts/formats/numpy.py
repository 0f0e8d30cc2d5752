"""NumPy ``.npy`` arrays (``.npz`` archives arrive here member by member from the zip scanner).

The header is a Python dict literal, read with :func:`ast.literal_eval` over a
bounded length (never ``eval``). An array whose dtype holds Python objects
(``|O``, or a structured dtype with an ``O`` field) stores its payload as a
pickle: ``numpy.load`` needs ``allow_pickle=True`` for it, and the payload is
handed to the dispatcher so the pickle scanner examines it.

>>> from atlasguard.artifacts.formats.numpy import parse_header
>>> parse_header(b"{'descr': '|O', 'fortran_order': False, 'shape': (2,), }")["descr"]
'|O'
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any, BinaryIO

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats._spool import stream_size, view
from atlasguard.artifacts.formats.base import FormatScanner, ScanContext, unreadable_finding

__all__ = ["SCANNERS", "NpyScanner", "has_object_dtype", "parse_header"]

_MAGIC = b"\x93NUMPY"
_MAX_HEADER = 1024 * 1024  # numpy itself refuses more than 10,000 bytes by default
_MAX_DESCR_DEPTH = 32


class NpyHeaderError(ValueError):
    """The ``.npy`` header is not what numpy writes."""


def parse_header(text: bytes) -> dict[str, Any]:
    """The header dict of a ``.npy`` file, checked for the three keys numpy needs."""
    try:
        value = ast.literal_eval(text.decode("utf-8"))
    except (ValueError, SyntaxError, UnicodeDecodeError, RecursionError, MemoryError) as exc:
        raise NpyHeaderError(f"header is not a Python literal: {exc}") from None
    if not isinstance(value, dict) or not {"descr", "fortran_order", "shape"} <= value.keys():
        raise NpyHeaderError("header is not a dict with descr, fortran_order and shape")
    return value


def has_object_dtype(descr: object, depth: int = 0) -> bool:
    """True when a ``dtype.descr`` holds Python objects anywhere (so the payload is a pickle).

    The descriptor is read as ``numpy.load`` reads it, by NumPy's own
    ``descr_to_dtype`` (``'i4,O'``, ``'(1,)O'`` and ``[('a', '(2,)O')]`` all hold
    objects; its parsing never imports or unpickles). Anything NumPy cannot
    read either is judged by its text, and anything unrecognised counts as
    object: another NumPy version may read it in a way the scanner does not foresee.
    """
    if depth == 0 and (numpy_says := _numpy_hasobject(descr)) is not None:
        return numpy_says
    if depth > _MAX_DESCR_DEPTH:
        return True
    if isinstance(descr, str):
        kind = descr.lstrip("<>|=")
        return "O" in kind or "object" in kind
    if isinstance(descr, list):
        for field in descr:
            if not isinstance(field, tuple) or len(field) < 2:
                return True
            if has_object_dtype(field[1], depth + 1):
                return True
        return False
    return True


def _numpy_hasobject(descr: object) -> bool | None:
    """``hasobject`` of the dtype ``numpy.load`` builds from ``descr``; None if it cannot."""
    try:
        from numpy.lib.format import descr_to_dtype

        return bool(descr_to_dtype(descr).hasobject)  # type: ignore[arg-type]
    except Exception:  # ValueError, TypeError, RecursionError...: judged by its text
        return None


class NpyScanner:
    """A ``.npy`` array: object dtypes mean a pickle payload."""

    name = "numpy"

    def sniff(self, head: bytes) -> bool:
        return head.startswith(_MAGIC)

    def scan(self, stream: BinaryIO, ctx: ScanContext) -> Iterable[Finding]:
        size = stream_size(stream)
        stream.seek(0)
        prefix = stream.read(12)
        major = prefix[6] if len(prefix) > 6 else 0
        if major == 1 and len(prefix) >= 10:
            length, start = int.from_bytes(prefix[8:10], "little"), 10
        elif major in (2, 3) and len(prefix) >= 12:
            length, start = int.from_bytes(prefix[8:12], "little"), 12
        else:
            yield unreadable_finding(
                f".npy version {major} header cannot be read",
                ctx.location(6),
                severity=Severity.MEDIUM,
            )
            return
        if length > min(_MAX_HEADER, ctx.limits.max_header_bytes) or start + length > size:
            yield unreadable_finding(
                f".npy header of {length} bytes is too large or past the end of the file",
                ctx.location(8),
                severity=Severity.MEDIUM,
            )
            return
        stream.seek(start)
        try:
            header = parse_header(stream.read(length))
        except NpyHeaderError as exc:
            yield unreadable_finding(f".npy {exc}", ctx.location(start), severity=Severity.MEDIUM)
            return
        if not has_object_dtype(header["descr"]):
            return
        data_start = start + length
        yield Finding(
            rule="numpy-object-dtype",
            severity=Severity.MEDIUM,
            message=f"array of dtype {header['descr']!r} holds Python objects: its payload is "
            "a pickle and loading it needs allow_pickle=True",
            location=ctx.location(data_start),
        )
        payload = view(stream, data_start, size - data_start)
        try:
            yield from ctx.scan_member(payload, "<object-array-pickle>")
        finally:
            payload.close()


SCANNERS: tuple[FormatScanner, ...] = (NpyScanner(),)
