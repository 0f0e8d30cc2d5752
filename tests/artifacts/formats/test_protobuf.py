"""The bounded protobuf wire reader."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.formats._protobuf import (
    LEN,
    VARINT,
    ProtoError,
    Source,
    head_fields,
    iter_fields,
    printable,
    read_text,
)


def test_fields_and_nesting() -> None:
    inner = b"\x0a\x02hi"  # field 1, "hi"
    msg = b"\x08\x96\x01" + b"\x12" + bytes([len(inner)]) + inner + b"\x1d\x00\x00\x80\x3f"
    src = Source.from_bytes(msg)
    fields = list(iter_fields(src, 0, src.size))
    assert [(f.number, f.wire, f.value) for f in fields] == [(1, VARINT, 150), (2, LEN, 4)]
    nested = list(iter_fields(src, fields[1].start, fields[1].end))
    assert read_text(src, nested[0]) == "hi"
    assert head_fields(msg)[:2] == [(1, 0, 150, 3), (2, 2, 4, 5)]  # type: ignore[index]


@pytest.mark.parametrize(
    "bad",
    [b"\x12\x05ab", b"\x0b", b"\x00\x01", b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"],
)
def test_malformed(bad: bytes) -> None:
    src = Source.from_bytes(bad)
    with pytest.raises(ProtoError):
        list(iter_fields(src, 0, src.size))


def test_window_reads_beyond_cache() -> None:
    big = b"\x0a" + b"\x80\x80\x04" + b"x" * 65536  # one 65536-byte string field
    src = Source.from_bytes(big)
    (field,) = iter_fields(src, 0, src.size)
    assert field.end - field.start == 65536
    assert read_text(src, field, 70000) == "x" * 65536
    assert printable(b"skl2onnx")
    assert not printable(b"\x0a\x02")


@settings(max_examples=200, deadline=2000)
@given(st.binary(max_size=400))
def test_random_bytes(raw: bytes) -> None:
    head_fields(raw)
    src = Source.from_bytes(raw)
    try:
        for f in iter_fields(src, 0, src.size):
            if f.wire == LEN:
                list(iter_fields(src, f.start, f.end))
    except ProtoError:
        pass
