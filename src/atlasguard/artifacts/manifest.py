"""Manifests of model artifacts: one digest per file, or per shard of a file (AML.M0014).

A manifest records, for every file of a model directory (or every fixed-size
shard of every file), its SHA-256 or BLAKE3 digest. It uses the resource naming
and ordering of the OpenSSF model-signing format (``model_signing``), so the
same manifest is what :mod:`atlasguard.artifacts.signing` signs: files are named
by their POSIX path relative to the model directory, shards by
``path:start:end``, and the root digest is SHA-256 over the raw resource digests
in name order.

Hashing streams every file through reused buffers on a thread pool (hashlib
releases the GIL on large updates), so a directory of many files, or one large
file hashed in shards, keeps every core busy. A single large file hashed whole
with SHA-256 is inherently serial; use ``shard_size`` (the format's ``shards``
serialization) to parallelise it, or BLAKE3, which is parallel inside.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> _ = (root / "weights.bin").write_bytes(b"abc")
>>> m = hash_model(root)
>>> [(r.name, r.digest[:12]) for r in m.resources]
[('weights.bin', 'ba7816bf8f01')]
>>> verify_manifest(root, m) == m
True
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from atlasguard.artifacts._hashing import blake3_file, sha256_range
from atlasguard.controls import Control, ControlSettings
from atlasguard.errors import IntegrityError

__all__ = [
    "CONTROLS",
    "DEFAULT_SHARD_SIZE",
    "GIT_IGNORES",
    "MANIFEST_MEDIA_TYPE",
    "FileAddedError",
    "FileChangedError",
    "FileRemovedError",
    "FileRenamedError",
    "HashAlgorithm",
    "MalformedManifestError",
    "Manifest",
    "ManifestDiff",
    "ManifestError",
    "ManifestMismatchError",
    "ProgressCallback",
    "Resource",
    "Serialization",
    "SymlinkError",
    "VerifySettings",
    "hash_model",
    "verify_manifest",
]

HashAlgorithm = Literal["sha256", "blake3"]
ProgressCallback = Callable[[int], None]

MANIFEST_MEDIA_TYPE = "application/vnd.atlasguard.manifest.v1+json"
DEFAULT_SHARD_SIZE = 1_000_000_000  # model_signing's default, so digests agree
# model_signing ignores exactly these at the model root; we record them in the
# serialization so its verifier ignores whatever we ignored.
GIT_IGNORES: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore")
_MAX_RESOURCES = 10_000_000
_ALGORITHMS: frozenset[str] = frozenset({"sha256", "blake3"})


class VerifySettings(ControlSettings):
    """``[controls.verify]``: check every artifact against a manifest before use."""

    algorithm: Literal["sha256", "blake3"] = "sha256"
    shard_size: int | None = None
    allow_symlinks: bool = False
    manifest: str | None = None


CONTROLS = (
    Control(
        key="verify",
        title="Artifact manifests",
        mitigates=frozenset({"AML.M0014"}),
        summary="Per-file (or per-shard) SHA-256/BLAKE3 digests of a model directory; "
        "any changed, added, removed or renamed file is detected.",
        enable="atlasguard hash MODEL_DIR --output manifest.json; "
        "set [controls.verify] enabled = true",
        settings=VerifySettings,
    ),
)


class ManifestError(IntegrityError):
    """A model directory could not be turned into, or checked against, a manifest."""


class SymlinkError(ManifestError):
    """A symbolic link where none is allowed, or one that leaves the model directory."""


class MalformedManifestError(ManifestError, ValueError):
    """A manifest (file or signed payload) is not well formed."""


class ManifestMismatchError(ManifestError):
    """The files on disk do not match the manifest; ``diff`` says how."""

    def __init__(self, diff: ManifestDiff) -> None:
        self.diff = diff
        super().__init__(f"model does not match its manifest: {diff.describe()}")


class FileChangedError(ManifestMismatchError):
    """The content of one or more files changed."""


class FileAddedError(ManifestMismatchError):
    """Files that the manifest does not list are present."""


class FileRemovedError(ManifestMismatchError):
    """Files that the manifest lists are missing."""


class FileRenamedError(ManifestMismatchError):
    """Files were renamed: same content, different name."""


@dataclass(frozen=True, slots=True)
class Resource:
    """One entry of a manifest: a file (``path``) or shard (``path:start:end``)."""

    name: str
    algorithm: str
    digest: str  # lowercase hex

    @property
    def path(self) -> str:
        """The file this resource belongs to."""
        return self.name.rsplit(":", 2)[0] if _is_shard_name(self.name) else self.name

    def sort_key(self) -> tuple[tuple[str, ...], int, int]:
        """model_signing's order: path by components (as ``PurePosixPath``), then offsets."""
        if _is_shard_name(self.name):
            path, start, end = self.name.rsplit(":", 2)
            return (tuple(path.split("/")), int(start), int(end))
        return (tuple(self.name.split("/")), 0, 0)


