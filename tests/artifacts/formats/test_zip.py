"""Zip scanner: every member reached, every oddity reported, bombs bounded."""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats.base import Limits
from atlasguard.artifacts.formats.zip import SCANNERS, escapes_archive
from tests.artifacts.formats._mutate import mutate

PAYLOAD = b"\x80\x04cos\nsystem\n."  # what the stand-in pickle scanner flags

Scan = Callable[..., list[Finding]]


def rules(findings: list[Finding], at_least: Severity = Severity.INFO) -> set[str]:
    return {f.rule for f in findings if f.severity >= at_least}


def make_zip(
    members: dict[str, bytes], method: int = zipfile.ZIP_STORED, *, zip64: bool = False
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in members.items():
            with zf.open(name, "w", force_zip64=zip64) as fh:
                fh.write(data)
    return buf.getvalue()


def stand_in_members(findings: list[Finding]) -> set[str]:
    return {str(f.location.member) for f in findings if f.rule == "stand-in-pickle"}


def test_benign_zip_has_no_findings(scan: Scan) -> None:
    data = make_zip({"a.txt": b"hello", "dir/b.json": b"{}"}, zipfile.ZIP_DEFLATED)
    assert scan(data) == []


@pytest.mark.parametrize("top", ["archive", "my_model", "x/y/z"])
@pytest.mark.parametrize(
    "method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
)
def test_every_pickle_member_reached_whatever_its_name(scan: Scan, top: str, method: int) -> None:
    data = make_zip(
        {f"{top}/data.pkl": PAYLOAD, f"{top}/other.bin": PAYLOAD, f"{top}/version": b"3\n"}, method
    )
    found = scan(data)
    assert stand_in_members(found) == {f"{top}/data.pkl", f"{top}/other.bin"}
    assert rules(found) == {"stand-in-pickle"}


def _set_flags(data: bytes, flag: int) -> bytes:
    out = bytearray(data)
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = out.find(sig)
        while at >= 0:
            (old,) = struct.unpack_from("<H", out, at + off)
            struct.pack_into("<H", out, at + off, old | flag)
            at = out.find(sig, at + 4)
    return bytes(out)


def test_encryption_bit_on_plain_member_is_read_and_reported(scan: Scan) -> None:
    data = _set_flags(make_zip({"archive/data.pkl": PAYLOAD}), 0x1)
    with pytest.raises(RuntimeError), zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.read("archive/data.pkl")  # the standard library refuses: the bypass
    found = scan(data)
    assert "zip-flag-bits" in rules(found, Severity.HIGH)
    assert stand_in_members(found) == {"archive/data.pkl"}


def test_crc_mismatch_is_read_and_reported(scan: Scan) -> None:
    data = bytearray(make_zip({"m/data.pkl": PAYLOAD}))
    for sig, off in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):
        at = data.find(sig)
        struct.pack_into("<I", data, at + off, 0xDEADBEEF)
    with pytest.raises(zipfile.BadZipFile), zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        zf.read("m/data.pkl")
    found = scan(bytes(data))
    assert "zip-crc-mismatch" in rules(found, Severity.HIGH)
    assert stand_in_members(found) == {"m/data.pkl"}


def test_local_and_central_names_differ(scan: Scan) -> None:
    data = bytearray(make_zip({"m/data.pkl": PAYLOAD}))
    at = data.find(b"PK\x03\x04")
    data[at + 30 : at + 30 + 10] = b"m/evil.pkl"
    found = scan(bytes(data))
    msg = next(f.message for f in found if f.rule == "zip-name-mismatch")
    assert "m/data.pkl" in msg
    assert "m/evil.pkl" in msg
    assert stand_in_members(found) == {"m/data.pkl"}


def test_member_missing_from_central_directory(scan: Scan) -> None:
    hidden = make_zip({"hidden.pkl": PAYLOAD})
    visible = make_zip({"readme.txt": b"hi"})
    # Local header + data of the hidden member, then the visible archive shifted after it.
    cd_at = hidden.find(b"PK\x01\x02")
    prefix = hidden[:cd_at]
    shifted = bytearray(visible)
    eocd = shifted.rfind(b"PK\x05\x06")
    (cd_off,) = struct.unpack_from("<I", shifted, eocd + 16)
    struct.pack_into("<I", shifted, eocd + 16, cd_off + len(prefix))
    cd = shifted.find(b"PK\x01\x02")
    (lh,) = struct.unpack_from("<I", shifted, cd + 42)
    struct.pack_into("<I", shifted, cd + 42, lh + len(prefix))
    data = prefix + bytes(shifted)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == ["readme.txt"]
    found = scan(data)
    assert "zip-hidden-member" in rules(found, Severity.HIGH)
    assert stand_in_members(found) == {"hidden.pkl"}


def test_duplicate_names_all_scanned(scan: Scan) -> None:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns on the duplicate
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("data.pkl", b"harmless")
            zf.writestr("data.pkl", PAYLOAD)
    found = scan(buf.getvalue())
    assert "zip-duplicate-name" in rules(found, Severity.HIGH)
    assert "stand-in-pickle" in rules(found)


