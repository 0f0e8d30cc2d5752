"""Moving an object's files into and out of a :class:`Store` (sealed when a keyring is set)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from atlasguard.artifacts.encryption import decrypt_path, encrypt_path
from atlasguard.errors import ConfigurationError, IntegrityError

if TYPE_CHECKING:
    from atlasguard.artifacts.keys import Keyring
    from atlasguard.artifacts.manifest import Manifest
    from atlasguard.registry.stores import Store

__all__ = ["rebuild", "snapshot_of", "store_blobs", "total_size"]

_CHUNK = 1 << 20


def snapshot_of(source: Path, into: Path) -> Path:
    """A private copy of ``source`` (and, for a file, its ``.sig`` beside it) under ``into``."""
    target = into / (source.name or "object")
    if source.is_dir():
        # Symbolic links are copied as links: hashing then refuses them.
        shutil.copytree(source, target, symlinks=True)
        return target
    shutil.copyfile(source, target)
    signature = source.with_name(source.name + ".sig")
    if signature.is_file() and not signature.is_symlink():
        shutil.copyfile(signature, target.with_name(target.name + ".sig"))
    return target


def total_size(source: Path) -> int:
    if source.is_file():
        return source.stat().st_size
    return sum(p.stat().st_size for p in source.rglob("*") if p.is_file() and not p.is_symlink())


def store_blobs(
    store: Store, source: Path, manifest: Manifest, keyring: Keyring | None
) -> dict[str, str]:
    """Put every file the manifest names; returns {relative path: blob key}."""
    blobs: dict[str, str] = {}
    for resource in manifest.resources:
        rel = resource.name
        file = source if rel == "." else source / rel
        if keyring is None:
            with open(file, "rb") as stream:
                blobs[rel] = store.put(stream)
            continue
        with tempfile.TemporaryDirectory(prefix="atlasguard-seal-") as tmp:
            sealed = Path(tmp) / "blob"
            encrypt_path(file, sealed, keyring)
            with open(sealed, "rb") as stream:
                blobs[rel] = store.put(stream)
    return blobs


def rebuild(
    store: Store,
    blobs: Mapping[str, str],
    payload: Path,
    *,
    directory: bool,
    keyring: Keyring | None,
    encrypted: bool,
) -> None:
    """Write the stored files to ``payload`` (decrypting them); verification is the caller's."""
    if directory:
        payload.mkdir()
    for rel, key in sorted(blobs.items()):
        parts = Path(rel).parts
        if rel != "." and (Path(rel).is_absolute() or ".." in parts or not parts):
            raise IntegrityError(f"stored path {rel!r} escapes the object")
        out = payload if rel == "." else payload / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            stream = store.open(key)
        except KeyError:
            raise IntegrityError(f"stored blob of {rel!r} is missing") from None
        with stream:
            if not encrypted:
                with open(out, "xb") as fout:
                    shutil.copyfileobj(stream, fout, _CHUNK)
                continue
            if keyring is None:
                raise ConfigurationError("this object is encrypted: set [keys] keyring")
            sealed = payload.parent / "sealed"
            with open(sealed, "xb") as fout:
                shutil.copyfileobj(stream, fout, _CHUNK)
        decrypt_path(sealed, out, keyring)
        sealed.unlink()