def _is_shard_name(name: str) -> bool:
    parts = name.rsplit(":", 2)
    return len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit()


@dataclass(frozen=True, slots=True)
class Serialization:
    """How a manifest was computed: the format's ``serialization`` object."""

    method: Literal["files", "shards"] = "files"
    hash_type: HashAlgorithm = "sha256"
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = ()
    shard_size: int | None = None

    def __post_init__(self) -> None:
        if self.method == "shards" and (self.shard_size is None or self.shard_size <= 0):
            raise MalformedManifestError("shards serialization needs a positive shard_size")
        if self.method == "files" and self.shard_size is not None:
            raise MalformedManifestError("files serialization takes no shard_size")

    @property
    def resource_algorithm(self) -> str:
        """The ``algorithm`` every resource carries under this serialization."""
        if self.method == "shards":
            return f"{self.hash_type}-sharded-{self.shard_size}"
        return self.hash_type

    def to_dict(self) -> dict[str, Any]:
        """The JSON object model_signing writes (``shard_size`` as an integer)."""
        out: dict[str, Any] = {"method": self.method, "hash_type": self.hash_type}
        if self.shard_size is not None:
            out["shard_size"] = self.shard_size
        out["allow_symlinks"] = self.allow_symlinks
        if self.ignore_paths:
            out["ignore_paths"] = list(self.ignore_paths)
        return out

    @classmethod
    def from_dict(cls, data: object) -> Serialization:
        """Parse a ``serialization`` object, refusing anything unexpected."""
        if not isinstance(data, Mapping):
            raise MalformedManifestError("serialization is not an object")
        method = data.get("method")
        hash_type = data.get("hash_type")
        allow = data.get("allow_symlinks", False)
        ignore = data.get("ignore_paths", [])
        if method not in ("files", "shards"):
            raise MalformedManifestError(f"unknown serialization method {method!r}")
        if hash_type not in _ALGORITHMS:
            raise MalformedManifestError(f"unsupported hash_type {hash_type!r}")
        if not isinstance(allow, bool):
            raise MalformedManifestError("allow_symlinks is not a boolean")
        if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
            raise MalformedManifestError("ignore_paths is not a list of strings")
        shard_size: int | None = None
        if method == "shards":
            raw = data.get("shard_size")
            # model_signing writes the size through a protobuf Struct, as a float (1000.0).
            if isinstance(raw, float) and raw.is_integer():
                raw = int(raw)
            if not isinstance(raw, int) or isinstance(raw, bool) or raw <= 0:
                raise MalformedManifestError(f"shard_size {raw!r} is not a positive integer")
            shard_size = raw
        return cls(
            method=method,
            hash_type=hash_type,
            allow_symlinks=allow,
            ignore_paths=tuple(_clean_ignore(p) for p in ignore),
            shard_size=shard_size,
        )


def _clean_ignore(path: str) -> str:
    cleaned = "/".join(p for p in path.replace("\\", "/").split("/") if p not in ("", "."))
    if ".." in cleaned.split("/"):
        raise MalformedManifestError(f"ignore path {path!r} leaves the model directory")
    return cleaned


