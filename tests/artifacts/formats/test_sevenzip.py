"""7z scanner: members reached through py7zr, missing py7zr reported."""

from __future__ import annotations

import builtins
import io
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats.sevenzip import SCANNERS

py7zr = pytest.importorskip("py7zr")
PAYLOAD = b"\x80\x04cos\nsystem\n."
Scan = Callable[..., list[Finding]]


def make_7z(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(data, name)
    return buf.getvalue()


def test_members_reached(scan: Scan) -> None:
    found = scan(make_7z({"model/data.pkl": PAYLOAD, "readme.txt": b"hello"}))
    assert {(f.rule, f.location.member) for f in found} == {("stand-in-pickle", "model/data.pkl")}


def test_benign(scan: Scan) -> None:
    assert scan(make_7z({"a.txt": b"hello", "b.txt": b"world"})) == []


def test_missing_py7zr_is_unreadable(scan: Scan, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "py7zr":
            raise ImportError("no py7zr")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    found = scan(make_7z({"a": b"x"}))
    assert [(f.rule, f.message) for f in found] == [("unreadable", "7z support needs py7zr")]
    assert found[0].severity == Severity.HIGH


SEED = make_7z({"a/data.pkl": PAYLOAD, "b.txt": b"hello" * 40})


@settings(max_examples=60, deadline=3000)
@given(st.data())
def test_mutated_7z_never_raise(
    run_scanner: Callable[..., list[Finding]], data: st.DataObject
) -> None:
    raw = bytearray(SEED)
    for _ in range(data.draw(st.integers(0, 6))):
        at = data.draw(st.integers(6, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    run_scanner(SCANNERS[0], bytes(raw))


def test_7z_budget_is_enforced(scan: Scan) -> None:
    from atlasguard.artifacts.formats.base import Limits

    data = make_7z({"a.bin": b"\0" * (4 << 20), "b.pkl": PAYLOAD})
    found = scan(data, limits=Limits(max_decompressed_bytes=1 << 20))
    assert {f.rule for f in found} & {"limit-exceeded", "unreadable"}
    assert max(f.severity for f in found) >= Severity.HIGH
