"""NumPy scanner: object dtypes found (also inside .npz), payload dispatched, headers bounded."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats.numpy import SCANNERS, has_object_dtype

Scan = Callable[..., list[Finding]]


def rules(findings: list[Finding], at_least: Severity = Severity.INFO) -> set[str]:
    return {f.rule for f in findings if f.severity >= at_least}


def npy(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    if version is None:
        np.save(buf, array, allow_pickle=True)
    else:
        np.lib.format.write_array(buf, array, version=version, allow_pickle=True)
    return buf.getvalue()


@pytest.mark.parametrize(
    "array",
    [
        np.arange(10, dtype=np.float32),
        np.zeros((3, 4), dtype=np.int64),
        np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
        np.array(["text"]),
    ],
)
def test_plain_arrays_give_nothing(scan: Scan, array: np.ndarray) -> None:
    assert scan(npy(array)) == []


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_object_array_payload_dispatched(scan: Scan, version: tuple[int, int]) -> None:
    found = scan(npy(np.array([{"a": 1}, None], dtype=object), version))
    assert rules(found) == {"numpy-object-dtype", "stand-in-pickle"}
    pickle_hit = next(f for f in found if f.rule == "stand-in-pickle")
    assert pickle_hit.location.member == "<object-array-pickle>"


def test_structured_object_field(scan: Scan) -> None:
    arr = np.array([(1, "x")], dtype=[("a", "<i4"), ("b", "O")])
    assert "numpy-object-dtype" in rules(scan(npy(arr)))


def test_npz_members_reach_numpy_scanner(scan: Scan) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, ok=np.arange(3), bad=np.array([None], dtype=object))
    found = scan(buf.getvalue())
    assert {f.location.member for f in found if f.rule == "numpy-object-dtype"} == {"bad.npy"}
    assert not rules(found, Severity.HIGH) - {"stand-in-pickle"}


def test_descr_classification() -> None:
    assert has_object_dtype("|O")
    assert has_object_dtype([("a", [("b", "O")])])
    assert has_object_dtype({"weird": 1})
    assert not has_object_dtype([("a", "<f4", (2,))])


@pytest.mark.parametrize(
    "header", [b"__import__('os')", b"{'descr': '<f4'}", b"\xff\xfe", b"(" * 5000]
)
def test_malformed_header_is_unreadable(scan: Scan, header: bytes) -> None:
    data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    assert rules(scan(data)) == {"unreadable"}


@settings(max_examples=100, deadline=2000)
@given(st.binary(max_size=300), st.integers(1, 4))
def test_random_headers_never_raise(
    run_scanner: Callable[..., list[Finding]], body: bytes, major: int
) -> None:
    size = len(body).to_bytes(2 if major == 1 else 4, "little")
    run_scanner(SCANNERS[0], b"\x93NUMPY" + bytes([major, 0]) + size + body)