@dataclass(frozen=True, slots=True)
class ManifestDiff:
    """What differs between a manifest and the files on disk, by file name."""

    changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()  # (old name, new name)

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.removed or self.renamed)

    def describe(self) -> str:
        """One line naming every file involved."""
        parts: list[str] = []
        if self.changed:
            parts.append("changed: " + ", ".join(self.changed))
        if self.added:
            parts.append("added: " + ", ".join(self.added))
        if self.removed:
            parts.append("removed: " + ", ".join(self.removed))
        if self.renamed:
            parts.append("renamed: " + ", ".join(f"{a} -> {b}" for a, b in self.renamed))
        return "; ".join(parts) or "no difference"

    def error(self) -> ManifestMismatchError:
        """The most specific error for this difference."""
        kinds = [
            (self.changed, FileChangedError),
            (self.added, FileAddedError),
            (self.removed, FileRemovedError),
            (self.renamed, FileRenamedError),
        ]
        present = [cls for items, cls in kinds if items]
        cls = present[0] if len(present) == 1 else ManifestMismatchError
        return cls(self)


@dataclass(frozen=True, slots=True)
class Manifest:
    """Digests of a model's files or shards, in the model-signing format's order."""

    model_name: str
    serialization: Serialization
    resources: tuple[Resource, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.resources, key=Resource.sort_key))
        if len({r.name for r in ordered}) != len(ordered):
            raise MalformedManifestError("a resource name appears twice")
        object.__setattr__(self, "resources", ordered)

    def root_digest(self) -> str:
        """SHA-256 over the raw resource digests in order (the statement's subject)."""
        h = hashlib.sha256()
        for r in self.resources:
            h.update(bytes.fromhex(r.digest))
        return h.hexdigest()

    def by_file(self) -> dict[str, tuple[tuple[str, str, str], ...]]:
        """Each file's shards (suffix, algorithm, digest), for comparing files."""
        grouped: dict[str, list[tuple[str, str, str]]] = {}
        for r in self.resources:
            suffix = r.name[len(r.path) :]
            grouped.setdefault(r.path, []).append((suffix, r.algorithm, r.digest))
        return {k: tuple(v) for k, v in grouped.items()}

    def diff(self, actual: Manifest) -> ManifestDiff:
        """How ``actual`` (the files on disk) differs from this manifest."""
        want, have = self.by_file(), actual.by_file()
        removed = sorted(set(want) - set(have))
        added = sorted(set(have) - set(want))
        changed = sorted(k for k in set(want) & set(have) if want[k] != have[k])
        renamed: list[tuple[str, str]] = []
        for old in list(removed):
            match = next((new for new in added if have[new] == want[old]), None)
            if match is not None:
                renamed.append((old, match))
                removed.remove(old)
                added.remove(match)
        return ManifestDiff(tuple(changed), tuple(added), tuple(removed), tuple(renamed))

    def to_json(self) -> str:
        """The manifest file ``atlasguard hash --output`` writes."""
        doc = {
            "mediaType": MANIFEST_MEDIA_TYPE,
            "model_name": self.model_name,
            "root_digest": {"sha256": self.root_digest()},
            "serialization": self.serialization.to_dict(),
            "resources": [
                {"name": r.name, "algorithm": r.algorithm, "digest": r.digest}
                for r in self.resources
            ],
        }
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse a manifest file; :class:`MalformedManifestError` on anything off."""
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedManifestError(f"manifest is not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("mediaType") != MANIFEST_MEDIA_TYPE:
            raise MalformedManifestError(
                f"not an atlasguard manifest (mediaType {MANIFEST_MEDIA_TYPE})"
            )
        name = doc.get("model_name")
        if not isinstance(name, str):
            raise MalformedManifestError("model_name is not a string")
        manifest = cls.from_parts(name, doc.get("serialization"), doc.get("resources"))
        root = doc.get("root_digest")
        if not isinstance(root, dict) or root.get("sha256") != manifest.root_digest():
            raise MalformedManifestError("root digest does not match the resources")
        return manifest

    @classmethod
    def from_parts(cls, model_name: str, serialization: object, resources: object) -> Manifest:
        """Build from a ``serialization`` object and a ``resources`` list, strictly."""
        ser = Serialization.from_dict(serialization)
        if not isinstance(resources, list) or len(resources) > _MAX_RESOURCES:
            raise MalformedManifestError("resources is not a list")
        parsed = tuple(_parse_resource(item, ser) for item in resources)
        manifest = cls(model_name=model_name, serialization=ser, resources=parsed)
        if ser.shard_size is not None:
            _check_shards(manifest, ser.shard_size)
        return manifest


def _check_shards(manifest: Manifest, shard_size: int) -> None:
    """Each file's shards tile it from 0: full shards, then one last shorter or full."""
    for path, shards in manifest.by_file().items():
        expected_start = 0
        for i, (suffix, _alg, _digest) in enumerate(shards):
            _, start, end = suffix.split(":")
            s, e = int(start), int(end)
            full = e - s == shard_size
            if (
                s != expected_start
                or not 0 < e - s <= shard_size
                or (i < len(shards) - 1 and not full)
            ):
                raise MalformedManifestError(f"{path}: shards do not tile the file ({suffix[1:]})")
            expected_start = e


