"""The versioned header of an encrypted artifact, and data-key wrapping.

Layout (all integers big-endian), documented in docs/mitigations/AML.M0012.md::

    fixed part (20 bytes), the associated data of every payload chunk
      magic        8  b"\\x89AGENC\\r\\n"
      version      1  1
      aead         1  1 = AES-256-GCM, STREAM nonces
      chunk_log2   1  plaintext chunk size = 2**chunk_log2 (12..26)
      reserved     2  0
      nonce_prefix 7  random per artifact
    key block
      block_len    2  length of the rest of the key block
      wrap         1  1 = KEK, 2 = scrypt(passphrase), 3 = Argon2id(passphrase)
      kek_id       1 + n  (ASCII, at most 64)
      name         2 + n  (UTF-8 relative path bound to the artifact, may be empty)
      kdf params      wrap 2: salt 16, log2_n 1, r 1, p 1
                      wrap 3: salt 16, iterations 4, memory_kib 4, lanes 1
      wrap_nonce  12
      wrapped     48  AES-256-GCM(wrapping key, data key), associated data =
                      fixed part + key block up to the wrapped key

Every header byte is authenticated: the fixed part by every chunk and by the
wrap, the key block by the wrap, so a changed header fails to unwrap.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from atlasguard.artifacts.keys import KeyEncryptionKey, Keyring
from atlasguard.errors import IntegrityError

__all__ = [
    "FIXED_LEN",
    "MAGIC",
    "DecryptionError",
    "Header",
    "KeyMismatchError",
    "KeySource",
    "MalformedCiphertextError",
    "Passphrase",
    "new_header",
    "read_header",
    "rewrap",
    "unwrap",
]

MAGIC = b"\x89AGENC\r\n"
VERSION = 1
AEAD_AES256GCM_STREAM = 1
WRAP_KEK, WRAP_SCRYPT, WRAP_ARGON2ID = 1, 2, 3
FIXED_LEN = 20
_FIXED = struct.Struct(">8sBBB2s7s")
_MAX_NAME = 4096
_MAX_KDF_MEMORY_KIB = 1024 * 1024  # refuse a hostile header asking for more than 1 GiB
_MAX_KDF_ITERATIONS = 16
_MAX_SCRYPT_LOG2N = 20


class DecryptionError(IntegrityError):
    """An encrypted artifact cannot be decrypted: malformed, altered or wrong key."""


class MalformedCiphertextError(DecryptionError, ValueError):
    """Not an atlasguard ciphertext, an unknown version, or a damaged header."""


class KeyMismatchError(DecryptionError):
    """The key or passphrase given does not unwrap the data key (or the header was altered)."""


@dataclass(frozen=True, slots=True)
class Passphrase:
    """A passphrase, stretched by Argon2id (default) or scrypt into a wrapping key."""

    secret: bytes = field(repr=False)
    kdf: Literal["argon2id", "scrypt"] = "argon2id"
    argon2_iterations: int = 3
    argon2_memory_kib: int = 64 * 1024
    argon2_lanes: int = 4
    scrypt_log2_n: int = 17


KeySource = KeyEncryptionKey | Keyring | Passphrase


@dataclass(frozen=True, slots=True)
class Header:
    """A parsed header; ``fixed`` is the chunks' associated data."""

    chunk_size: int
    nonce_prefix: bytes
    wrap: int
    kek_id: str
    name: str
    kdf_params: bytes
    wrap_nonce: bytes
    wrapped: bytes

    @property
    def fixed(self) -> bytes:
        """The 20-byte fixed part."""
        log2 = self.chunk_size.bit_length() - 1
        return _FIXED.pack(MAGIC, VERSION, AEAD_AES256GCM_STREAM, log2, b"\0\0", self.nonce_prefix)

    def _key_block_unsealed(self) -> bytes:
        kid, name = self.kek_id.encode("ascii"), self.name.encode("utf-8")
        return (
            bytes([self.wrap, len(kid)])
            + kid
            + struct.pack(">H", len(name))
            + name
            + self.kdf_params
            + self.wrap_nonce
        )

    def wrap_aad(self) -> bytes:
        """Associated data of the key wrap: every header byte before the wrapped key."""
        return self.fixed + self._key_block_unsealed()

    def to_bytes(self) -> bytes:
        """The serialized header."""
        block = self._key_block_unsealed() + self.wrapped
        return self.fixed + struct.pack(">H", len(block)) + block


def _derive(p: Passphrase, wrap: int, params: bytes) -> bytes:
    if wrap == WRAP_SCRYPT:
        salt, log2_n, r, par = params[:16], params[16], params[17], params[18]
        if not 10 <= log2_n <= _MAX_SCRYPT_LOG2N or not 1 <= r <= 32 or not 1 <= par <= 16:
            raise MalformedCiphertextError("scrypt parameters out of bounds")
        return Scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=par).derive(p.secret)
    salt = params[:16]
    iterations, memory, lanes = struct.unpack(">IIB", params[16:25])
    if not (1 <= iterations <= _MAX_KDF_ITERATIONS and 8 * lanes <= memory <= _MAX_KDF_MEMORY_KIB):
        raise MalformedCiphertextError("Argon2id parameters out of bounds")
    if not 1 <= lanes <= 64:
        raise MalformedCiphertextError("Argon2id parameters out of bounds")
    return Argon2id(
        salt=salt, length=32, iterations=iterations, lanes=lanes, memory_cost=memory
    ).derive(p.secret)


