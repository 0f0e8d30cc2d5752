"""Model folders and archives that run code without any pickle (issue 12, AML.M0016).

A Hugging Face folder whose ``config.json`` has an ``auto_map``, a TorchServe
``.mar`` with a ``handler.py``, an MLflow model with a ``code`` directory: the
loader imports Python code the folder ships. :class:`CodeIndex` watches every
file and archive member a scan reads, finds the configurations that name code
(:mod:`._coderefs`), and reports each as a ``model-code`` finding that names the
loader, the flag that makes it run and the files involved, ``high`` by default.

Such code is allowed only by content digest: the SHA-256 of the lines
``<sha256 of the file>  <path under the model's root>`` of every code file
(``*.py``, ``*.pyc``, ``*.so``..., requirements files) under the model's root,
sorted by path, followed by ``import <name>`` for each module the loader takes
from the installed packages. ``--allow sha256:<digest>`` (or ``allow`` in
``[controls.scan]``) then turns the finding into an ``info`` record. Any change
to any code file changes the digest. Code in another repository, or named but
missing from the folder, cannot be pinned by a digest: it stays ``high``
(rule ``model-code-unpinned``).

>>> import io
>>> idx = CodeIndex()
>>> idx.observe_member(None, "m/config.json", io.BytesIO(b'{"auto_map": {"AutoModel": "x.M"}}'))
>>> idx.observe_member(None, "m/x.py", io.BytesIO(b"import os"))
>>> [(f.rule, f.severity.label) for f in idx.resolve(frozenset())]
[('model-code', 'high')]
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from atlasguard.artifacts.findings import Finding, Location, Severity
from atlasguard.artifacts.formats._coderefs import (
    MAX_CONFIG_BYTES,
    CodeRef,
    Entry,
    is_candidate,
    references,
)

__all__ = [
    "CODE_SUFFIXES",
    "CodeIndex",
    "folder_digest",
    "format_mismatch",
    "is_code_file",
]

CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyw", ".pyd", ".so")
"""File names Python's import system loads (``.so`` covers ``*.cpython-*.so``)."""

_MAX_FILES = 20_000  # files of one tree considered (a model folder has far fewer)
_CHUNK = 1 << 20
_GENERATE = "custom_generate/generate.py"
_TOO_MANY = "the {where} holds more than {n} files, past which code is not read"
_HEAD = 4096


def is_code_file(path: str) -> bool:
    """True for files a loader imports or installs: Python modules, extensions, requirements."""
    base = posixpath.basename(path)
    return base.endswith(CODE_SUFFIXES) or (
        base.startswith("requirements") and base.endswith(".txt")
    )


def folder_digest(files: dict[str, str], installed: Iterable[str] = ()) -> str:
    """The digest that allows a model's code (see the module docstring).

    >>> folder_digest({"a.py": "0" * 64})[:12]
    'daf24b259b79'
    """
    lines = "".join(f"{digest}  {path}\n" for path, digest in sorted(files.items()))
    lines += "".join(f"import {name}\n" for name in sorted(set(installed)))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def _norm(name: str) -> str | None:
    """A member name as a relative POSIX path (``None`` when it is a directory)."""
    path = posixpath.normpath("/" + name.replace("\x00", "")).lstrip("/")
    return None if not path or name.endswith("/") else path


def _sha256(stream: BinaryIO) -> str:
    h = hashlib.sha256()
    stream.seek(0)
    while chunk := stream.read(_CHUNK):
        h.update(chunk)
    stream.seek(0)
    return h.hexdigest()


