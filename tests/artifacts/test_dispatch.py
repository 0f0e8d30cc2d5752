"""Format detection examines a file as every format a loader would take it for (issue 12 §1).

The samples are built here; none is ever loaded.
"""

from __future__ import annotations

import io
import struct
import tarfile

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.scan import scan_stream

PAYLOAD = b"cos\nsystem\n(S'true'\ntR."  # os.system('true'), protocol 0


def _findings(data: bytes) -> list[Finding]:
    return scan_stream(io.BytesIO(data))[1]


def _runs_system(findings: list[Finding]) -> bool:
    return any(f.severity >= Severity.HIGH and "system" in f.message for f in findings)


def test_a_first_opcode_longer_than_the_sniff_window_still_is_a_pickle() -> None:
    text = "a" * 6000
    data = b"X" + struct.pack("<I", len(text)) + text.encode() + b"0" + PAYLOAD
    assert _runs_system(_findings(data))


def test_benign_files_that_begin_with_long_strings_are_not_polyglots() -> None:
    import pickle

    data = pickle.dumps(["x" * 10_000, list(range(10))], protocol=2)
    assert _findings(data) == []


def test_an_hdf5_signature_inside_a_pickle_string_does_not_hide_the_pickle() -> None:
    # A string opcode whose data puts the HDF5 signature at offset 512 of the file.
    hdf5 = b"\x89HDF\r\n\x1a\n"
    before = 512 - 7  # PROTO (2) + BINBYTES (1) + length (4)
    blob = b"\0" * before + hdf5 + b"\0" * 600
    data = b"\x80\x03B" + struct.pack("<I", len(blob)) + blob + b"0" + PAYLOAD
    assert data[512 : 512 + len(hdf5)] == hdf5
    findings = _findings(data)
    assert _runs_system(findings)
    assert any(f.rule == "polyglot" and f.severity is Severity.HIGH for f in findings)


def test_a_tar_header_made_of_a_pickle_string_does_not_hide_the_pickle() -> None:
    # The first 512 bytes are a valid tar header and a BINBYTES opcode at once.
    info = tarfile.TarInfo("x")
    info.size = 0
    header = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT)[:512])
    header[0:5] = b"B" + struct.pack("<I", 512 - 5)  # the string covers the rest of the block
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    data = bytes(header) + b"0" + PAYLOAD
    with tarfile.open(fileobj=io.BytesIO(data + b"\0" * 1024)) as tar:  # tarfile takes it
        assert len(tar.getmembers()) == 1
    findings = _findings(data)
    assert _runs_system(findings)


def test_a_cut_short_end_record_does_not_hide_the_real_directory() -> None:
    """Python's zipfile gives up at a truncated end record; PyTorch's reader skips it."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/decoy", b"x" * 100)
        zf.writestr("archive/data.pkl", b"\x80\x02" + PAYLOAD)  # built, never loaded
    data = bytearray(buf.getvalue())
    data[0:4] = b"PK\x03\xff"  # the first local header is broken: no walk from the start
    data += b"PK\x05\x06\x00\x00"  # a fake end record, cut short
    findings = _findings(bytes(data))
    assert _runs_system(findings), [(f.rule, f.message) for f in findings]
    assert any(f.rule == "zip-readers-disagree" and f.severity is Severity.HIGH for f in findings)
