"""Signed checkpoints of the audit log: (size, root) signed by the deployment's key.

A checkpoint is a short text note, signed with ECDSA (P-256 or P-384, SHA-256
or SHA-384). Export one (``atlasguard audit checkpoint --output``) and keep it
elsewhere: later verification against it proves that the log still contains
exactly the records it had, in order, and only grew.

>>> from cryptography.hazmat.primitives.asymmetric import ec
>>> key = ec.generate_private_key(ec.SECP256R1())
>>> signer = CheckpointSigner(key)
>>> cp = signer.sign("demo", 3, bytes(32), 0.0)
>>> CheckpointVerifier(key.public_key()).verify(cp)
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from atlasguard.errors import ConfigurationError, IntegrityError

__all__ = [
    "Checkpoint",
    "CheckpointSigner",
    "CheckpointVerifier",
    "load_signer",
    "load_verifier",
]

_HEADER = "atlasguard audit checkpoint v1"


def _key_id(public: ec.EllipticCurvePublicKey) -> str:
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def _hash_for(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    return hashes.SHA384() if curve.key_size >= 384 else hashes.SHA256()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that the log of ``log_id`` had ``size`` records with head ``root``."""

    log_id: str
    size: int
    root: bytes
    created_at: float
    key_id: str
    signature: bytes

    @property
    def note(self) -> bytes:
        when = datetime.fromtimestamp(self.created_at, UTC).isoformat()
        return (
            f"{_HEADER}\nlog: {self.log_id}\nsize: {self.size}\n"
            f"root: {base64.b64encode(self.root).decode()}\ntime: {when}\n"
        ).encode()

    def to_json(self) -> str:
        return json.dumps(
            {
                "log_id": self.log_id,
                "size": self.size,
                "root": self.root.hex(),
                "created_at": self.created_at,
                "key_id": self.key_id,
                "signature": base64.b64encode(self.signature).decode(),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        try:
            raw = json.loads(text)
            return cls(
                log_id=str(raw["log_id"]),
                size=int(raw["size"]),
                root=bytes.fromhex(raw["root"]),
                created_at=float(raw["created_at"]),
                key_id=str(raw["key_id"]),
                signature=base64.b64decode(raw["signature"], validate=True),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"not an audit checkpoint: {exc}") from None


class CheckpointSigner:
    """Signs checkpoints with an EC private key."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        self.key_id = _key_id(key.public_key())

    def sign(self, log_id: str, size: int, root: bytes, created_at: float) -> Checkpoint:
        unsigned = Checkpoint(log_id, size, root, created_at, self.key_id, b"")
        signature = self._key.sign(unsigned.note, ec.ECDSA(_hash_for(self._key.curve)))
        return Checkpoint(log_id, size, root, created_at, self.key_id, signature)

    def verifier(self) -> CheckpointVerifier:
        return CheckpointVerifier(self._key.public_key())


class CheckpointVerifier:
    """Checks checkpoint signatures with an EC public key; raises on any failure."""

    def __init__(self, key: ec.EllipticCurvePublicKey) -> None:
        self._key = key
        self.key_id = _key_id(key)

    def verify(self, checkpoint: Checkpoint) -> None:
        if checkpoint.key_id != self.key_id:
            raise IntegrityError(
                f"checkpoint at size {checkpoint.size} was signed by key {checkpoint.key_id}, "
                f"not by the configured key {self.key_id}"
            )
        try:
            self._key.verify(
                checkpoint.signature, checkpoint.note, ec.ECDSA(_hash_for(self._key.curve))
            )
        except InvalidSignature:
            raise IntegrityError(
                f"checkpoint at size {checkpoint.size} has an invalid signature"
            ) from None


def load_signer(path: Path, passphrase: bytes | None = None) -> CheckpointSigner:
    """The signer for a PEM EC private key file."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=passphrase)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"cannot load signing key {path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"{path}: expected an EC private key (P-256 or P-384)")
    return CheckpointSigner(key)


def load_verifier(path: Path) -> CheckpointVerifier:
    """The verifier for a PEM EC public key file (or a private key file)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read key {path}: {exc.strerror}") from None
    try:
        public = serialization.load_pem_public_key(data)
    except ValueError:
        return load_signer(path).verifier()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ConfigurationError(f"{path}: expected an EC public key (P-256 or P-384)")
    return CheckpointVerifier(public)
