"""Sigstore bundle v0.3 with a DSSE envelope over an in-toto Statement v1.

The exact shape ``model_signing`` writes for key signing: ``mediaType``,
``verificationMaterial.publicKey.hint`` (SHA-256 of the public key PEM),
``tlogEntries`` empty, and ``dsseEnvelope`` with a base64 ``payload``, its
``payloadType`` and one signature over DSSE's pre-authentication encoding.
Parsing is strict and raises :class:`MalformedBundleError` on anything else.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from atlasguard.errors import VerificationError

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "Envelope",
    "MalformedBundleError",
    "SignatureError",
    "build_bundle",
    "pae",
    "parse_bundle",
    "parse_statement",
]

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
_MAX_BUNDLE = 256 * 1024 * 1024


class SignatureError(VerificationError):
    """A signature does not verify."""


class MalformedBundleError(SignatureError, ValueError):
    """A signature file is not a well-formed model-signing bundle."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding (what is actually signed)."""
    ptype = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(payload), payload)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The parts of a bundle a verifier needs."""

    key_hint: str | None
    payload_type: str
    payload: bytes
    signature: bytes


def build_bundle(payload: bytes, signature: bytes, key_hint: str) -> bytes:
    """The bundle JSON for a signed payload."""
    doc = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
        },
    }
    return json.dumps(doc, indent=2).encode() + b"\n"


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedBundleError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedBundleError(f"{what} is not valid base64") from None


def _obj(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedBundleError(f"{what} is not an object")
    return value


def _only(obj: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise MalformedBundleError(f"{what} has unexpected field(s): {', '.join(unknown)}")


_BUNDLE_FIELDS = frozenset({"mediaType", "verificationMaterial", "dsseEnvelope"})
_MATERIAL_FIELDS = frozenset(
    {"publicKey", "certificate", "x509CertificateChain", "tlogEntries", "timestampVerificationData"}
)


def parse_bundle(data: bytes) -> Envelope:
    """Parse the bundle JSON (no cryptography yet)."""
    if len(data) > _MAX_BUNDLE:
        raise MalformedBundleError("signature file is too large to be a bundle")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedBundleError("signature file is not JSON") from None
    doc = _obj(doc, "bundle")
    _only(doc, _BUNDLE_FIELDS, "bundle")
    if doc.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise MalformedBundleError(
            f"bundle mediaType is {doc.get('mediaType')!r}, expected {BUNDLE_MEDIA_TYPE!r}"
        )
    material = _obj(doc.get("verificationMaterial"), "verificationMaterial")
    _only(material, _MATERIAL_FIELDS, "verificationMaterial")
    if "certificate" in material or "x509CertificateChain" in material:
        raise MalformedBundleError("certificate bundles are not supported; use key signing")
    if "publicKey" not in material:
        raise MalformedBundleError("verificationMaterial has no publicKey (not key signing)")
    public_key = _obj(material["publicKey"], "verificationMaterial.publicKey")
    # rawBytes and keyDetails: written by model_signing before 1.0, ignored as it does.
    _only(
        public_key, frozenset({"hint", "rawBytes", "keyDetails"}), "verificationMaterial.publicKey"
    )
    raw_hint = public_key.get("hint")
    if raw_hint is not None and not isinstance(raw_hint, str):
        raise MalformedBundleError("publicKey.hint is not a string")
    hint = raw_hint or None
    env = _obj(doc.get("dsseEnvelope"), "dsseEnvelope")
    _only(env, frozenset({"payload", "payloadType", "signatures"}), "dsseEnvelope")
    payload_type = env.get("payloadType")
    if payload_type != PAYLOAD_TYPE:
        raise MalformedBundleError(f"payloadType is {payload_type!r}, expected {PAYLOAD_TYPE!r}")
    sigs = env.get("signatures")
    if not isinstance(sigs, list) or len(sigs) != 1:
        raise MalformedBundleError("dsseEnvelope must hold exactly one signature")
    entry = _obj(sigs[0], "signature")
    _only(entry, frozenset({"sig", "keyid"}), "signature")
    sig = _b64(entry.get("sig"), "signature")
    return Envelope(
        key_hint=hint,
        payload_type=payload_type,
        payload=_b64(env.get("payload"), "payload"),
        signature=sig,
    )


def parse_statement(payload: bytes) -> tuple[str, str, Any, Any]:
    """Check the in-toto statement.

    Returns (model name, subject digest, serialization, resources).
    """
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedBundleError("signed payload is not JSON") from None
    doc = _obj(doc, "statement")
    if doc.get("_type") != STATEMENT_TYPE:
        raise MalformedBundleError(f"statement _type is {doc.get('_type')!r}")
    if doc.get("predicateType") != PREDICATE_TYPE:
        raise MalformedBundleError(
            f"predicateType is {doc.get('predicateType')!r}, expected {PREDICATE_TYPE!r}"
        )
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1:
        raise MalformedBundleError("statement must have exactly one subject")
    subject = _obj(subjects[0], "subject")
    name = subject.get("name", "")
    digest = _obj(subject.get("digest"), "subject.digest").get("sha256")
    if not isinstance(name, str) or not isinstance(digest, str):
        raise MalformedBundleError("subject has no name or sha256 digest")
    predicate = _obj(doc.get("predicate"), "predicate")
    return name, digest, predicate.get("serialization"), predicate.get("resources")
