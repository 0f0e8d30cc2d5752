"""Encryption at rest: round trips, every tamper case, key rotation, never plaintext on failure."""

from __future__ import annotations

import io
import os
import re
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.encryption import (
    CONTROLS,
    DecryptionError,
    KeyMismatchError,
    MalformedCiphertextError,
    MisplacedFileError,
    Passphrase,
    TamperedChunkError,
    TruncatedCiphertextError,
    decrypt_bytes,
    decrypt_path,
    decrypt_stream,
    encrypt_bytes,
    encrypt_path,
    encrypt_stream,
    inspect_header,
    rekey_path,
)
from atlasguard.artifacts.keys import Keyring, create_keyring, kek_from_bytes
from atlasguard.errors import IntegrityError, UsageError

CHUNK = 4096
KEK = kek_from_bytes(bytes(range(32)))
OTHER = kek_from_bytes(bytes(32))
# Cheap KDF settings keep the tests fast; the defaults are Argon2id 64 MiB x 3.
PASS = Passphrase(b"hunter2", argon2_memory_kib=256, argon2_iterations=1, argon2_lanes=1)
SCRYPT = Passphrase(b"hunter2", kdf="scrypt", scrypt_log2_n=10)


def header_len(blob: bytes) -> int:
    return 20 + 2 + struct.unpack(">H", blob[20:22])[0]


def chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    h = header_len(blob)
    body = blob[h:]
    step = CHUNK + 16
    return blob[:h], [body[i : i + step] for i in range(0, len(body), step)]


def test_control_declared() -> None:
    assert CONTROLS[0].key == "encryption"
    assert CONTROLS[0].mitigates == frozenset({"AML.M0012"})


@settings(max_examples=40, deadline=2000)
@given(st.binary(max_size=3 * CHUNK + 10) | st.sampled_from([b"", b"a" * CHUNK, b"b" * 2 * CHUNK]))
def test_round_trip(data: bytes) -> None:
    blob = encrypt_bytes(data, KEK, chunk_size=CHUNK)
    assert decrypt_bytes(blob, KEK) == data
    assert len(data) < 16 or data not in blob


@pytest.mark.parametrize("source", [PASS, SCRYPT], ids=["argon2id", "scrypt"])
def test_passphrase_round_trip(source: Passphrase) -> None:
    blob = encrypt_bytes(b"weights" * 1000, source, chunk_size=CHUNK)
    assert decrypt_bytes(blob, source) == b"weights" * 1000
    wrong = Passphrase(b"hunter3", kdf=source.kdf)
    with pytest.raises(KeyMismatchError, match="wrong key or passphrase"):
        decrypt_bytes(blob, wrong)
    with pytest.raises(KeyMismatchError, match="passphrase"):
        decrypt_bytes(blob, KEK)


def test_wrong_key_names_the_key() -> None:
    blob = encrypt_bytes(b"x", KEK)
    with pytest.raises(KeyMismatchError, match=KEK.key_id):
        decrypt_bytes(blob, OTHER)
    with pytest.raises(KeyMismatchError, match="not in keyring"):
        decrypt_bytes(blob, Keyring(keys=(OTHER,), active_id=OTHER.key_id))
    ring = Keyring(keys=(OTHER, KEK), active_id=OTHER.key_id)
    assert decrypt_bytes(blob, ring) == b"x"
    with pytest.raises(KeyMismatchError, match="not a passphrase"):
        decrypt_bytes(blob, PASS)


