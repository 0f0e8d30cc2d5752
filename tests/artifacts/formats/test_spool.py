"""Shared container plumbing: windows, bounded streaming decompression."""

from __future__ import annotations

import io
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.findings import Location
from atlasguard.artifacts.formats._spool import (
    DecompressError,
    RangeReader,
    RatioExceeded,
    ZlibDecompressor,
    decompress_to_spool,
    iter_chunks,
    view,
)
from atlasguard.artifacts.formats.base import LimitExceeded, Limits, ScanContext


def ctx(**limits: float) -> ScanContext:
    return ScanContext(
        limits=Limits(**limits),
        allow=frozenset(),  # type: ignore[arg-type]
        dispatch=lambda s, c: [],
    )


@given(st.binary(max_size=200), st.integers(0, 250), st.integers(0, 250), st.data())
def test_range_reader_matches_slicing(
    data: bytes, start: int, length: int, draw: st.DataObject
) -> None:
    reader = RangeReader(io.BytesIO(data), start, length)
    expected = data[start : start + length]
    assert reader.read() == expected
    at = draw.draw(st.integers(0, len(expected) + 3))
    reader.seek(at)
    assert reader.read(5) == expected[at : at + 5]
    buffered = view(io.BytesIO(data), start, length)
    assert buffered.read() == expected


def test_multi_stream_and_trailing_data() -> None:
    data = zlib.compress(b"a" * 100) + zlib.compress(b"b" * 50) + b"\0\0"
    c = ctx()
    spool, consumed, produced = decompress_to_spool(
        iter(iter_chunks(io.BytesIO(data), None, c)),
        ZlibDecompressor(15),
        c,
        Location(),
        multi_stream=lambda: ZlibDecompressor(15),
    )
    with spool:
        assert spool.read() == b"a" * 100 + b"b" * 50
    assert produced == 150
    assert consumed == len(data) - 2


def test_ratio_and_budget_and_corruption() -> None:
    bomb = zlib.compress(b"\0" * (8 << 20))
    c = ctx()
    with pytest.raises(RatioExceeded):
        decompress_to_spool(iter([bomb]), ZlibDecompressor(15), c, Location())
    c = ctx(max_decompressed_bytes=1000)
    with pytest.raises(LimitExceeded):
        decompress_to_spool(iter([zlib.compress(b"x" * 5000)]), ZlibDecompressor(15), c, Location())
    with pytest.raises(DecompressError) as info:
        decompress_to_spool(
            iter([zlib.compress(b"y" * 5000)[:-8]]), ZlibDecompressor(15), ctx(), Location()
        )
    assert info.value.produced > 0


@settings(max_examples=100, deadline=2000)
@given(st.binary(max_size=300))
def test_garbage_raises_only_decompress_error(raw: bytes) -> None:
    try:
        spool, _c, _p = decompress_to_spool(iter([raw]), ZlibDecompressor(15), ctx(), Location())
    except DecompressError:
        return
    spool.close()
