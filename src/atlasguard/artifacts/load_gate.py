"""The load gate: verify, check, decrypt, and only then load (AML.M0013, M0014, M0012).

:func:`load_verified` is the one call a server makes before it loads a model
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
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from atlasguard.artifacts._enc_header import MAGIC
from atlasguard.artifacts.encryption import KeySource, decrypt_path
from atlasguard.artifacts.manifest import Manifest, ManifestDiff, ManifestError, hash_model
from atlasguard.artifacts.signing import verify_model
from atlasguard.errors import UsageError

__all__ = ["load_verified", "stage_verified"]


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
