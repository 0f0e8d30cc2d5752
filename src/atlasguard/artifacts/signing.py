"""Signatures over model directories in the OpenSSF model-signing format (AML.M0013).

:func:`sign_model` hashes a model (:mod:`atlasguard.artifacts.manifest`) and
writes a Sigstore bundle (v0.3) holding a DSSE envelope over an in-toto
Statement v1: one subject, the model's name with the SHA-256 over the
name-sorted resource digests, predicate type
``https://model_signing/signature/v1.0`` with the ``serialization`` settings and
the ``resources`` list. Keys are ECDSA P-256/P-384 (the format's key method), so
``model_signing verify key`` accepts what we sign and :func:`verify_model`
accepts what it signs. Everything is offline.

Verification raises: :class:`WrongKeyError`, :class:`MalformedBundleError`,
:class:`BadSignatureError`, or a :class:`~atlasguard.artifacts.manifest.ManifestMismatchError`
subclass naming the changed, added, removed or renamed files.

>>> import tempfile, pathlib
>>> from atlasguard.artifacts.keys import generate_signing_key
>>> model = pathlib.Path(tempfile.mkdtemp())
>>> _ = (model / "weights.bin").write_bytes(b"abc")
>>> key = generate_signing_key()
>>> sig = sign_model(model, key)
>>> sig.name
'model.sig'
>>> verify_model(model, key.public_key()).resources[0].name
'weights.bin'
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from atlasguard.artifacts._bundle import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    MalformedBundleError,
    SignatureError,
    build_bundle,
    pae,
    parse_bundle,
    parse_statement,
)
from atlasguard.artifacts.keys import public_key_hint
from atlasguard.artifacts.manifest import (
    HashAlgorithm,
    MalformedManifestError,
    Manifest,
    ProgressCallback,
    hash_model,
    verify_manifest,
)
from atlasguard.controls import Control, ControlSettings

__all__ = [
    "CONTROLS",
    "DEFAULT_SIGNATURE_NAME",
    "BadSignatureError",
    "MalformedBundleError",
    "SignatureError",
    "SigningSettings",
    "WrongKeyError",
    "default_signature_path",
    "manifest_from_bundle",
    "sign_manifest",
    "sign_model",
    "statement_payload",
    "verify_model",
]

DEFAULT_SIGNATURE_NAME = "model.sig"


class SigningSettings(ControlSettings):
    """``[controls.signing]``: refuse models without a valid signature."""

    # The verification key is the deployment's: [keys] public_key.
    require: bool = False
    signature_name: str = DEFAULT_SIGNATURE_NAME


CONTROLS = (
    Control(
        key="signing",
        title="Model signatures",
        mitigates=frozenset({"AML.M0013"}),
        summary="ECDSA signatures over model directories in the OpenSSF model-signing "
        "format (Sigstore bundle, DSSE, in-toto), interoperable with model_signing.",
        enable="atlasguard keygen --output keys/; atlasguard sign MODEL --key keys/private.pem; "
        "set [keys] public_key = 'keys/public.pem' and [controls.signing] require = true",
        settings=SigningSettings,
    ),
)


class WrongKeyError(SignatureError):
    """The bundle was signed by a different key than the one given."""


class BadSignatureError(SignatureError):
    """The signature does not verify over the payload (the bundle was altered)."""


def _hash_for(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    # The format ties the digest to the curve size (Sigstore's key details).
    return {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[curve.key_size]


def default_signature_path(model: str | os.PathLike[str]) -> Path:
    """``MODEL/model.sig`` for a directory, ``MODEL.sig`` beside a single file."""
    p = Path(model)
    return p / DEFAULT_SIGNATURE_NAME if p.is_dir() else p.with_name(p.name + ".sig")


def _relative_inside(model: Path, sig: Path) -> str | None:
    """The signature's path relative to the model directory, if it lies inside."""
    if not model.is_dir():
        return None
    try:
        return sig.resolve().relative_to(model.resolve()).as_posix()
    except ValueError:
        return None


