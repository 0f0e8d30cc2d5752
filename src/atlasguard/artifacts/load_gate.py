"""The load gate: verify, check, decrypt, scan, and only then load (AML.M0013, M0014, M0016).

:class:`LoadGate` is the one gate of a deployment, built from its policy: the
gateway passes every model file through :meth:`LoadGate.stage` before loading
it, and the registry every push through :meth:`LoadGate.screen`, so both refuse
the same things for the same reasons.

:func:`load_verified` is the one call a program makes before it loads a model
file: it verifies the directory's signature and every file against the signed
manifest, copies the requested file into a private temporary directory while
checking the copy against its signed digest (so a file swapped after the check
is never loaded), decrypts it if it is encrypted (fully authenticated first),
and hands the result to :func:`atlasguard.artifacts.safe_load.safe_load`.
Any failure raises; nothing is loaded.

>>> import pathlib, pickle, tempfile
>>> from atlasguard.artifacts.keys import generate_signing_key
>>> from atlasguard.artifacts.signing import sign_model
>>> model = pathlib.Path(tempfile.mkdtemp())
>>> _ = (model / "weights.pkl").write_bytes(pickle.dumps({"w": [1.0]}))
>>> key = generate_signing_key()
>>> _ = sign_model(model, key)
>>> load_verified(model, "weights.pkl", public_key=key.public_key())
{'w': [1.0]}
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ec

from atlasguard.artifacts._enc_header import MAGIC
from atlasguard.artifacts.encryption import KeySource, decrypt_path
from atlasguard.artifacts.findings import FileReport, Finding, Severity
from atlasguard.artifacts.manifest import Manifest, ManifestDiff, ManifestError, hash_model
from atlasguard.artifacts.signing import DEFAULT_SIGNATURE_NAME, verify_model
from atlasguard.errors import (
    ConfigurationError,
    UnsafeArtifactError,
    UsageError,
    VerificationError,
)

if TYPE_CHECKING:
    from atlasguard.artifacts.keys import Keyring
    from atlasguard.policy import Policy

__all__ = ["LoadGate", "load_verified", "stage_verified"]


def stage_verified(
    model: str | os.PathLike[str],
    member: str,
    manifest: Manifest,
    dest: str | os.PathLike[str],
    *,
    key: KeySource | None = None,
) -> Path:
    """Copy ``member`` of ``model`` into ``dest``, check it, decrypt it; return the copy.

    The copy (not the original, which could change after the check) is hashed
    and compared with ``manifest``; an encrypted member (atlasguard header) is
    decrypted with ``key`` and authenticated before its plaintext is returned.
    """
    files = manifest.by_file()
    if member not in files:
        raise ManifestError(f"{member}: not a file of the signed manifest")
    src = Path(model) / member if member != "." else Path(model)
    staged = Path(dest) / ("checked-" + Path(member).name)
    shutil.copyfile(src, staged)
    ser = manifest.serialization
    copy = hash_model(staged, algorithm=ser.hash_type, shard_size=ser.shard_size)
    if copy.by_file().get(".", ()) != files[member]:
        raise ManifestDiff(changed=(member,)).error()  # changed after it was verified
    with open(staged, "rb") as f:
        encrypted = f.read(len(MAGIC)) == MAGIC
    if not encrypted:
        if key is not None:
            raise UsageError(f"{member}: a key was given but the file is not encrypted")
        return staged
    if key is None:
        raise UsageError(f"{member}: the file is encrypted; give its key")
    plain = Path(dest) / Path(member).name
    decrypt_path(staged, plain, key)
    staged.unlink()
    return plain


def load_verified(
    model: str | os.PathLike[str],
    member: str,
    *,
    public_key: ec.EllipticCurvePublicKey,
    signature: str | os.PathLike[str] | None = None,
    key: KeySource | None = None,
    allow: Iterable[str] = (),
    workdir: str | os.PathLike[str] | None = None,
) -> Any:
    """Verify ``model``'s signature and files, then safely load ``member`` from a checked copy.

    ``key`` decrypts an encrypted member; ``allow`` extends the safe loader's
    allow-list. The private copy lives in a temporary directory under
    ``workdir`` (default: the system's) and is deleted afterwards.
    """
    manifest = verify_model(model, public_key, signature=signature)
    from atlasguard.artifacts.safe_load import safe_load  # the scanner stack, only when loading

    with tempfile.TemporaryDirectory(dir=workdir, prefix="atlasguard-load-") as tmp:
        staged = stage_verified(model, member, manifest, tmp, key=key)
        return safe_load(staged, allow=allow)


def _is_encrypted(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(MAGIC)) == MAGIC


@dataclass(frozen=True)
class LoadGate:
    """What every model must pass before a deployment loads or stores it.

    ``fail_on`` and ``allow`` are the scan's threshold and extra allowed imports
    (``[controls.scan]``); ``signature_key`` is set when signatures are required
    (``[controls.signing] enabled`` and ``require``, ``[keys] public_key``), with
    the signature file named ``signature_name`` inside the model's directory;
    ``keyring`` (``[keys] keyring``) decrypts models encrypted at rest.
    """

    fail_on: Severity = Severity.HIGH
    allow: tuple[str, ...] = ()
    signature_key: ec.EllipticCurvePublicKey | None = None
    signature_name: str = DEFAULT_SIGNATURE_NAME
    keyring: Keyring | None = None

    @classmethod
    def from_policy(cls, policy: Policy) -> LoadGate:
        """The gate ``policy`` describes; raises :class:`ConfigurationError` if it cannot."""
        from atlasguard.artifacts.keys import load_keyring, load_public_key
        from atlasguard.artifacts.settings import ScanSettings
        from atlasguard.artifacts.signing import SigningSettings

        scan = policy.settings("scan")
        signing = policy.settings("signing")
        fail_on = Severity.parse(scan.fail_on) if isinstance(scan, ScanSettings) else Severity.HIGH
        allow = scan.allow if isinstance(scan, ScanSettings) else ()
        key = None
        name = DEFAULT_SIGNATURE_NAME
        if isinstance(signing, SigningSettings) and signing.enabled and signing.require:
            if not policy.keys.public_key:
                raise ConfigurationError(
                    f"{policy.where('controls.signing.require')}: require = true needs "
                    "[keys] public_key"
                )
            key = load_public_key(policy.base_dir / policy.keys.public_key)
            name = signing.signature_name
        keyring = None
        if policy.keys.keyring:
            keyring = load_keyring(policy.base_dir / policy.keys.keyring)
        return cls(
            fail_on=fail_on, allow=allow, signature_key=key, signature_name=name, keyring=keyring
        )

    @property
    def mitigates(self) -> frozenset[str]:
        """What this gate does: scan always (M0016); signatures and manifests when required."""
        out = {"AML.M0016"}
        if self.signature_key is not None:
            out |= {"AML.M0013", "AML.M0014"}
        return frozenset(out)

    def scan(self, path: Path, *, name: str) -> None:
        """Refuse ``path`` (a file or directory) with findings at or above ``fail_on``.

        Raises :class:`UnsafeArtifactError` whose ``findings`` name each file
        relative to ``path`` (never where the server keeps it).
        """
        from atlasguard.artifacts.scan import scan_path

        failing: list[tuple[str, Finding]] = []
        for report in scan_path(path, allow=self.allow):
            for finding in report.findings:
                if finding.severity >= self.fail_on:
                    failing.append((_relative(report, path), finding))
        if failing:
            raise UnsafeArtifactError.of(name, self.fail_on.label, failing)

    def verify(self, directory: Path) -> Manifest | None:
        """The signed manifest of ``directory`` when signatures are required, else ``None``."""
        if self.signature_key is None:
            return None
        return verify_model(
            directory, self.signature_key, signature=directory / self.signature_name
        )

    def screen(self, path: Path, *, name: str) -> None:
        """For content arriving to be stored (a registry push): scan, then check its signature.

        A file's signature is ``<file>.sig`` beside it, as ``atlasguard sign`` writes it.
        """
        self.scan(path, name=name)
        if self.signature_key is not None:
            signature = path / self.signature_name if path.is_dir() else None
            try:
                verify_model(path, self.signature_key, signature=signature)
            except VerificationError as exc:
                raise _worded(exc, path.parent) from None

    def stage(self, path: Path, staging: Path, *, name: str) -> Path:
        """For a model about to be loaded: verify, copy, decrypt, scan; return the copy.

        With signatures required the model's directory and every file are
        verified and the file is copied and re-checked against its signed digest
        (a file swapped after the check is never loaded). An encrypted file is
        decrypted with the keyring, fully authenticated first. The plaintext copy
        in ``staging`` (a private directory the caller deletes) is then scanned.
        """
        if not path.is_file():
            raise ConfigurationError(f"models.{name}: {path} is not a file")
        encrypted = _is_encrypted(path)
        if encrypted and self.keyring is None:
            raise ConfigurationError(f"models.{name} is encrypted; set [keys] keyring")
        key = self.keyring if encrypted else None
        try:
            manifest = self.verify(path.parent)
        except VerificationError as exc:  # a model pulled from the registry sits in staging
            raise _worded(exc, staging) from None
        if manifest is not None:
            checked = stage_verified(path.parent, path.name, manifest, staging, key=key)
        elif key is not None:
            checked = staging / path.name
            decrypt_path(path, checked, key)
        else:
            checked = staging / path.name
            shutil.copyfile(path, checked)
        self.scan(checked, name=name)
        return checked


def _worded(exc: VerificationError, root: Path) -> VerificationError:
    """The same refusal, naming files relative to ``root``: the private copy's directory
    is never in a message (the scan's findings are worded the same way)."""
    prefix = f"{root}{os.sep}"
    text = str(exc)
    if prefix not in text:
        return exc
    try:
        return type(exc)(text.replace(prefix, ""))
    except TypeError:  # an exception type that takes more than a message
        return VerificationError(text.replace(prefix, ""))


def _relative(report: FileReport, root: Path) -> str:
    try:
        return str(Path(report.path).relative_to(root)) if root.is_dir() else root.name
    except ValueError:
        return Path(report.path).name
