"""A test-only dispatcher: the format scanners of this package plus a stand-in pickle scanner.

The real dispatcher (``atlasguard.artifacts.scan``) is built elsewhere; these
tests need one that sniffs with the scanners under test and recurses into
members, and a trivial "pickle" scanner that flags any member starting with
``\\x80`` or containing ``system`` so a test can prove a payload was reached.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import pytest

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats.base import (
    HEAD_BYTES,
    FormatScanner,
    LimitExceeded,
    Limits,
    ScanContext,
    limit_finding,
    unreadable_finding,
)
from atlasguard.artifacts.scan import FORMAT_MODULES

# The real dispatcher's order, with the stand-in below in place of the pickle scanner.
MODULES = tuple(m for m in FORMAT_MODULES if not m.endswith(".pickle"))


class StandInPickle:
    """Flags what a real pickle scanner would: only used to prove members are reached."""

    name = "stand-in-pickle"

    def sniff(self, head: bytes) -> bool:
        return head.startswith(b"\x80") or b"system" in head

    def scan(self, stream: BinaryIO, ctx: ScanContext) -> Iterable[Finding]:
        data = stream.read(1 << 20)
        yield Finding(
            rule="stand-in-pickle",
            severity=Severity.CRITICAL,
            message=f"pickle-like member ({len(data)} bytes)",
            location=ctx.location(),
        )


def all_scanners() -> list[FormatScanner]:
    scanners: list[FormatScanner] = []
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        scanners.extend(mod.SCANNERS)
    scanners.append(StandInPickle())
    return scanners


def dispatch(stream: BinaryIO, ctx: ScanContext) -> list[Finding]:
    stream.seek(0)
    head = stream.read(HEAD_BYTES)
    for scanner in all_scanners():
        if scanner.sniff(head):
            ctx.formats_seen.append(scanner.name)
            stream.seek(0)
            try:
                return list(scanner.scan(stream, ctx))
            except LimitExceeded as exc:
                return [limit_finding(exc)]
            except Exception as exc:  # the real dispatcher does the same
                return [unreadable_finding(f"{type(exc).__name__}: {exc}", ctx.location())]
    return []


def scan_bytes(data: bytes, *, limits: Limits | None = None) -> list[Finding]:
    ctx = ScanContext(limits=limits or Limits(), allow=frozenset(), dispatch=dispatch)
    return dispatch(io.BytesIO(data), ctx)


def scan_path(path: Path, *, limits: Limits | None = None) -> list[Finding]:
    ctx = ScanContext(limits=limits or Limits(), allow=frozenset(), dispatch=dispatch)
    with path.open("rb") as fh:
        return dispatch(fh, ctx)


def run_scanner_direct(scanner: FormatScanner, data: bytes) -> list[Finding]:
    """Run one scanner on ``data``; anything but LimitExceeded escaping fails the test."""
    ctx = ScanContext(limits=Limits(max_seconds_per_file=5), allow=frozenset(), dispatch=dispatch)
    try:
        return list(scanner.scan(io.BytesIO(data), ctx))
    except LimitExceeded as exc:
        return [limit_finding(exc)]


@pytest.fixture(scope="session")
def scan() -> Callable[..., list[Finding]]:
    """bytes -> findings, through the test dispatcher."""
    return scan_bytes


@pytest.fixture(scope="session")
def scan_file() -> Callable[..., list[Finding]]:
    """path -> findings, through the test dispatcher."""
    return scan_path


@pytest.fixture(scope="session")
def run_scanner() -> Callable[[FormatScanner, bytes], list[Finding]]:
    """(scanner, bytes) -> findings, calling the scanner directly (for fuzzing)."""
    return run_scanner_direct