def test_truncation_reorder_splice_and_trailing_data() -> None:
    data = os.urandom(3 * CHUNK + 100)
    blob = encrypt_bytes(data, KEK, chunk_size=CHUNK)
    head, parts = chunks(blob)
    assert len(parts) == 4
    # Dropping the final chunk: the last chunk left is full, so never final.
    with pytest.raises(TruncatedCiphertextError, match="final chunk missing"):
        decrypt_bytes(head + b"".join(parts[:3]), KEK)
    with pytest.raises(TruncatedCiphertextError, match="final chunk missing"):
        decrypt_bytes(head, KEK)
    with pytest.raises(TamperedChunkError):
        decrypt_bytes(blob[:-1], KEK)
    with pytest.raises(TamperedChunkError, match="chunk 1"):
        decrypt_bytes(head + parts[0] + parts[2] + parts[1] + parts[3], KEK)
    other = encrypt_bytes(data, KEK, chunk_size=CHUNK)
    _, other_parts = chunks(other)
    with pytest.raises(TamperedChunkError, match="chunk 1"):
        decrypt_bytes(head + parts[0] + other_parts[1] + parts[2] + parts[3], KEK)
    # Appended bytes join the short final chunk, which then fails to authenticate.
    for extra in (b"\0", os.urandom(CHUNK + 16)):
        with pytest.raises(TamperedChunkError, match="chunk 3"):
            decrypt_bytes(blob + extra, KEK)


def test_exact_multiple_has_empty_final_chunk() -> None:
    blob = encrypt_bytes(b"z" * (2 * CHUNK), KEK, chunk_size=CHUNK)
    head, parts = chunks(blob)
    assert [len(p) for p in parts] == [CHUNK + 16, CHUNK + 16, 16]
    with pytest.raises(TruncatedCiphertextError):  # drop the empty final chunk
        decrypt_bytes(head + parts[0] + parts[1], KEK)


