"""Zip members, differentially: what a real zip reader extracts, the scanner has scanned.

Hypothesis writes zips with Python's own writer (names, methods, prepended
data, comments), then damages some of them (bytes overwritten, a fake end
record appended). Each is read by the loaders' readers: Python's
:mod:`zipfile` (NumPy's npz, Keras) and PyTorch's own reader
(``torch._C.PyTorchFileReader``, miniz), and scanned with an observer that
records every member's bytes the scanner dispatched. For every member a reader
extracts, the scanner must have scanned the same bytes, or said with a
``high`` finding that it could not tell (the issue's rule for a disagreement).
"""

from __future__ import annotations

import io
import zipfile
from typing import BinaryIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.findings import Finding, Location, Severity
from atlasguard.artifacts.formats.base import Limits, ScanContext
from atlasguard.artifacts.formats.zip import _find_central
from atlasguard.artifacts.scan import dispatch
from tests.conftest import examples

_MAX_RECORD = 1 << 20
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


class _Recorder:
    """Observer: every member's bytes the scanner dispatched."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()

    def observe_member(self, container: str | None, name: str, stream: BinaryIO) -> None:
        at = stream.tell()
        self.seen.add(stream.read())
        stream.seek(at)

    def member_scanned(
        self, name: str, fmt: str, stream: BinaryIO, where: Location
    ) -> list[Finding]:
        return []


def _scan(data: bytes) -> tuple[set[bytes], list[Finding]]:
    recorder = _Recorder()
    ctx = ScanContext(limits=Limits(), allow=frozenset(), dispatch=dispatch, observer=recorder)
    return recorder.seen, dispatch(io.BytesIO(data), ctx)


def _zipfile_view(data: bytes) -> list[bytes] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            out = []
            for info in zf.infolist():
                try:
                    out.append(zf.read(info))
                except Exception:  # a member this reader refuses is not loaded by it
                    continue
            return out
    except Exception:
        return None


def _compressed_names(data: bytes) -> set[str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return {i.filename.partition("/")[2] for i in zf.infolist() if i.compress_type}
    except Exception:
        return set()


def _torch_view(data: bytes) -> list[tuple[str, bytes]] | None:
    """``(record name, bytes)`` for every record PyTorch's reader returns."""
    torch = pytest.importorskip("torch")
    entries, _problems, _disagree = _find_central(io.BytesIO(data), len(data))
    if any(e.usize > _MAX_RECORD for e in entries):
        # PyTorch allocates (and on a failed inflate hands back) a buffer of the recorded
        # size: a lying size of gigabytes would exhaust the test machine's memory
        return None
    try:
        reader = torch._C.PyTorchFileReader(io.BytesIO(data))
    except Exception:
        return None
    out = []
    try:
        names = reader.get_all_records()
    except Exception:  # e.g. a damaged name outside the archive's folder: the load fails
        return None
    for name in names:
        try:
            reads = []
            for _ in range(3):
                reads.append(bytes(reader.get_record(name)))
                _churn = [bytearray(len(reads[-1]) + 1) for _ in range(4)]  # reuse the heap
        except Exception:
            continue
        if len(set(reads)) == 1:
            out.append((name, reads[0]))
        # else: a record that reads differently each time is PyTorch handing back
        # uninitialised memory where miniz failed to inflate (seen here: heap pointers),
        # not bytes of the file; nothing in the file decides it
    return out


@st.composite
def zips(draw: st.DrawFn) -> bytes:
    buf = io.BytesIO()
    prefix = draw(st.sampled_from([b"", b"#!/bin/sh\n", b"\x80\x02N." + b"x" * 20]))
    buf.write(prefix)
    top = draw(st.sampled_from(["archive", "model", "m"]))
    count = draw(st.integers(1, 5))
    with zipfile.ZipFile(buf, "a" if prefix else "w") as zf:
        zf.writestr(f"{top}/version", b"3\n")  # PyTorch's reader opens nothing without it
        for i in range(count):
            body = draw(st.binary(max_size=300)) + bytes([i])
            method = draw(st.sampled_from(_METHODS))
            zf.writestr(f"{top}/m{i}", body, compress_type=method)
        zf.comment = draw(st.binary(max_size=40))
    data = bytearray(buf.getvalue())
    entries = [i for i in range(len(data)) if data[i : i + 4] == b"PK\x01\x02"]
    if entries and draw(st.booleans()):
        # the directory's sizes lie: compressed (+20) or uncompressed (+24) size moved
        at = draw(st.sampled_from(entries)) + draw(st.sampled_from([20, 24]))
        value = int.from_bytes(data[at : at + 4], "little") + draw(st.integers(-8, 200))
        data[at : at + 4] = max(0, value).to_bytes(4, "little")
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data += b"PK\x05\x06" + draw(st.binary(max_size=10))  # a short fake end record
    return bytes(data)


def _covered(
    extracted: list[bytes] | None,
    seen: set[bytes],
    findings: list[Finding],
    prefix_ok: bool = False,
) -> bool:
    """Every extracted member was scanned, or a high finding (not a polyglot) says why not.

    With ``prefix_ok``, a member may also be a scanned member followed by more bytes:
    PyTorch's reader returns a buffer of the recorded size whose tail, past what it
    could inflate, is uninitialised memory rather than bytes of the file.
    """
    if not extracted:
        return True
    missing = [
        b
        for b in extracted
        if b not in seen and not (prefix_ok and any(b.startswith(c) for c in seen if c))
    ]
    excused = any(f.severity >= Severity.HIGH and f.rule != "polyglot" for f in findings)
    return not missing or excused


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zips())
def test_every_member_zipfile_extracts_was_scanned(data: bytes) -> None:
    seen, findings = _scan(data)
    assert _covered(_zipfile_view(data), seen, findings), [(f.rule, f.message) for f in findings]


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zips())
def test_every_record_pytorchs_reader_extracts_was_scanned(data: bytes) -> None:
    seen, findings = _scan(data)
    records = _torch_view(data)
    stored = [b for name, b in records or [] if name not in _compressed_names(data)]
    inflated = [b for name, b in records or [] if name in _compressed_names(data)]
    why = [(f.rule, f.message) for f in findings]
    assert _covered(stored, seen, findings), why
    assert _covered(inflated, seen, findings, prefix_ok=True), why


@pytest.mark.parametrize("member", ["hdf5", "tar"])
def test_a_polyglot_member_of_a_torch_checkpoint_is_both_views(member: str) -> None:
    """A checkpoint's data.pkl that is also HDF5 or tar: the pickle view is still scanned."""
    from tests.corpus import differentials as d

    body = d.hdf5_in_a_string() if member == "hdf5" else d.tar_header_pickle()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", body)
        zf.writestr("archive/version", b"3\n")
    _seen, findings = _scan(buf.getvalue())
    polyglot = [f for f in findings if f.rule == "polyglot"]
    assert polyglot and polyglot[0].severity is Severity.HIGH
    assert polyglot[0].location.member == "archive/data.pkl"
    assert any(f.severity >= Severity.HIGH and "system" in f.message for f in findings)