def _wrapping(source: KeySource) -> tuple[int, str, bytes, bytes]:
    """(wrap id, kek id, kdf params, wrapping key) for wrapping a new data key."""
    if isinstance(source, Passphrase):
        salt = os.urandom(16)
        if source.kdf == "scrypt":
            params = salt + bytes([source.scrypt_log2_n, 8, 1])
            return WRAP_SCRYPT, "scrypt", params, _derive(source, WRAP_SCRYPT, params)
        params = salt + struct.pack(
            ">IIB", source.argon2_iterations, source.argon2_memory_kib, source.argon2_lanes
        )
        return WRAP_ARGON2ID, "argon2id", params, _derive(source, WRAP_ARGON2ID, params)
    kek = source.active if isinstance(source, Keyring) else source
    return WRAP_KEK, kek.key_id, b"", kek.key


def _seal(
    source: KeySource, data_key: bytes, chunk_size: int, nonce_prefix: bytes, name: str
) -> Header:
    wrap, kek_id, params, wrapping_key = _wrapping(source)
    if len(name.encode("utf-8")) > _MAX_NAME:
        raise MalformedCiphertextError("artifact name too long for the header")
    draft = Header(chunk_size, nonce_prefix, wrap, kek_id, name, params, os.urandom(12), b"")
    wrapped = AESGCM(wrapping_key).encrypt(draft.wrap_nonce, data_key, draft.wrap_aad())
    return Header(chunk_size, nonce_prefix, wrap, kek_id, name, params, draft.wrap_nonce, wrapped)


def new_header(source: KeySource, chunk_size: int, name: str) -> tuple[Header, bytes]:
    """A header for a fresh artifact and its random data key."""
    if chunk_size < 4096 or chunk_size > 1 << 26 or chunk_size & (chunk_size - 1):
        raise MalformedCiphertextError("chunk size must be a power of two from 4 KiB to 64 MiB")
    data_key = os.urandom(32)
    return _seal(source, data_key, chunk_size, os.urandom(7), name), data_key


def unwrap(header: Header, source: KeySource, where: str) -> bytes:
    """The data key; :class:`KeyMismatchError` naming the key the artifact needs."""
    if header.wrap == WRAP_KEK:
        if isinstance(source, Passphrase):
            raise KeyMismatchError(f"{where}: encrypted with key {header.kek_id}, not a passphrase")
        if isinstance(source, Keyring):
            if header.kek_id not in {k.key_id for k in source.keys}:
                raise KeyMismatchError(
                    f"{where}: encrypted with key {header.kek_id}, not in keyring"
                )
            wrapping_key = source.get(header.kek_id).key
        else:
            if source.key_id != header.kek_id:
                raise KeyMismatchError(
                    f"{where}: encrypted with key {header.kek_id}, given {source.key_id}"
                )
            wrapping_key = source.key
    else:
        if not isinstance(source, Passphrase):
            raise KeyMismatchError(f"{where}: encrypted with a passphrase; give the passphrase")
        wrapping_key = _derive(source, header.wrap, header.kdf_params)
    try:
        return AESGCM(wrapping_key).decrypt(header.wrap_nonce, header.wrapped, header.wrap_aad())
    except InvalidTag:
        raise KeyMismatchError(
            f"{where}: cannot unwrap the data key (wrong key or passphrase, or altered header)"
        ) from None


def rewrap(header: Header, data_key: bytes, new: KeySource) -> Header:
    """The same artifact's header with its data key wrapped by ``new``."""
    return _seal(new, data_key, header.chunk_size, header.nonce_prefix, header.name)


def _exact(src: BinaryIO, n: int, where: str) -> bytes:
    data = src.read(n)
    if len(data) != n:
        raise MalformedCiphertextError(f"{where}: truncated header")
    return data


def read_header(src: BinaryIO, where: str) -> Header:
    """Parse a header from ``src``, leaving it at the first chunk."""
    fixed = src.read(FIXED_LEN)
    if len(fixed) < FIXED_LEN or not fixed.startswith(MAGIC):
        raise MalformedCiphertextError(f"{where}: not an atlasguard encrypted artifact")
    _magic, version, aead, log2, reserved, prefix = _FIXED.unpack(fixed)
    if version != VERSION or aead != AEAD_AES256GCM_STREAM:
        raise MalformedCiphertextError(f"{where}: unsupported version {version} / aead {aead}")
    if not 12 <= log2 <= 26 or reserved != b"\0\0":
        raise MalformedCiphertextError(f"{where}: bad chunk size or reserved bytes")
    (block_len,) = struct.unpack(">H", _exact(src, 2, where))
    block = _exact(src, block_len, where)
    try:
        wrap, kid_len = block[0], block[1]
        pos = 2 + kid_len
        kek_id = block[2:pos].decode("ascii")
        (name_len,) = struct.unpack(">H", block[pos : pos + 2])
        name = block[pos + 2 : pos + 2 + name_len].decode("utf-8")
        if name_len > _MAX_NAME or len(name.encode("utf-8")) != name_len:
            raise ValueError("name")
        pos += 2 + name_len
        params_len = {WRAP_KEK: 0, WRAP_SCRYPT: 19, WRAP_ARGON2ID: 25}[wrap]
        params = block[pos : pos + params_len]
        pos += params_len
        wrap_nonce, wrapped = block[pos : pos + 12], block[pos + 12 :]
        if len(params) != params_len or len(wrap_nonce) != 12 or len(wrapped) != 48:
            raise ValueError("lengths")
    except (IndexError, KeyError, ValueError, struct.error):
        raise MalformedCiphertextError(f"{where}: damaged key block in header") from None
    return Header(1 << log2, prefix, wrap, kek_id, name, params, wrap_nonce, wrapped)