def _parse_resource(item: object, ser: Serialization) -> Resource:
    if not isinstance(item, Mapping):
        raise MalformedManifestError("a resource is not an object")
    name, algorithm, digest = item.get("name"), item.get("algorithm"), item.get("digest")
    if not isinstance(name, str) or not name:
        raise MalformedManifestError("a resource has no name")
    if algorithm != ser.resource_algorithm:
        raise MalformedManifestError(
            f"resource {name!r}: algorithm {algorithm!r}, expected {ser.resource_algorithm!r}"
        )
    if not isinstance(digest, str) or len(digest) != 64:
        raise MalformedManifestError(f"resource {name!r}: digest is not 32 bytes of hex")
    try:
        bytes.fromhex(digest)
    except ValueError:
        raise MalformedManifestError(f"resource {name!r}: digest is not hex") from None
    if ser.method == "shards" and not _is_shard_name(name):
        raise MalformedManifestError(f"resource {name!r} is not named path:start:end")
    path = name.rsplit(":", 2)[0] if ser.method == "shards" else name
    if path != "." and (path.startswith("/") or ".." in path.split("/")):
        raise MalformedManifestError(f"resource {name!r} leaves the model directory")
    return Resource(name=name, algorithm=algorithm, digest=digest.lower())


# --- hashing ---------------------------------------------------------------


def _is_ignored(rel: str, ignores: Sequence[str], ignore_git: bool) -> bool:
    parts = rel.split("/")
    if ignore_git and parts[0].startswith(".git"):
        return True
    for ign in ignores:
        ip = ign.split("/")
        if parts[: len(ip)] == ip:
            return True
    return False


def _walk(root: Path, ignores: Sequence[str], ignore_git: bool, allow_symlinks: bool) -> list[str]:
    """Relative POSIX names of the regular files to hash, symlinks checked."""
    real_root = os.path.realpath(root)
    found: list[str] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(os.path.join(root, rel_dir)) as entries:
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if _is_ignored(rel, ignores, ignore_git):
                    continue
                if entry.is_symlink():
                    _check_symlink(entry.path, rel, real_root, allow_symlinks)
                    if os.path.isdir(entry.path):
                        raise SymlinkError(
                            f"{rel}: symbolic links to directories are not supported"
                        )
                    found.append(rel)
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(rel)
                elif entry.is_file(follow_symlinks=False):
                    found.append(rel)
                else:
                    raise ManifestError(f"{rel}: not a regular file or directory")
    return found


def _check_symlink(path: str, rel: str, real_root: str, allow: bool) -> None:
    if not allow:
        raise SymlinkError(f"{rel}: symbolic link (allow_symlinks is off)")
    target = os.path.realpath(path)
    if os.path.commonpath([real_root, target]) != real_root:
        raise SymlinkError(f"{rel}: symbolic link leaves the model directory")
    if not os.path.exists(target):
        raise SymlinkError(f"{rel}: broken symbolic link")


