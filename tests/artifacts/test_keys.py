"""Key files: EC signing key pairs and keyrings of key-encryption keys."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from atlasguard.artifacts.keys import (
    KeyFileError,
    create_keyring,
    kek_from_bytes,
    load_keyring,
    load_private_key,
    load_public_key,
    public_key_hint,
    write_signing_keypair,
)
from atlasguard.errors import ConfigurationError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keypair_files(tmp_path: Path) -> None:
    priv, pub = write_signing_keypair(tmp_path, curve="P-384")
    assert (priv.name, pub.name) == ("private.pem", "public.pem")
    assert mode(priv) == 0o600
    key = load_private_key(priv)
    assert key.curve.name == "secp384r1"
    assert public_key_hint(load_public_key(pub)) == public_key_hint(key.public_key())
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_signing_keypair(tmp_path)


def test_passphrase_protected_private_key(tmp_path: Path) -> None:
    priv, _ = write_signing_keypair(tmp_path, passphrase=b"correct horse")
    assert b"ENCRYPTED" in priv.read_bytes()
    with pytest.raises(KeyFileError, match="passphrase"):
        load_private_key(priv)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_private_key(priv, b"wrong")
    assert load_private_key(priv, b"correct horse").curve.name == "secp256r1"


def test_non_ec_and_garbage_keys_refused(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p = tmp_path / "rsa.pem"
    p.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(KeyFileError, match="not an EC"):
        load_private_key(p)
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(KeyFileError):
        load_public_key(tmp_path / "junk.pem")
    with pytest.raises(KeyFileError, match="cannot read"):
        load_public_key(tmp_path / "missing.pem")
    assert issubclass(KeyFileError, ConfigurationError)


def test_keyring(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "kek.json"
    ring = create_keyring(path)
    assert mode(path) == 0o600
    assert load_keyring(path) == ring
    assert ring.active.key_id == kek_from_bytes(ring.active.key).key_id
    assert repr(ring.active.key) not in repr(ring)  # the key never shows in a repr
    with pytest.raises(KeyFileError, match="no key"):
        ring.get("kek-nope")
    with pytest.raises(KeyFileError, match="refusing"):
        create_keyring(path)


@pytest.mark.parametrize(
    "content",
    [
        "",
        "[]",
        '{"kind": "other"}',
        '{"kind": "atlasguard-keyring", "keys": [], "active": "x"}',
        '{"kind": "atlasguard-keyring", "keys": [{"id": "a", "key": "AAAA"}], "active": "a"}',
        '{"kind": "atlasguard-keyring", "keys": [{"id": "a", "key": "!!"}], "active": "a"}',
    ],
)
def test_malformed_keyring(tmp_path: Path, content: str) -> None:
    p = tmp_path / "kek.json"
    p.write_text(content)
    with pytest.raises(KeyFileError):
        load_keyring(p)


def test_kek_must_be_32_bytes() -> None:
    with pytest.raises(KeyFileError):
        kek_from_bytes(b"short")