class CodeIndex:
    """The code files and code references seen while scanning one top-level file."""

    def __init__(self) -> None:
        # container (the member path of an archive; None for the scanned file's
        # own members) -> path -> SHA-256 of a code file, "" for any other file
        self._trees: dict[str | None, dict[str, str]] = {}
        self._refs: list[tuple[str | None, CodeRef]] = []
        self._disk_refs: list[CodeRef] = []
        self._overflow: set[str | None] = set()  # trees with more files than are followed
        self._twice: set[str | None] = set()  # trees holding one path twice, differently

    # -- watching ------------------------------------------------------------
    def observe_member(self, container: str | None, name: str, stream: BinaryIO) -> None:
        """Note one archive member: hash it when it is code, parse it when it names code."""
        path = _norm(name)
        if path is None:
            return
        tree = self._trees.setdefault(container, {})
        if len(tree) >= _MAX_FILES:
            self._overflow.add(container)  # code past here is not covered: no digest
            return
        digest = _sha256(stream) if is_code_file(path) else ""
        if tree.get(path, digest) != digest:
            self._twice.add(container)  # which copy a loader gets depends on the extractor
        tree[path] = digest
        for ref in self._references(path, stream):
            self._refs.append((container, ref))

    def observe_file(self, name: str, stream: BinaryIO) -> None:
        """Note a file given on disk; its folder is read when references are resolved."""
        refs = self._references(Path(name).as_posix(), stream)
        # the report already names the file: messages show only its name
        self._disk_refs += [replace(r, config=posixpath.basename(r.config)) for r in refs]

    def member_scanned(
        self, name: str, fmt: str, stream: BinaryIO, where: Location
    ) -> list[Finding]:
        """Findings due once a file or member was scanned as ``fmt`` (misnamed files)."""
        stream.seek(0)
        head = stream.read(64)
        stream.seek(0)
        found = format_mismatch(name, fmt, head, where)
        return [found] if found is not None else []

    @staticmethod
    def _references(path: str, stream: BinaryIO) -> list[CodeRef]:
        if path == _GENERATE or path.endswith("/" + _GENERATE):
            return [_custom_generate(path)]
        stream.seek(0)
        head = stream.read(_HEAD)
        refs: list[CodeRef] = []
        if is_candidate(head):
            stream.seek(0, os.SEEK_END)
            if stream.tell() <= MAX_CONFIG_BYTES:
                stream.seek(0)
                refs = references(path, stream.read(MAX_CONFIG_BYTES + 1))
        stream.seek(0)
        return refs

    # -- reporting -----------------------------------------------------------
    def resolve(self, digests: frozenset[str], disk: Path | None = None) -> list[Finding]:
        """One finding per configuration that names code, judged against ``digests``."""
        out: list[Finding] = []
        for container, ref in self._refs:
            files = _under(self._trees.get(container, {}), ref)
            where = f"{container}!{ref.config}" if container else ref.config
            problem = None
            if container in self._overflow:
                problem = (
                    f"the archive holds more than {_MAX_FILES} files, past which code is not read"
                )
            elif container in self._twice:
                problem = "the archive holds a code file twice with different contents"
            out += _judge(ref, files, digests, Location(member=where), problem=problem)
        if disk is not None:
            for ref in self._disk_refs:
                root = Path(os.path.normpath(disk.parent / ref.root))
                files = _disk_tree(root)
                problem = None
                if len(files) >= _MAX_FILES:
                    problem = _TOO_MANY.format(where="folder", n=_MAX_FILES)
                out += _judge(ref, files, digests, Location(), problem=problem)
        return out


def _custom_generate(path: str) -> CodeRef:
    return CodeRef(
        config=path,
        root="..",
        loader="transformers generate(custom_generate=<this model>)",
        flag="trust_remote_code=True",
        entries=(Entry(shown=_GENERATE, patterns=(re.escape(_GENERATE),)),),
    )


def _under(tree: dict[str, str], ref: CodeRef) -> dict[str, str]:
    """The files of ``tree`` under ``ref``'s root, with paths relative to it."""
    root = posixpath.normpath(posixpath.join(posixpath.dirname(ref.config), ref.root))
    if root in (".", "") or root.startswith(".."):
        return dict(tree)
    prefix = root + "/"
    return {p[len(prefix) :]: d for p, d in tree.items() if p.startswith(prefix)}


