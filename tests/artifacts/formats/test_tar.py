"""Tar scanner: every member, links and escaping paths, legacy PyTorch tar."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats.tar import SCANNERS, valid_header
from tests.artifacts.formats._mutate import mutate

PAYLOAD = b"\x80\x04cos\nsystem\n."
Scan = Callable[..., list[Finding]]


def rules(findings: list[Finding], at_least: Severity = Severity.INFO) -> set[str]:
    return {f.rule for f in findings if f.severity >= at_least}


def make_tar(
    members: dict[str, bytes],
    mode: str = "w",
    fmt: int = tarfile.PAX_FORMAT,
    links: dict[str, tuple[bytes, str]] | None = None,
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=fmt) as tf:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            tf.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_every_member_reached(scan: Scan, mode: str, fmt: int) -> None:
    data = make_tar(
        {"sys_info": b"{}", "pickle": PAYLOAD, "storages": b"\x80\x02K\x00.", "tensors": b"plain"},
        mode,
        fmt,
    )
    found = scan(data)
    assert rules(found) == {"stand-in-pickle"}
    members = {str(f.location.member).split("!")[-1] for f in found}
    assert members == {"pickle", "storages"}


def test_benign_tar(scan: Scan) -> None:
    assert scan(make_tar({"a.txt": b"hi", "b/c.json": b"{}"})) == []


def test_links_and_escapes(scan: Scan) -> None:
    data = make_tar(
        {"../evil.pkl": b"x"},
        links={
            "l1": (tarfile.SYMTYPE, "../../etc/passwd"),
            "d/l2": (tarfile.SYMTYPE, "../ok.txt"),
            "h": (tarfile.LNKTYPE, "/etc/shadow"),
        },
    )
    found = scan(data)
    by_member = {(f.rule, str(f.location.member)): f.severity for f in found}
    assert by_member[("archive-path-escape", "../evil.pkl")] == Severity.HIGH
    assert by_member[("archive-link", "l1")] == Severity.HIGH
    assert by_member[("archive-link", "d/l2")] == Severity.MEDIUM
    assert by_member[("archive-link", "h")] == Severity.HIGH


def test_legacy_torch_tar(scan: Scan) -> None:
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf, _use_new_zipfile_serialization=False)
    # The non-zip legacy format is a pickle stream, not a tar: the pickle scanner owns it.
    assert not valid_header(buf.getvalue()[:512])
    assert "stand-in-pickle" in {f.rule for f in scan(buf.getvalue())}


def test_truncated_tar_is_unreadable(scan: Scan) -> None:
    data = make_tar({"a": b"x" * 3000, "b": PAYLOAD})
    found = scan(data[:1200])
    assert "unreadable" in rules(found, Severity.HIGH)


SEED = make_tar(
    {"a/pickle": PAYLOAD, "b.txt": b"hello" * 40}, links={"l": (tarfile.SYMTYPE, "a/pickle")}
)


@settings(max_examples=150, deadline=2000)
@given(st.data())
def test_mutated_tars_never_raise(
    run_scanner: Callable[..., list[Finding]], data: st.DataObject
) -> None:
    raw = mutate(SEED, data)
    run_scanner(SCANNERS[0], raw)
