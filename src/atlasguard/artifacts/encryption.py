"""Streaming authenticated envelope encryption of model artifacts (AML.M0012).

Each artifact gets a random 256-bit data key, wrapped (AES-256-GCM) by a
key-encryption key from a keyring, a raw key, or a passphrase stretched with
Argon2id or scrypt. The payload is AES-256-GCM in fixed-size chunks with the
STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015): chunk ``i``'s
nonce is ``prefix(7) || i(4) || last(1)``, and the header's fixed part is each
chunk's associated data, so truncation, reordering, splicing between artifacts
and a dropped final chunk all fail authentication. The header is documented in
:mod:`atlasguard.artifacts._enc_header` and docs/mitigations/AML.M0012.md.

Decrypting to a path writes a temporary file beside the destination and renames
it into place only after the final chunk authenticates. :func:`rekey_path`
re-wraps the data key under a new key without re-encrypting the payload.

>>> import io
>>> from atlasguard.artifacts.keys import kek_from_bytes
>>> kek = kek_from_bytes(bytes(32))
>>> sealed = encrypt_bytes(b"weights", kek)
>>> decrypt_bytes(sealed, kek)
b'weights'
"""

from __future__ import annotations

import io
import os
import queue
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from atlasguard.artifacts._enc_header import (
    DecryptionError,
    Header,
    KeyMismatchError,
    KeySource,
    MalformedCiphertextError,
    Passphrase,
    new_header,
    read_header,
    rewrap,
    unwrap,
)
from atlasguard.controls import Control, ControlSettings
from atlasguard.errors import IntegrityError, UsageError

__all__ = [
    "CONTROLS",
    "DEFAULT_CHUNK_SIZE",
    "DecryptionError",
    "EncryptionSettings",
    "Header",
    "KeyMismatchError",
    "KeySource",
    "MalformedCiphertextError",
    "MisplacedFileError",
    "Passphrase",
    "TamperedChunkError",
    "TruncatedCiphertextError",
    "decrypt_bytes",
    "decrypt_path",
    "decrypt_stream",
    "encrypt_bytes",
    "encrypt_path",
    "encrypt_stream",
    "inspect_header",
    "rekey_path",
]

DEFAULT_CHUNK_SIZE = 1 << 20
_TAG = 16
_MAX_CHUNKS = 1 << 32
ProgressCallback = Callable[[int], None]


class EncryptionSettings(ControlSettings):
    """``[controls.encryption]``: keep artifacts encrypted at rest."""

    # The key-encryption keyring is the deployment's: [keys] keyring.
    key_env: str | None = None
    passphrase_env: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE


CONTROLS = (
    Control(
        key="encryption",
        title="Encryption at rest",
        mitigates=frozenset({"AML.M0012"}),
        summary="Streaming AES-256-GCM (STREAM chunks) envelope encryption of model files "
        "and directories, keys wrapped by a keyring or a passphrase; key rotation.",
        enable="atlasguard keygen --symmetric --output keys/; "
        "atlasguard encrypt MODEL MODEL.enc --key-file keys/kek.json; "
        "set [keys] keyring = 'keys/kek.json'",
        settings=EncryptionSettings,
    ),
)


class TamperedChunkError(DecryptionError):
    """A payload chunk failed authentication: altered, reordered or spliced."""


class TruncatedCiphertextError(DecryptionError):
    """The ciphertext ends at a chunk boundary before its final chunk."""


class MisplacedFileError(DecryptionError):
    """An encrypted file of a directory holds another file's content (swapped or renamed)."""


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def _read_full(src: BinaryIO, view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = src.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


class _WriteBehind:
    """Writes filled buffers on a background thread, so the next chunk's read and
    cipher work overlap the previous chunk's write (file writes release the GIL).

    Buffers circulate between a free queue and a full queue; a write error is
    re-raised in the caller at the next :meth:`buffer` or at :meth:`close`.
    """

    def __init__(self, dst: BinaryIO, size: int, depth: int = 3) -> None:
        self._dst = dst
        self._free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        self._full: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
        for _ in range(depth):
            self._free.put(memoryview(bytearray(size)))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="atlasguard-write", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._full.get()) is not None:
            buf, n = item
            if self._error is None:
                try:
                    self._dst.write(buf[:n])
                except BaseException as exc:  # handed to the caller's thread
                    self._error = exc
            self._free.put(buf)

    def buffer(self) -> memoryview:
        """A buffer to fill; raises a pending write error."""
        buf = self._free.get()
        if self._error is not None:
            raise self._error
        return buf

    def submit(self, buf: memoryview, n: int) -> None:
        """Queue ``buf[:n]`` for writing, in order."""
        self._full.put((buf, n))

    def close(self) -> None:
        """Wait for every queued write; raise a write error if one happened."""
        self._full.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    key: KeySource,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    name: str = "",
    progress: ProgressCallback | None = None,
) -> int:
    """Encrypt ``src`` to ``dst``; return the plaintext length.

    ``name`` (a relative path) is bound into the header, so a file moved to
    another name inside an encrypted directory is detected.
    """
    header, data_key = new_header(key, chunk_size, name)
    aead, aad, prefix = AESGCM(data_key), header.fixed, header.nonce_prefix
    dst.write(header.to_bytes())
    inbuf = memoryview(bytearray(chunk_size))
    writer = _WriteBehind(dst, chunk_size + _TAG)
    index = total = 0
    try:
        while True:
            n = _read_full(src, inbuf)
            last = n < chunk_size  # a full chunk is never final: the final one is shorter
            if index >= _MAX_CHUNKS:
                raise UsageError("artifact too large for the chunk size (2**32 chunks)")
            out = writer.buffer()
            aead.encrypt_into(_nonce(prefix, index, last), inbuf[:n], aad, out[: n + _TAG])
            writer.submit(out, n + _TAG)
            total += n
            index += 1
            if progress is not None:
                progress(n)
            if last:
                return total
    finally:
        writer.close()


def decrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    key: KeySource,
    *,
    expected_name: str | None = None,
    where: str = "<stream>",
    progress: ProgressCallback | None = None,
) -> int:
    """Decrypt ``src`` to ``dst``; return the plaintext length.

    Each chunk is authenticated before it is written, but truncation is only
    known at the end: on an error ``dst`` may hold a prefix of the plaintext.
    Use :func:`decrypt_path`, which never leaves that at the destination.
    """
    header = read_header(src, where)
    if expected_name is not None and header.name != expected_name:
        raise MisplacedFileError(
            f"{where}: holds the encrypted content of {header.name or '<unnamed>'!r}"
        )
    aead = AESGCM(unwrap(header, key, where))
    aad, prefix, size = header.fixed, header.nonce_prefix, header.chunk_size
    inbuf = memoryview(bytearray(size + _TAG))
    writer = _WriteBehind(dst, size)
    index = total = 0
    try:
        while True:
            # _read_full stops short only at the end, so a short chunk is the final one.
            n = _read_full(src, inbuf)
            last = n < size + _TAG
            if n < _TAG:
                raise TruncatedCiphertextError(
                    f"{where}: ends after chunk {index} (final chunk missing)"
                )
            out = writer.buffer()
            try:
                aead.decrypt_into(_nonce(prefix, index, last), inbuf[:n], aad, out[: n - _TAG])
            except InvalidTag:
                raise TamperedChunkError(
                    f"{where}: chunk {index} fails authentication "
                    "(altered, reordered, spliced or truncated ciphertext)"
                ) from None
            writer.submit(out, n - _TAG)
            total += n - _TAG
            index += 1
            if progress is not None:
                progress(n - _TAG)
            if last:
                return total
    finally:
        writer.close()


def encrypt_bytes(data: bytes, key: KeySource, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> bytes:
    """Encrypt an in-memory artifact."""
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, key, chunk_size=chunk_size)
    return out.getvalue()


def decrypt_bytes(data: bytes, key: KeySource) -> bytes:
    """Decrypt an in-memory artifact (all of it authenticated before it is returned)."""
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(data), out, key, where="<bytes>")
    return out.getvalue()


def inspect_header(path: str | os.PathLike[str]) -> Header:
    """The header of an encrypted file (nothing authenticated yet)."""
    with open(path, "rb") as f:
        return read_header(f, str(path))


@contextmanager
def _atomic_file(dst: Path) -> Iterator[BinaryIO]:
    """A temporary file beside ``dst`` (mode 0600), renamed onto it only on success."""
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, dst)
    except BaseException:
        os.unlink(tmp)
        raise


def _files(root: Path) -> list[str]:
    out: list[str] = []
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                raise IntegrityError(f"{full}: symbolic links are not encrypted or followed")
        out.extend(
            os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/") for f in files
        )
    return sorted(out)


def _transform_tree(src: Path, dst: Path, one: Callable[[Path, Path, str], None]) -> None:
    """Apply ``one(src_file, dst_file, relname)`` over a directory, into a fresh ``dst``."""
    if dst.exists():
        raise UsageError(f"{dst} exists; refusing to write a directory over it")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".partial"))
    try:
        for rel in _files(src):
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            one(src / rel, target, rel)
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def encrypt_path(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    key: KeySource,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: ProgressCallback | None = None,
) -> None:
    """Encrypt a file, or every file of a directory into the same tree at ``dst``."""
    s, d = Path(src), Path(dst)

    def one(a: Path, b: Path, name: str) -> None:
        with open(a, "rb") as fin, _atomic_file(b) as fout:
            encrypt_stream(fin, fout, key, chunk_size=chunk_size, name=name, progress=progress)

    if s.is_dir():
        _transform_tree(s, d, one)
    elif s.is_file():
        one(s, d, "")
    else:
        raise UsageError(f"{s}: no such file or directory")


def decrypt_path(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    key: KeySource,
    *,
    progress: ProgressCallback | None = None,
) -> None:
    """Decrypt a file or an encrypted directory; nothing unauthenticated reaches ``dst``."""
    s, d = Path(src), Path(dst)

    def one(a: Path, b: Path, name: str | None) -> None:
        with open(a, "rb") as fin, _atomic_file(b) as fout:
            decrypt_stream(fin, fout, key, expected_name=name, where=str(a), progress=progress)

    if s.is_dir():
        _transform_tree(s, d, one)
    elif s.is_file():
        one(s, d, None)
    else:
        raise UsageError(f"{s}: no such file or directory")


def rekey_path(path: str | os.PathLike[str], old: KeySource, new: KeySource) -> int:
    """Re-wrap the data key of a file (or every file of a directory) under ``new``.

    The payload is copied unchanged; only the header's key block changes.
    Returns the number of files re-keyed.
    """
    p = Path(path)
    targets = [p / rel for rel in _files(p)] if p.is_dir() else [p]
    for target in targets:
        with open(target, "rb") as fin:
            header = read_header(fin, str(target))
            fresh = rewrap(header, unwrap(header, old, str(target)), new)
            with _atomic_file(target) as fout:
                fout.write(fresh.to_bytes())
                shutil.copyfileobj(fin, fout, 8 * 1024 * 1024)
    return len(targets)