def test_nested_archives_and_zip64(scan: Scan) -> None:
    inner = make_zip({"inner/data.pkl": PAYLOAD}, zipfile.ZIP_DEFLATED)
    outer = make_zip({"outer/inner.zip": inner}, zipfile.ZIP_STORED)
    found = scan(make_zip({"x.zip": outer}, zip64=True))
    assert stand_in_members(found) == {"x.zip!outer/inner.zip!inner/data.pkl"}


def test_unknown_method_is_unreadable(scan: Scan) -> None:
    data = bytearray(make_zip({"data.pkl": PAYLOAD}, zipfile.ZIP_DEFLATED))
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        struct.pack_into("<H", data, data.find(sig) + off, 93)  # zstd
    found = scan(bytes(data))
    assert "unreadable" in rules(found, Severity.HIGH)


def test_path_escape(scan: Scan) -> None:
    assert "archive-path-escape" in rules(scan(make_zip({"../../etc/x": b"1"})))
    assert escapes_archive("/abs/path")
    assert escapes_archive("C:\\x")
    assert not escapes_archive("a/b..c/d")


def test_zip_bomb_is_a_finding_not_a_hang(scan: Scan) -> None:
    bomb = make_zip({"a.pkl": PAYLOAD + b"\0" * (8 << 20), "b.pkl": PAYLOAD}, zipfile.ZIP_DEFLATED)
    found = scan(bomb)
    assert "limit-exceeded" in rules(found, Severity.HIGH)
    # The start of the bomb and the next member are still scanned.
    assert stand_in_members(found) == {"a.pkl", "b.pkl"}


def test_budget_limit(scan: Scan) -> None:
    data = make_zip({"a": b"x" * 2000, "b": b"y" * 2000}, zipfile.ZIP_DEFLATED)
    found = scan(data, limits=Limits(max_decompressed_bytes=3000))
    assert "limit-exceeded" in rules(found)


def test_pytorch_checkpoint_every_pickle_member(scan: Scan) -> None:
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({"w": torch.arange(4, dtype=torch.float32)}, buf)
    found = scan(buf.getvalue())
    assert not {r for r in rules(found) if r.startswith("zip-") or r == "unreadable"}
    assert any(m.endswith("data.pkl") for m in stand_in_members(found))


def test_descriptor_only_member_without_central_directory(scan: Scan) -> None:
    # A streamed zip (sizes only in the data descriptor) with its central directory cut off.
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open("s/data.pkl", "w", force_zip64=False) as fh,
    ):
        fh.write(PAYLOAD)
    raw = buf.getvalue()
    local = raw[: raw.find(b"PK\x01\x02")]
    stored = bytearray(local)
    struct.pack_into("<H", stored, 6, 0x8)  # declare a data descriptor
    found = scan(bytes(stored))
    assert stand_in_members(found) == {"s/data.pkl"}
    assert zlib.crc32(PAYLOAD)


SCANNER = SCANNERS[0]
SEED = make_zip({"a/data.pkl": PAYLOAD, "b.txt": b"hello" * 50}, zipfile.ZIP_DEFLATED)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_zips_never_raise(
    run_scanner: Callable[..., list[Finding]], data: st.DataObject
) -> None:
    run_scanner(SCANNER, mutate(SEED, data))


def test_unreadable_torch_storage_is_lowered(scan: Scan) -> None:
    odd = b"\x93NUMPY\x09\x00"  # an unreadable .npy: stands for any unparseable content
    found = scan(make_zip({"ckpt/data.pkl": b"x", "ckpt/data/0": odd, "ckpt/extra": odd}))
    by_member = {f.location.member: f.severity for f in found if f.rule == "unreadable"}
    assert by_member == {"ckpt/data/0": Severity.LOW, "ckpt/extra": Severity.MEDIUM}
    # Without a data.pkl it is not a PyTorch checkpoint: nothing is lowered.
    found = scan(make_zip({"ckpt/data/0": odd}))
    assert [f.severity for f in found] == [Severity.MEDIUM]


def test_zip_behind_other_content(scan: Scan, run_scanner: Callable[..., list[Finding]]) -> None:
    from atlasguard.artifacts.formats.zip import has_zip_tail

    inner = make_zip({"config.json": b"{}", "evil.pkl": PAYLOAD}, zipfile.ZIP_DEFLATED)
    polyglot = b"just a text file, or a harmless pickle\n" * 10 + inner
    with zipfile.ZipFile(io.BytesIO(polyglot)) as zf:  # zipfile reads it fine
        assert zf.read("evil.pkl") == PAYLOAD
    assert has_zip_tail(io.BytesIO(polyglot))
    assert not has_zip_tail(io.BytesIO(b"plain text"))
    found = run_scanner(SCANNER, polyglot)
    assert stand_in_members(found) == {"evil.pkl"}


def test_large_member_memory_stays_bounded(scan: Scan) -> None:
    import tracemalloc

    member = b"\x80" + bytes(48 << 20)  # 48 MiB, spooled to disk past 1 MiB
    data = make_zip({"big.bin": member}, zipfile.ZIP_DEFLATED)
    limits = Limits(max_compression_ratio=1e9, spool_bytes=1 << 20)
    tracemalloc.start()
    try:
        found = scan(data, limits=limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stand_in_members(found) == {"big.bin"}
    assert peak < 16 << 20, peak