def hash_model(
    path: str | os.PathLike[str],
    *,
    algorithm: HashAlgorithm = "sha256",
    shard_size: int | None = None,
    allow_symlinks: bool = False,
    ignore_paths: Iterable[str] = (),
    ignore_git: bool = True,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> Manifest:
    """Hash every file under ``path`` (or the one file ``path``) into a :class:`Manifest`.

    ``shard_size`` switches to the ``shards`` serialization (SHA-256 only: BLAKE3
    is already parallel inside one file). ``ignore_paths`` are relative to
    ``path``; ``.git*`` entries at the top are skipped unless ``ignore_git`` is
    false. ``progress`` is called with byte counts, from worker threads.
    """
    root = Path(path)
    if algorithm not in _ALGORITHMS:
        raise MalformedManifestError(f"unsupported algorithm {algorithm!r}")
    if shard_size is not None and algorithm != "sha256":
        raise MalformedManifestError("shards are only defined for sha256 (BLAKE3 is parallel)")
    ignores = sorted({_clean_ignore(str(p)) for p in ignore_paths} - {""})
    if root.is_symlink():
        raise SymlinkError(f"{root}: the model path itself is a symbolic link")
    if root.is_file():
        files, base = ["."], str(root)
    elif root.is_dir():
        files, base = _walk(root, ignores, ignore_git, allow_symlinks), str(root)
    else:
        raise ManifestError(f"{root}: no such file or directory")
    recorded = set(ignores)
    if ignore_git and root.is_dir():
        recorded |= set(GIT_IGNORES) | {e for e in os.listdir(root) if e.startswith(".git")}
    ser = Serialization(
        method="shards" if shard_size is not None else "files",
        hash_type=algorithm,
        allow_symlinks=allow_symlinks,
        ignore_paths=tuple(sorted(recorded)),
        shard_size=shard_size,
    )

    def full(rel: str) -> str:
        return base if rel == "." else os.path.join(base, rel)

    items: list[tuple[str, int, int | None, str]] = []  # (rel, start, end, name)
    sizes: dict[str, int] = {}
    for rel in files:
        size = sizes[rel] = os.path.getsize(full(rel))
        if shard_size is None:
            items.append((rel, 0, None, rel))
            continue
        # model_signing gives an empty file no shard at all; so do we.
        for start in range(0, size, shard_size):
            end = min(start + shard_size, size)
            items.append((rel, start, end, f"{rel}:{start}:{end}"))
    # Largest work first, so one big file does not start last and run alone.
    items.sort(key=lambda it: -(it[2] - it[1] if it[2] is not None else sizes[it[0]]))

    cores = os.cpu_count() or 1
    # More readers than cores, as ThreadPoolExecutor's default: a thread waiting on
    # the disk leaves its core to another, and reads overlap on SSDs.
    n = workers or min(32, cores + 4)
    total = sum(sizes.values())

    def run(item: tuple[str, int, int | None, str], blake3_threads: int = 1) -> Resource:
        rel, start, end, name = item
        try:
            if algorithm == "blake3":
                digest = blake3_file(full(rel), progress, blake3_threads)
            else:
                digest = sha256_range(full(rel), start, end, progress)
        except OSError as exc:
            raise ManifestError(f"{rel}: cannot read: {exc.strerror or exc}") from None
        return Resource(name=name, algorithm=ser.resource_algorithm, digest=digest)

    resources: list[Resource] = []
    if algorithm == "blake3":
        # A file too big to share the cores with others is hashed alone on all of them
        # (BLAKE3's own threads); the rest run one file per core, which costs less.
        n = min(n, cores)
        alone = [n > 1 and sizes[it[0]] * n >= total for it in items]
        resources = [run(it, blake3_threads=n) for it, a in zip(items, alone, strict=True) if a]
        items = [it for it, a in zip(items, alone, strict=True) if not a]
    if len(items) <= 1 or n == 1:
        resources += [run(it) for it in items]
    else:
        with ThreadPoolExecutor(max_workers=min(n, len(items))) as pool:
            resources += list(pool.map(run, items))
    name = os.path.basename(os.path.abspath(root))
    return Manifest(model_name=name, serialization=ser, resources=tuple(resources))


def verify_manifest(
    path: str | os.PathLike[str],
    expected: Manifest,
    *,
    extra_ignores: Iterable[str] = (),
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> Manifest:
    """Re-hash ``path`` as ``expected`` was computed; raise on any difference.

    Raises a :class:`ManifestMismatchError` subclass naming the changed, added,
    removed or renamed files. Returns the freshly computed manifest.
    """
    ser = expected.serialization
    actual = hash_model(
        path,
        algorithm=ser.hash_type,
        shard_size=ser.shard_size,
        allow_symlinks=ser.allow_symlinks,
        ignore_paths=(*ser.ignore_paths, *extra_ignores),
        # Only what the manifest recorded is ignored: a .git* entry that appeared
        # since counts as added, and a manifest that hashed .git is checked in full.
        ignore_git=False,
        workers=workers,
        progress=progress,
    )
    diff = expected.diff(actual)
    if diff:
        raise diff.error()
    return actual
