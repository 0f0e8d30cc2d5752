"""Compressed streams: every joblib compressor recognised, content dispatched, bombs bounded."""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats.base import Limits
from atlasguard.artifacts.formats.compressed import SCANNERS

PAYLOAD = b"\x80\x04cos\nsystem\n."
Scan = Callable[..., list[Finding]]


def rules(findings: list[Finding], at_least: Severity = Severity.INFO) -> set[str]:
    return {f.rule for f in findings if f.severity >= at_least}


def lz4_compress(data: bytes) -> bytes:
    lz4_frame = pytest.importorskip("lz4.frame")
    out: bytes = lz4_frame.compress(data)
    return out


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "xz": lambda d: lzma.compress(d, format=lzma.FORMAT_XZ),
    "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
    "zlib": zlib.compress,
    "lz4": lz4_compress,
}


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
def test_payload_inside_each_compressor_is_dispatched(scan: Scan, name: str) -> None:
    data = COMPRESSORS[name](PAYLOAD + b"x" * 1000)
    found = scan(data)
    assert [s.name for s in SCANNERS if s.sniff(data[:4096])] == [name]
    assert rules(found) == {"stand-in-pickle"}
    assert found[0].location.member == f"<{name}>"


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
def test_benign_content_gives_nothing(scan: Scan, name: str) -> None:
    assert scan(COMPRESSORS[name](b"just some text " * 100)) == []


@pytest.mark.parametrize("method", ["zlib", "gzip", "bz2", "xz", "lzma", "lz4"])
def test_every_joblib_compressor(tmp_path: Path, scan_file: Scan, method: str) -> None:
    joblib = pytest.importorskip("joblib")
    if method == "lz4":
        pytest.importorskip("lz4")
    path = tmp_path / "model.joblib"
    joblib.dump({"weights": list(range(50))}, path, compress=(method, 3))
    found = scan_file(path)
    # The stand-in flags the decompressed pickle (it starts with \x80): proof it was reached.
    assert rules(found) == {"stand-in-pickle"}
    assert found[0].location.member is not None


def test_legacy_joblib_zfile(scan: Scan) -> None:
    data = b"ZF" + f"{len(PAYLOAD):#x}".ljust(19).encode() + zlib.compress(PAYLOAD)
    found = scan(data)
    assert rules(found) == {"stand-in-pickle"}


def test_truncated_stream_scans_recovered_part(scan: Scan) -> None:
    data = gzip.compress(PAYLOAD + bytes(range(256)) * 200)
    found = scan(data[: len(data) // 2])
    assert "stand-in-pickle" in rules(found)
    assert "unreadable" in rules(found, Severity.MEDIUM)


def test_concatenated_gzip_members(scan: Scan) -> None:
    data = gzip.compress(b"harmless " * 10) + gzip.compress(b"then system")
    assert "stand-in-pickle" in rules(scan(data))


def test_bomb_hits_ratio_limit(scan: Scan) -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))
    found = scan(bomb)
    assert "limit-exceeded" in rules(found, Severity.HIGH)


def test_budget_limit(scan: Scan) -> None:
    found = scan(bz2.compress(b"a" * 100_000), limits=Limits(max_decompressed_bytes=10_000))
    assert "limit-exceeded" in rules(found)


def test_random_bytes_are_not_zlib_or_lzma() -> None:
    import random

    rng = random.Random(7)
    hits = 0
    for _ in range(3000):
        head = bytes(rng.getrandbits(8) for _ in range(64))
        hits += any(s.sniff(head) for s in SCANNERS)
    assert hits == 0


SEEDS = [c(PAYLOAD * 20) for n, c in COMPRESSORS.items() if n != "lz4"]


@settings(max_examples=150, deadline=2000)
@given(st.sampled_from(SEEDS), st.data())
def test_mutated_streams_never_raise(
    run_scanner: Callable[..., list[Finding]], seed: bytes, data: st.DataObject
) -> None:
    raw = bytearray(seed)
    for _ in range(data.draw(st.integers(0, 6))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    for scanner in SCANNERS:
        if scanner.sniff(bytes(raw[:4096])):
            run_scanner(scanner, bytes(raw))
