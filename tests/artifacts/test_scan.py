"""The dispatcher: content not extension, walking, hashing, failures as findings."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlasguard.artifacts import scan as scan_mod
from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats.base import LimitExceeded, Limits, ScanContext
from atlasguard.artifacts.scan import scan_path, scan_paths, scan_stream
from atlasguard.artifacts.settings import CONTROLS, ScanSettings
from atlasguard.errors import UsageError

EVIL = b"\x80\x02cposix\nsystem\n(S'touch /nonexistent/x'\ntR."


class Touch:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("name", ["model.txt", "m.sav", "m.p", "m.model", "noext", ".hidden"])
def test_pickles_are_found_whatever_their_name(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    (sub / name).write_bytes(pickle.dumps(Touch(marker), protocol=0))
    (tmp_path / "readme.md").write_text("# hello\n")
    reports = scan_path(tmp_path)
    by_name = {Path(r.path).name: r for r in reports}
    assert by_name[name].format == "pickle"
    assert by_name[name].max_severity is Severity.CRITICAL
    assert by_name["readme.md"].format == "unknown" and not by_name["readme.md"].findings
    assert not marker.exists()


def test_report_carries_sha256_and_size(tmp_path: Path) -> None:
    # a fixed trailer: random bytes sometimes spell an opcode the scanner rightly reports
    data = pickle.dumps(list(range(1000))) + random.Random(0).randbytes(3_000_000)
    path = tmp_path / "x.pkl"
    path.write_bytes(data)
    (report,) = scan_path(path)
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    assert report.size == len(data)
    assert report.findings == ()


def test_symlinks_out_of_the_tree_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.pkl").write_bytes(EVIL)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "link.pkl").symlink_to(outside / "evil.pkl")
    (tree / "dirlink").symlink_to(outside, target_is_directory=True)
    (tree / "inside.pkl").write_bytes(pickle.dumps([1]))
    (tree / "inlink.pkl").symlink_to(tree / "inside.pkl")
    names = sorted(Path(r.path).name for r in scan_path(tree))
    assert names == ["inlink.pkl", "inside.pkl"]


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        scan_paths([tmp_path / "nope"])


class _Boom:
    name = "boom"

    def sniff(self, head: bytes) -> bool:
        return head.startswith(b"BOOM")

    def scan(self, stream: BinaryIO, ctx: ScanContext) -> Iterable[Finding]:
        if stream.read(5) == b"BOOM!":
            raise LimitExceeded("test limit", ctx.location())
        yield Finding(rule="boom-first", severity=Severity.LOW, message="before the crash")
        raise RuntimeError("scanner bug")


def test_scanner_failures_become_findings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan_mod, "_loaded", (_Boom(), *scan_mod.scanners()))
    (tmp_path / "a").write_bytes(b"BOOM?")
    (tmp_path / "b").write_bytes(b"BOOM!")
    reports = {Path(r.path).name: r for r in scan_path(tmp_path)}
    assert [f.rule for f in reports["a"].findings] == ["boom-first", "unreadable"]
    assert [f.rule for f in reports["b"].findings] == ["limit-exceeded"]
    assert reports["a"].format == "boom"


def test_deadline_becomes_a_limit_finding(tmp_path: Path) -> None:
    path = tmp_path / "big.pkl"
    path.write_bytes(pickle.dumps([[i, str(i)] for i in range(200_000)], protocol=2))
    (report,) = scan_path(path, limits=Limits(max_seconds_per_file=0.0))
    assert [f.rule for f in report.findings] == ["limit-exceeded"]


def test_scan_stream_and_allow(tmp_path: Path) -> None:
    data = b"\x80\x02cmypkg\nNet\n)\x81."
    fmt, findings = scan_stream(io.BytesIO(data))
    assert fmt == "pickle" and findings[0].severity is Severity.HIGH
    assert scan_stream(io.BytesIO(data), allow=["mypkg.Net"])[1] == []


def test_pytorch_files_are_benign(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3),
        torch.nn.BatchNorm2d(2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 4),
        torch.nn.LayerNorm(4),
        torch.nn.Dropout(),
        torch.nn.GELU(),
        torch.nn.Embedding(5, 4),
        torch.nn.LSTM(4, 4),
        torch.nn.TransformerEncoderLayer(4, 2),
        torch.nn.ModuleList([torch.nn.Identity()]),
        torch.nn.MaxPool2d(2),
    )
    for i, obj in enumerate((net.state_dict(), net, {"epoch": 3, "opt": {"lr": 0.1}})):
        torch.save(obj, tmp_path / f"zip{i}.pt")
        torch.save(obj, tmp_path / f"legacy{i}.pt", _use_new_zipfile_serialization=False)
    for report in scan_path(tmp_path):
        assert report.findings == (), report
        if "legacy" in report.path:
            assert report.format == "pytorch-legacy"


def test_control_declaration() -> None:
    (control,) = CONTROLS
    assert control.key == "scan" and control.mitigates == frozenset({"AML.M0016"})
    assert ScanSettings().fail_on == "high"
    assert ScanSettings(allow=("a.B",)).allow == ("a.B",)


@settings(
    max_examples=60,
    deadline=5000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.binary(max_size=2000),
    prefix=st.sampled_from([b"", b"PK\x03\x04", b"\x80\x04", b"c", b"\x93NUMPY", b"\x1f\x8b"]),
)
def test_arbitrary_files_never_crash(tmp_path: Path, data: bytes, prefix: bytes) -> None:
    path = tmp_path / "f"
    path.write_bytes(prefix + data)
    (report,) = scan_path(path, limits=Limits(max_seconds_per_file=5))
    assert report.size == len(prefix + data)