def test_every_header_byte_is_authenticated() -> None:
    blob = encrypt_bytes(b"payload" * 2000, KEK, chunk_size=CHUNK)
    for i in range(header_len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(DecryptionError):
            decrypt_bytes(bytes(bad), KEK)


def test_not_an_artifact() -> None:
    with pytest.raises(MalformedCiphertextError, match="not an atlasguard"):
        decrypt_bytes(b"PK\x03\x04 hello", KEK)
    with pytest.raises(MalformedCiphertextError):
        encrypt_bytes(b"x", KEK, chunk_size=1000)


@settings(max_examples=150, deadline=2000)
@given(data=st.data())
def test_mutated_ciphertext_is_always_rejected(data: st.DataObject) -> None:
    plain = data.draw(st.binary(max_size=2 * CHUNK + 5))
    blob = bytearray(encrypt_bytes(plain, KEK, chunk_size=CHUNK))
    kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
    if kind == "flip":
        positions = data.draw(st.sets(st.integers(0, len(blob) - 1), min_size=1, max_size=3))
        for i in positions:
            blob[i] ^= data.draw(st.integers(1, 255))
    elif kind == "cut":
        start = data.draw(st.integers(0, len(blob) - 1))
        del blob[start : start + data.draw(st.integers(1, 64))]
    else:
        i = data.draw(st.integers(0, len(blob)))
        blob[i:i] = data.draw(st.binary(min_size=1, max_size=32))
    with pytest.raises(DecryptionError) as info:
        decrypt_bytes(bytes(blob), KEK)
    assert str(info.value)


def test_file_round_trip_and_no_plaintext_on_failure(tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(5 * CHUNK + 3))
    enc, out = tmp_path / "model.enc", tmp_path / "plain.bin"
    encrypt_path(src, enc, KEK, chunk_size=CHUNK)
    assert inspect_header(enc).kek_id == KEK.key_id
    decrypt_path(enc, out, KEK)
    assert out.read_bytes() == src.read_bytes()
    out.unlink()
    blob = enc.read_bytes()
    enc.write_bytes(blob[: len(blob) - 20])  # truncated in the final chunk
    with pytest.raises(TamperedChunkError):
        decrypt_path(enc, out, KEK)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.enc"]


def test_stream_api_reports_a_prefix_only_on_failure() -> None:
    blob = encrypt_bytes(b"abc" * CHUNK, KEK, chunk_size=CHUNK)
    sink = io.BytesIO()
    assert decrypt_stream(io.BytesIO(blob), sink, KEK) == 3 * CHUNK


def test_directory_round_trip_and_swap_detected(tmp_path: Path) -> None:
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"A" * 10000)
    (src / "sub" / "b.bin").write_bytes(b"B" * 10)
    (src / "empty").write_bytes(b"")
    enc, out = tmp_path / "enc", tmp_path / "out"
    encrypt_path(src, enc, KEK, chunk_size=CHUNK)
    assert inspect_header(enc / "sub" / "b.bin").name == "sub/b.bin"
    decrypt_path(enc, out, KEK)
    for rel in ("a.bin", "sub/b.bin", "empty"):
        assert (out / rel).read_bytes() == (src / rel).read_bytes()
    with pytest.raises(UsageError, match="exists"):
        decrypt_path(enc, out, KEK)
    a, b = (enc / "a.bin").read_bytes(), (enc / "sub" / "b.bin").read_bytes()
    (enc / "a.bin").write_bytes(b)
    (enc / "sub" / "b.bin").write_bytes(a)
    with pytest.raises(MisplacedFileError, match=re.escape("sub/b.bin")):
        decrypt_path(enc, tmp_path / "out2", KEK)
    assert not (tmp_path / "out2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_symlinks_not_encrypted(tmp_path: Path) -> None:
    src = tmp_path / "m"
    src.mkdir()
    os.symlink("/etc/hostname", src / "link")
    with pytest.raises(IntegrityError, match="symbolic"):
        encrypt_path(src, tmp_path / "enc", KEK)


def test_rekey_rewraps_without_touching_the_payload(tmp_path: Path) -> None:
    src = tmp_path / "m.bin"
    src.write_bytes(os.urandom(3 * CHUNK))
    enc = tmp_path / "m.enc"
    encrypt_path(src, enc, KEK, chunk_size=CHUNK)
    before = enc.read_bytes()
    new_ring = create_keyring(tmp_path / "new.json")
    assert rekey_path(enc, KEK, new_ring) == 1
    after = enc.read_bytes()
    assert before[header_len(before) :] == after[header_len(after) :]
    assert before[:20] == after[:20]
    with pytest.raises(KeyMismatchError):
        decrypt_bytes(after, KEK)
    assert decrypt_bytes(after, new_ring) == src.read_bytes()
    assert rekey_path(enc, new_ring, PASS) == 1
    assert decrypt_bytes(enc.read_bytes(), PASS) == src.read_bytes()
    with pytest.raises(KeyMismatchError):
        rekey_path(enc, KEK, OTHER)


def test_rekey_directory(tmp_path: Path) -> None:
    src = tmp_path / "m"
    src.mkdir()
    for n in range(3):
        (src / f"f{n}").write_bytes(bytes([n]) * 100)
    encrypt_path(src, tmp_path / "enc", KEK)
    assert rekey_path(tmp_path / "enc", KEK, OTHER) == 3
    decrypt_path(tmp_path / "enc", tmp_path / "out", OTHER)
    assert (tmp_path / "out" / "f2").read_bytes() == bytes([2]) * 100


@settings(max_examples=20, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=400))
def test_random_bytes_are_never_decrypted(junk: bytes) -> None:
    with pytest.raises(DecryptionError):
        decrypt_bytes(b"\x89AGENC\r\n" + junk, KEK)


class _FailingSink(io.RawIOBase):
    def __init__(self, after: int) -> None:
        self.left = after

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        if self.left <= 0:
            raise OSError(28, "No space left on device")
        self.left -= 1
        return len(b)  # type: ignore[arg-type]


@pytest.mark.parametrize("after", [1, 3])
def test_write_errors_reach_the_caller(after: int) -> None:
    import threading

    before = threading.active_count()
    with pytest.raises(OSError, match="No space"):
        encrypt_stream(
            io.BytesIO(os.urandom(10 * CHUNK)), _FailingSink(after), KEK, chunk_size=CHUNK
        )
    blob = encrypt_bytes(os.urandom(10 * CHUNK), KEK, chunk_size=CHUNK)
    with pytest.raises(OSError, match="No space"):
        decrypt_stream(io.BytesIO(blob), _FailingSink(after), KEK)
    assert threading.active_count() == before  # the writer thread is gone
