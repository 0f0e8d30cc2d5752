"""Key material: EC signing keys (PEM) and keyrings of key-encryption keys.

Signing keys are the model-signing format's key method: ECDSA on P-256 or
P-384 (P-521 is read, for interoperability). A keyring is a small JSON file of
256-bit key-encryption keys (KEKs), each with an id derived from the key, the
newest one active; it is created with mode 0600 and never overwritten.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> priv, pub = write_signing_keypair(d)
>>> load_public_key(pub).curve.name
'secp256r1'
>>> ring = create_keyring(d / "kek.json")
>>> len(ring.active.key)
32
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from atlasguard.errors import ConfigurationError

__all__ = [
    "KEYRING_KIND",
    "Curve",
    "KeyEncryptionKey",
    "KeyFileError",
    "Keyring",
    "create_keyring",
    "generate_signing_key",
    "kek_from_bytes",
    "load_keyring",
    "load_private_key",
    "load_public_key",
    "public_key_hint",
    "write_signing_keypair",
]

Curve = Literal["P-256", "P-384"]
KEYRING_KIND = "atlasguard-keyring"
_CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}
_SUPPORTED = frozenset({"secp256r1", "secp384r1", "secp521r1"})


class KeyFileError(ConfigurationError):
    """A key file is missing, unreadable, of the wrong kind, or its passphrase is wrong."""


def generate_signing_key(curve: Curve = "P-256") -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA private key on ``curve``."""
    if curve not in _CURVES:
        raise KeyFileError(f"unsupported curve {curve!r} (use P-256 or P-384)")
    return ec.generate_private_key(_CURVES[curve])


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never replace a key that exists; the mode is set at creation, not after.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise KeyFileError(f"{path} exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_signing_keypair(
    directory: str | os.PathLike[str],
    *,
    curve: Curve = "P-256",
    passphrase: bytes | None = None,
) -> tuple[Path, Path]:
    """Write ``private.pem`` (encrypted when ``passphrase`` is given) and ``public.pem``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    key = generate_signing_key(curve)
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(out / "private.pem", priv, 0o600)
    _write_new(out / "public.pem", pub, 0o644)
    return out / "private.pem", out / "public.pem"


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key: {exc.strerror or exc}") from None


def load_private_key(
    path: str | os.PathLike[str], passphrase: bytes | None = None
) -> ec.EllipticCurvePrivateKey:
    """Load a PEM EC private key; :class:`KeyFileError` if it is not one."""
    try:
        key = serialization.load_pem_private_key(_read(path), passphrase)
    except TypeError:
        raise KeyFileError(f"{path}: the key is encrypted; give its passphrase") from None
    except ValueError:
        raise KeyFileError(f"{path}: not a PEM private key, or wrong passphrase") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in _SUPPORTED:
        raise KeyFileError(f"{path}: not an EC P-256/P-384/P-521 private key")
    return key


def load_public_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePublicKey:
    """Load a PEM EC public key; :class:`KeyFileError` if it is not one."""
    try:
        key = serialization.load_pem_public_key(_read(path))
    except ValueError:
        raise KeyFileError(f"{path}: not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _SUPPORTED:
        raise KeyFileError(f"{path}: not an EC P-256/P-384/P-521 public key")
    return key


def public_key_hint(key: ec.EllipticCurvePublicKey) -> str:
    """The bundle's ``publicKey.hint``: SHA-256 (hex) of the SubjectPublicKeyInfo PEM."""
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyEncryptionKey:
    """A 256-bit key-encryption key and its id (``kek-`` + 16 hex of its SHA-256)."""

    key_id: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != 32:
            raise KeyFileError(f"key-encryption key {self.key_id!r} is not 32 bytes")


def kek_from_bytes(key: bytes) -> KeyEncryptionKey:
    """A :class:`KeyEncryptionKey` whose id is derived from the key itself."""
    return KeyEncryptionKey(key_id="kek-" + hashlib.sha256(key).hexdigest()[:16], key=key)


@dataclass(frozen=True, slots=True)
class Keyring:
    """Key-encryption keys by id; ``active`` wraps new data keys."""

    keys: tuple[KeyEncryptionKey, ...]
    active_id: str

    @property
    def active(self) -> KeyEncryptionKey:
        """The key that wraps new data keys."""
        return self.get(self.active_id)

    def get(self, key_id: str) -> KeyEncryptionKey:
        """The key with this id; :class:`KeyFileError` when the ring lacks it."""
        for k in self.keys:
            if k.key_id == key_id:
                return k
        raise KeyFileError(f"keyring has no key {key_id!r}")

    def to_json(self) -> str:
        """The keyring file's content."""
        doc = {
            "kind": KEYRING_KIND,
            "version": 1,
            "active": self.active_id,
            "keys": [{"id": k.key_id, "key": base64.b64encode(k.key).decode()} for k in self.keys],
        }
        return json.dumps(doc, indent=2) + "\n"


def create_keyring(path: str | os.PathLike[str]) -> Keyring:
    """Create a keyring file (mode 0600) holding one new random key."""
    kek = kek_from_bytes(secrets.token_bytes(32))
    ring = Keyring(keys=(kek,), active_id=kek.key_id)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_new(target, ring.to_json().encode(), 0o600)
    return ring


def load_keyring(path: str | os.PathLike[str]) -> Keyring:
    """Read a keyring file; :class:`KeyFileError` if malformed."""
    try:
        doc = json.loads(_read(path))
        if not isinstance(doc, dict) or doc.get("kind") != KEYRING_KIND:
            raise ValueError("not an atlasguard keyring")
        keys = tuple(
            KeyEncryptionKey(key_id=str(k["id"]), key=base64.b64decode(k["key"], validate=True))
            for k in doc["keys"]
        )
        ring = Keyring(keys=keys, active_id=str(doc["active"]))
        ring.active  # noqa: B018 - checks that the active id is present
    except KeyFileError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"{path}: malformed keyring: {exc}") from None
    return ring
