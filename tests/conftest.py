"""Shared fixtures: the reference ATLAS files in ../shared/atlas and a CLI runner."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_ATLAS = REPO.parent / "shared" / "atlas"
SHARED_SEEDS = REPO.parent / "shared" / "seeds"


def examples(n: int) -> int:
    """A differential property's example count: ``n`` in ``make test``; twenty times as
    many under ``ATLASGUARD_LONG_DIFFERENTIALS=1``, which ``make bench`` sets for its run."""
    return n * 20 if os.environ.get("ATLASGUARD_LONG_DIFFERENTIALS") == "1" else n


@pytest.fixture(scope="session")
def shared_atlas() -> Path:
    """The reference copies of the ATLAS data beside the repository."""
    if not SHARED_ATLAS.is_dir():
        pytest.skip(f"reference data not found at {SHARED_ATLAS}")
    return SHARED_ATLAS


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.exit_code = code
        self.stdout = out
        self.stderr = err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the atlasguard command line in-process and capture exit code, stdout and stderr."""
    from atlasguard._cli.main import run

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        code = run(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke
