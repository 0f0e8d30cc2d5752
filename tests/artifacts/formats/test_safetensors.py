"""safetensors header checks: real files clean, each malformation reported."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats.base import Limits
from atlasguard.artifacts.formats.safetensors import SCANNERS

Scan = Callable[..., list[Finding]]


def messages(findings: list[Finding]) -> str:
    return " | ".join(f.message for f in findings)


def build(header: Any, buffer: bytes = b"", raw: bytes | None = None) -> bytes:
    body = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(body)) + body + buffer


def tensor(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def test_real_file_is_clean(tmp_path: Path, scan_file: Scan) -> None:
    st_numpy = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "model.safetensors"
    st_numpy.save_file(
        {"w": np.ones((3, 4), np.float32), "b": np.zeros(5, np.int64), "h": np.ones(7, np.float16)},
        str(path),
        metadata={"format": "np"},
    )
    assert scan_file(path) == []


@pytest.mark.parametrize(
    ("header", "buffer", "expect"),
    [
        ({"w": tensor("F99", [1], 0, 4)}, b"\0" * 4, "unknown dtype"),
        ({"w": tensor("F32", [-1], 0, 4)}, b"\0" * 4, "non-negative"),
        ({"w": tensor("F32", [2], 0, 4)}, b"\0" * 4, "needs 8"),
        ({"w": tensor("F32", [1], 0, 4)}, b"", "past the"),
        ({"w": tensor("F32", [1], 4, 0)}, b"\0" * 4, "not [begin, end]"),
        ({"a": tensor("F32", [2], 0, 8), "b": tensor("F32", [1], 4, 8)}, b"\0" * 8, "overlaps"),
        ({"w": tensor("U8", [1], 0, 1), "__metadata__": {"k": 1}}, b"\0", "string-to-string"),
        ([1, 2], b"", "not a JSON object"),
    ],
)
def test_malformed_headers(
    run_scanner: Callable[..., list[Finding]], header: Any, buffer: bytes, expect: str
) -> None:
    found = run_scanner(SCANNERS[0], build(header, buffer))
    assert expect in messages(found)
    assert {f.rule for f in found} <= {"safetensors-header", "stand-in-pickle"}


def test_duplicate_key_and_bad_utf8(scan: Scan) -> None:
    dup = b'{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "w": 1}'
    assert "twice" in messages(scan(build(None, b"\0", raw=dup)))
    assert "UTF-8" in messages(scan(build(None, b"", raw=b'{"\xff": 1}')))


def test_hidden_bytes_reported_and_dispatched(scan: Scan) -> None:
    hidden = b"\x80\x04cos\nsystem\n."
    found = scan(build({"w": tensor("F32", [1], 0, 4)}, b"\0" * 4 + hidden))
    assert {f.rule for f in found} == {"safetensors-header", "stand-in-pickle"}
    assert max(f.severity for f in found if f.rule == "safetensors-header") == Severity.MEDIUM


def test_header_size_limit(scan: Scan) -> None:
    data = build({"w": tensor("U8", [1], 0, 1), "__metadata__": {"pad": "x" * 5000}}, b"\0")
    assert "limit" in messages(scan(data, limits=Limits(max_header_bytes=1000)))
    huge = struct.pack("<Q", 50 * 1024**2) + b'{"w": {'
    assert "past the end" in messages(scan(huge))
    over = struct.pack("<Q", (100 << 20) + 1) + b'{"w": {}}'
    assert "larger than" in messages(scan(over))


@settings(max_examples=200, deadline=2000)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-5, 2**70) | st.text(max_size=6),
        lambda kids: (
            st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4)
        ),
        max_leaves=20,
    ),
    st.binary(max_size=64),
)
def test_random_headers_never_raise(
    run_scanner: Callable[..., list[Finding]], header: Any, buffer: bytes
) -> None:
    run_scanner(SCANNERS[0], build(header, buffer))


@settings(max_examples=100, deadline=2000)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(run_scanner: Callable[..., list[Finding]], raw: bytes) -> None:
    run_scanner(SCANNERS[0], raw)


@pytest.mark.parametrize("protocol", range(6))
@pytest.mark.parametrize(
    "value", [8, {'{"a": 1}': 2}, {'{"(1, 2)": 3': b"x"}, [1, 2], {}, "text", 1.5]
)
def test_pickles_are_not_claimed(value: Any, protocol: int) -> None:
    import pickle

    from atlasguard.artifacts.formats.onnx import SCANNERS as ONNX

    head = pickle.dumps(value, protocol=protocol)[:4096]
    assert not SCANNERS[0].sniff(head)
    assert not ONNX[0].sniff(head)
