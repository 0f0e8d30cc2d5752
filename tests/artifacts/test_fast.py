"""`atlasguard scan --fast`: what a loader executes is read, the rest is skipped and said."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from atlasguard.artifacts.findings import Severity
from atlasguard.artifacts.scan import scan_paths


def _checkpoint(tmp_path: Path) -> Path:
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(256, 256), "b": torch.ones(256)}, path)
    return path


def test_fast_skips_the_storages_and_says_so(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    (thorough,) = scan_paths([path])
    (fast,) = scan_paths([path], fast=True)
    assert thorough.findings == () and thorough.sha256
    assert [f.rule for f in fast.findings] == ["fast-skipped"]
    skipped = fast.findings[0]
    assert skipped.severity is Severity.INFO
    assert "2 tensor storage member(s)" in skipped.message
    assert f"{(256 * 256 + 256) * 4:,} bytes" in skipped.message
    assert fast.sha256 == ""  # no digest in fast mode
    assert not fast.fails(Severity.LOW)


def test_fast_still_reads_what_torch_load_unpickles(tmp_path: Path, cli: Any) -> None:
    torch = pytest.importorskip("torch")

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, ("true",))

    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(4), "x": Evil()}, path)  # written, never loaded
    (fast,) = scan_paths([path], fast=True)
    assert any(f.severity is Severity.CRITICAL for f in fast.findings)
    res = cli("scan", "--fast", str(path))
    assert res.exit_code == 1 and "system" in res.stdout


def test_fast_changes_nothing_for_files_without_storages(tmp_path: Path) -> None:
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"a": [1, 2, 3]}))
    (thorough,) = scan_paths([path])
    (fast,) = scan_paths([path], fast=True)
    assert thorough.findings == fast.findings == ()