def _disk_tree(root: Path) -> dict[str, str]:
    """Files under ``root`` on disk (bounded), code files hashed through their symlinks."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if len(out) >= _MAX_FILES:
                return out
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if not is_code_file(rel):
                out[rel] = ""
                continue
            try:
                with open(full, "rb") as f:
                    out[rel] = _sha256(f)
            except OSError:
                out[rel] = "unreadable"
    return out


def _matches(entry: Entry, paths: Iterable[str]) -> list[str]:
    if not entry.patterns:
        return []
    pattern = re.compile("|".join(f"(?:{p})" for p in entry.patterns))
    return sorted(p for p in paths if pattern.fullmatch(p))


def _judge(
    ref: CodeRef,
    files: dict[str, str],
    digests: frozenset[str],
    where: Location,
    *,
    problem: str | None = None,
) -> list[Finding]:
    present: list[str] = []
    installed: list[str] = []
    unpinned: list[str] = []
    for entry in ref.entries:
        found = _matches(entry, files)
        if found:
            present.append(entry.shown if len(found) == 1 else f"{entry.shown}: {len(found)} files")
        elif entry.remote is not None:
            unpinned.append(f"{entry.shown} (code in the repository {entry.remote})")
        elif entry.installed and not entry.optional:
            installed.append(entry.shown)
        elif not entry.optional:
            unpinned.append(f"{entry.shown} (not in this folder)")
    if not (present or installed or unpinned):
        return []
    if problem is not None:
        unpinned.append(problem)
    code = {p: d for p, d in files.items() if d}
    head = f"{ref.loader} ({ref.flag}) imports code that {ref.config} names: "
    named = ", ".join(_cap(present + [f"{i} from the installed packages" for i in installed]))
    if unpinned:
        return [
            Finding(
                rule="model-code-unpinned",
                severity=Severity.HIGH,
                message=head
                + "; ".join(_cap(unpinned))
                + (f"; also {named}" if named else "")
                + ". Code fetched or imported from outside the scanned files cannot be pinned "
                "by a digest: copy it into the folder, point the configuration at it, and "
                "allow the folder by digest.",
                location=where,
            )
        ]
    digest = folder_digest(code, installed)
    listed = ", ".join(_cap(sorted(code))) or "none"
    if digest in digests:
        return [
            Finding(
                rule="model-code",
                severity=Severity.INFO,
                message=f"{head}{named}; allowed by digest sha256:{digest} "
                f"({len(code)} code files: {listed})",
                location=where,
            )
        ]
    return [
        Finding(
            rule="model-code",
            severity=Severity.HIGH,
            message=f"{head}{named}. Code files under the model's root ({len(code)}): {listed}; "
            f"digest sha256:{digest}. Review that code, then allow it with "
            f'--allow sha256:{digest} (or allow = ["sha256:{digest}"] in [controls.scan]).',
            location=where,
        )
    ]


def _cap(items: list[str], n: int = 12) -> list[str]:
    return items if len(items) <= n else [*items[:n], f"... {len(items) - n} more"]


# --------------------------------------------------------------------------- misnamed files
_MODEL_SUFFIXES = {
    ".pt": "a PyTorch file",
    ".pth": "a PyTorch file",
    ".ckpt": "a checkpoint",
    ".bin": "a PyTorch checkpoint",
    ".pkl": "a pickle",
    ".pickle": "a pickle",
    ".joblib": "a joblib file",
    ".h5": "a Keras/HDF5 file",
    ".hdf5": "an HDF5 file",
    ".keras": "a Keras file",
    ".onnx": "an ONNX model",
    ".safetensors": "a safetensors file",
    ".gguf": "a GGUF model",
    ".npy": "a NumPy array",
    ".npz": "a NumPy archive",
    ".pb": "a TensorFlow graph",
    ".mar": "a TorchServe archive",
}
_KNOWN_CONTENT: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"<!DOCTYPE", "an HTML page"),
    (b"<html", "an HTML page"),
    (b"version https://git-lfs", "a Git LFS pointer"),
)


def format_mismatch(name: str, fmt: str, head: bytes, where: Location) -> Finding | None:
    """An ``info`` finding when ``name`` claims a model format its content does not have."""
    if fmt != "unknown":
        return None
    suffix = posixpath.splitext(posixpath.basename(name))[1].lower()
    claimed = _MODEL_SUFFIXES.get(suffix)
    if claimed is None:
        return None
    found = next((what for magic, what in _KNOWN_CONTENT if head.startswith(magic)), None)
    if found is None:
        found = "empty" if not head else "no format the scanner reads"
    return Finding(
        rule="format-mismatch",
        severity=Severity.INFO,
        message=f"named like {claimed} ({suffix}) but its content is {found}: "
        "no loader of that format would read it as one",
        location=where,
    )
