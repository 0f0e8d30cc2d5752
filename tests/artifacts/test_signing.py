"""Signing and verification in the model-signing format: round trips and every tamper case."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlasguard.artifacts import _bundle
from atlasguard.artifacts.keys import generate_signing_key, public_key_hint
from atlasguard.artifacts.manifest import (
    FileAddedError,
    FileChangedError,
    FileRemovedError,
    FileRenamedError,
    hash_model,
)
from atlasguard.artifacts.signing import (
    CONTROLS,
    BadSignatureError,
    MalformedBundleError,
    SignatureError,
    WrongKeyError,
    manifest_from_bundle,
    sign_manifest,
    sign_model,
    verify_model,
)
from atlasguard.errors import AtlasguardError, VerificationError

KEY = generate_signing_key("P-256")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / "weights.bin").write_bytes(bytes(range(256)) * 50)
    (root / "config.json").write_text('{"a": 1}')
    (root / "sub" / "vocab.txt").write_text("a b c")
    return root


def test_control_declared() -> None:
    assert CONTROLS[0].key == "signing"
    assert CONTROLS[0].mitigates == frozenset({"AML.M0013"})


def test_bundle_has_the_model_signing_shape(model: Path) -> None:
    sig = sign_model(model, KEY)
    assert sig == model / "model.sig"
    bundle = json.loads(sig.read_bytes())
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == public_key_hint(KEY.public_key())
    env = bundle["dsseEnvelope"]
    assert env["payloadType"] == "application/vnd.in-toto+json"
    stmt = json.loads(base64.b64decode(env["payload"]))
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["predicateType"] == "https://model_signing/signature/v1.0"
    (subject,) = stmt["subject"]
    assert subject["name"] == "model"
    resources = stmt["predicate"]["resources"]
    assert [r["name"] for r in resources] == ["config.json", "sub/vocab.txt", "weights.bin"]
    assert "model.sig" in stmt["predicate"]["serialization"]["ignore_paths"]
    root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources))
    assert subject["digest"]["sha256"] == root.hexdigest()
    # The signature is ECDSA over DSSE's PAE of the payload.
    KEY.public_key().verify(
        base64.b64decode(env["signatures"][0]["sig"]),
        _bundle.pae(env["payloadType"], base64.b64decode(env["payload"])),
        ec.ECDSA(hashes.SHA256()),
    )


@pytest.mark.parametrize(
    ("curve", "shard_size", "algorithm"),
    [
        ("P-256", None, "sha256"),
        ("P-384", None, "sha256"),
        ("P-256", 4096, "sha256"),
        ("P-256", None, "blake3"),
    ],
)
def test_round_trip(model: Path, curve: str, shard_size: int | None, algorithm: str) -> None:
    key = generate_signing_key(curve)  # type: ignore[arg-type]
    sign_model(model, key, shard_size=shard_size, algorithm=algorithm)  # type: ignore[arg-type]
    m = verify_model(model, key.public_key())
    assert m.serialization.shard_size == shard_size
    assert m.serialization.hash_type == algorithm


def test_signature_outside_model(model: Path, tmp_path: Path) -> None:
    sig = sign_model(model, KEY, signature=tmp_path / "out.sig")
    assert not (model / "model.sig").exists()
    verify_model(model, KEY.public_key(), signature=sig)


def test_tamper_cases_each_named(model: Path) -> None:
    sign_model(model, KEY)
    pub = KEY.public_key()
    verify_model(model, pub)

    data = bytearray((model / "weights.bin").read_bytes())
    data[7] ^= 0x80
    (model / "weights.bin").write_bytes(bytes(data))
    with pytest.raises(FileChangedError, match=re.escape("weights.bin")):
        verify_model(model, pub)
    data[7] ^= 0x80
    (model / "weights.bin").write_bytes(bytes(data))

    (model / "evil.pkl").write_bytes(b"c__builtin__")
    with pytest.raises(FileAddedError, match=re.escape("evil.pkl")):
        verify_model(model, pub)
    (model / "evil.pkl").unlink()

    (model / "config.json").unlink()
    with pytest.raises(FileRemovedError, match=re.escape("config.json")):
        verify_model(model, pub)
    (model / "config.json").write_text('{"a": 1}')

    (model / "sub" / "vocab.txt").rename(model / "sub" / "vocab2.txt")
    with pytest.raises(FileRenamedError, match=re.escape("sub/vocab.txt -> sub/vocab2.txt")):
        verify_model(model, pub)
    (model / "sub" / "vocab2.txt").rename(model / "sub" / "vocab.txt")
    verify_model(model, pub)

    other = generate_signing_key().public_key()
    with pytest.raises(WrongKeyError, match="another key"):
        verify_model(model, other)

    (model / "model.sig").write_text("{not json")
    with pytest.raises(MalformedBundleError, match="not JSON"):
        verify_model(model, pub)
    (model / "model.sig").unlink()
    with pytest.raises(MalformedBundleError, match="cannot read"):
        verify_model(model, pub)


def _resign(bundle: dict, statement: dict, key: ec.EllipticCurvePrivateKey) -> bytes:
    payload = json.dumps(statement).encode()
    sig = key.sign(_bundle.pae(_bundle.PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    return _bundle.build_bundle(payload, sig, public_key_hint(key.public_key()))


def test_altered_payload_fails_signature(model: Path) -> None:
    bundle = json.loads(sign_manifest(hash_model(model), KEY))
    stmt = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    stmt["predicate"]["resources"][0]["digest"] = "00" * 32
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    with pytest.raises(BadSignatureError):
        manifest_from_bundle(json.dumps(bundle).encode(), KEY.public_key())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["subject"][0]["digest"].update(sha256="00" * 32), "subject digest"),
        (lambda s: s.update(predicateType="https://model_signing/Digests/v0.1"), "predicateType"),
        (lambda s: s.update(_type="x"), "_type"),
        (lambda s: s.update(subject=[]), "one subject"),
        (lambda s: s["predicate"]["serialization"].update(method="x"), "method"),
        (lambda s: s["predicate"]["resources"][0].update(digest="abc"), "digest"),
        (lambda s: s["predicate"].update(resources=None), "resources"),
    ],
)
def test_validly_signed_but_inconsistent_statement(model: Path, edit: object, message: str) -> None:
    raw = sign_manifest(hash_model(model), KEY)
    bundle = json.loads(raw)
    stmt = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    edit(stmt)  # type: ignore[operator]
    with pytest.raises(MalformedBundleError, match=message):
        manifest_from_bundle(_resign(bundle, stmt, KEY), KEY.public_key())


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b.update(mediaType="application/vnd.dev.sigstore.bundle+json;version=0.1"),
        lambda b: b["dsseEnvelope"].update(payloadType="text/plain"),
        lambda b: b["dsseEnvelope"].update(signatures=[]),
        lambda b: b["dsseEnvelope"]["signatures"][0].update(sig="***"),
        lambda b: b["dsseEnvelope"].update(payload=5),
        lambda b: b.update(verificationMaterial=[]),
        lambda b: b.pop("dsseEnvelope"),
    ],
)
def test_malformed_bundle(model: Path, edit: object) -> None:
    bundle = json.loads(sign_manifest(hash_model(model), KEY))
    edit(bundle)  # type: ignore[operator]
    with pytest.raises(MalformedBundleError):
        manifest_from_bundle(json.dumps(bundle).encode(), KEY.public_key())


def test_bundle_without_hint_and_wrong_key(model: Path) -> None:
    bundle = json.loads(sign_manifest(hash_model(model), KEY))
    bundle["verificationMaterial"]["publicKey"] = {}
    raw = json.dumps(bundle).encode()
    manifest_from_bundle(raw, KEY.public_key())
    with pytest.raises(WrongKeyError):
        manifest_from_bundle(raw, generate_signing_key().public_key())


_SIGNED: dict[str, bytes] = {}


@settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_bundles_never_verify(model: Path, data: st.DataObject) -> None:
    manifest = hash_model(model)
    raw = _SIGNED.setdefault("b", sign_manifest(manifest, KEY))
    original = _bundle.parse_bundle(raw)
    mutated = bytearray(raw)
    for i in data.draw(st.sets(st.integers(0, len(mutated) - 1), min_size=1, max_size=4)):
        mutated[i] ^= data.draw(st.integers(1, 255))
    try:
        got = manifest_from_bundle(bytes(mutated), KEY.public_key())
    except SignatureError as exc:
        assert str(exc)
        return
    except AtlasguardError as exc:  # pragma: no cover - would be a wrong error class
        pytest.fail(f"unexpected error class {type(exc).__name__}: {exc}")
    # Accepted: the mutation must have been semantically void (JSON whitespace, base64 pad bits).
    assert _bundle.parse_bundle(bytes(mutated)) == original
    assert got == manifest
    assert isinstance(SignatureError("x"), VerificationError)
