"""A small, bounded protobuf wire-format reader (ONNX, SavedModel), with no generated code.

Fields are read by offset from a seekable stream through a small window, so a
multi-gigabyte ONNX model with embedded weights is walked without reading its
``raw_data``: only the messages the scanners descend into are touched. Every
length is checked against the enclosing message; anything malformed raises
:class:`ProtoError`.

>>> src = Source.from_bytes(b"\\x08\\x07\\x12\\x03abc")
>>> [(f.number, f.wire, f.value) for f in iter_fields(src, 0, src.size)]
[(1, 0, 7), (2, 2, 3)]
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

__all__ = [
    "LEN",
    "VARINT",
    "Field",
    "ProtoError",
    "Source",
    "head_fields",
    "iter_fields",
    "printable",
    "read_text",
]

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
_WINDOW = 64 * 1024


class ProtoError(ValueError):
    """The bytes are not a well-formed protobuf message."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field: ``value`` is the integer for varints, the payload length otherwise.

    ``start``/``end`` delimit the payload of a length-delimited field.
    """

    number: int
    wire: int
    value: int
    start: int
    end: int


class Source:
    """Random access to a stream through a small read window."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self._stream = stream
        self.size = size
        self._base = 0
        self._buf = b""

    @classmethod
    def from_bytes(cls, data: bytes) -> Source:
        return cls(io.BytesIO(data), len(data))

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` (fewer at the end of the stream)."""
        rel = offset - self._base
        if rel >= 0 and rel + n <= len(self._buf):
            return self._buf[rel : rel + n]
        self._stream.seek(offset)
        if n > _WINDOW:
            return self._stream.read(n)
        self._buf = self._stream.read(_WINDOW)
        self._base = offset
        return self._buf[:n]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ProtoError("truncated or overlong varint")
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return result, pos
        shift += 7


def iter_fields(src: Source, start: int, end: int) -> Iterator[Field]:
    """The fields of the message at ``[start, end)``; groups are refused."""
    pos = start
    end = min(end, src.size)
    while pos < end:
        head = src.read(pos, 20)
        key, used = _varint(head, 0)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError(f"field number 0 at offset {pos}")
        if wire == VARINT:
            value, used2 = _varint(head, used)
            pos += used2
            yield Field(number, wire, value, pos, pos)
        elif wire == LEN:
            length, used2 = _varint(head, used)
            payload = pos + used2
            if payload + length > end:
                raise ProtoError(f"field {number} at offset {pos} runs past its message")
            pos = payload + length
            yield Field(number, wire, length, payload, pos)
        elif wire in (I64, I32):
            size = 8 if wire == I64 else 4
            if pos + used + size > end:
                raise ProtoError(f"field {number} at offset {pos} runs past its message")
            pos += used + size
        else:
            raise ProtoError(f"unsupported wire type {wire} at offset {pos}")
    if pos != end:
        raise ProtoError("message does not end on a field boundary")


def read_text(src: Source, field: Field, limit: int = 4096) -> str:
    """A string field, at most ``limit`` bytes of it, decoded leniently."""
    return src.read(field.start, min(field.end - field.start, limit)).decode("utf-8", "replace")


def head_fields(head: bytes, max_fields: int = 64) -> list[tuple[int, int, int, int]] | None:
    """The top-level fields visible in a message prefix, as ``(number, wire, value, start)``.

    The last field may be cut off by the end of ``head``. ``None`` when the
    prefix is not protobuf-shaped.
    """
    out: list[tuple[int, int, int, int]] = []
    pos = 0
    try:
        while pos < len(head) and len(out) < max_fields:
            key, pos = _varint(head, pos)
            number, wire = key >> 3, key & 7
            if number == 0 or number > 536_870_911:
                return None
            if wire == VARINT:
                value, pos = _varint(head, pos)
                out.append((number, wire, value, pos))
            elif wire == LEN:
                length, pos = _varint(head, pos)
                out.append((number, wire, length, pos))
                pos += length
            elif wire in (I64, I32):
                out.append((number, wire, 0, pos))
                pos += 8 if wire == I64 else 4
            else:
                return None
    except ProtoError:
        return out or None  # cut off mid-varint at the end of the prefix
    return out


def printable(data: bytes) -> bool:
    """True when ``data`` is printable UTF-8 text (a name, not a nested message)."""
    try:
        return data.decode("utf-8").isprintable()
    except UnicodeDecodeError:
        return False