def statement_payload(manifest: Manifest) -> bytes:
    """The in-toto Statement v1 that model_signing signs for this manifest."""
    doc = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": manifest.model_name, "digest": {"sha256": manifest.root_digest()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": manifest.serialization.to_dict(),
            "resources": [
                {"name": r.name, "algorithm": r.algorithm, "digest": r.digest}
                for r in manifest.resources
            ],
        },
    }
    return json.dumps(doc, indent=2).encode()


def sign_manifest(manifest: Manifest, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The bundle (JSON bytes) signing ``manifest`` with ``key``."""
    payload = statement_payload(manifest)
    sig = key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(_hash_for(key.curve)))
    return build_bundle(payload, sig, public_key_hint(key.public_key()))


def sign_model(
    model: str | os.PathLike[str],
    key: ec.EllipticCurvePrivateKey,
    *,
    signature: str | os.PathLike[str] | None = None,
    algorithm: HashAlgorithm = "sha256",
    shard_size: int | None = None,
    allow_symlinks: bool = False,
    ignore_paths: Iterable[str] = (),
    progress: ProgressCallback | None = None,
) -> Path:
    """Hash and sign ``model``; write the bundle and return its path.

    The signature file is left out of the hash (and recorded in
    ``ignore_paths``, as model_signing does) when it lies inside the model.
    """
    root = Path(model)
    sig_path = Path(signature) if signature is not None else default_signature_path(root)
    ignores = list(ignore_paths)
    inside = _relative_inside(root, sig_path)
    if inside is not None:
        ignores.append(inside)
    manifest = hash_model(
        root,
        algorithm=algorithm,
        shard_size=shard_size,
        allow_symlinks=allow_symlinks,
        ignore_paths=ignores,
        progress=progress,
    )
    data = sign_manifest(manifest, key)
    tmp = sig_path.with_name(sig_path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(sig_path)
    return sig_path


def manifest_from_bundle(data: bytes, key: ec.EllipticCurvePublicKey) -> Manifest:
    """Verify a bundle's signature with ``key`` and return the manifest it signs."""
    env = parse_bundle(data)
    hint = public_key_hint(key)
    if env.key_hint is not None and env.key_hint != hint:
        raise WrongKeyError(
            f"signed by another key (bundle key hint {env.key_hint[:16]}..., "
            f"given key {hint[:16]}...)"
        )
    try:
        key.verify(
            env.signature, pae(env.payload_type, env.payload), ec.ECDSA(_hash_for(key.curve))
        )
    except InvalidSignature:
        cls = BadSignatureError if env.key_hint is not None else WrongKeyError
        raise cls("signature does not verify: wrong key, or the bundle was altered") from None
    name, subject_digest, serialization, resources = parse_statement(env.payload)
    try:
        manifest = Manifest.from_parts(name, serialization, resources)
    except MalformedManifestError as exc:
        raise MalformedBundleError(f"signed manifest is malformed: {exc}") from None
    if manifest.root_digest() != subject_digest:
        raise MalformedBundleError("subject digest does not match the signed resources")
    return manifest


def verify_model(
    model: str | os.PathLike[str],
    key: ec.EllipticCurvePublicKey,
    *,
    signature: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
) -> Manifest:
    """Verify ``model`` against its bundle; return the signed manifest, or raise.

    The serialization (method, hash, shard size, ignored paths) is taken from
    the signed payload; the signature file itself is ignored when inside.
    """
    root = Path(model)
    sig_path = Path(signature) if signature is not None else default_signature_path(root)
    try:
        data = sig_path.read_bytes()
    except OSError as exc:
        raise MalformedBundleError(f"{sig_path}: cannot read signature: {exc.strerror}") from None
    manifest = manifest_from_bundle(data, key)
    inside = _relative_inside(root, sig_path)
    verify_manifest(root, manifest, extra_ignores=[inside] if inside else [], progress=progress)
    return manifest
