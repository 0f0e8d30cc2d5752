"""``atlasguard release-check``: what a release must not carry, found before it ships.

:func:`check_release` walks the release (:mod:`atlasguard.release.walk`), runs
every check of :mod:`atlasguard.release.detect` on every file, member and
decoded blob, applies the allow-list and returns a
:class:`~atlasguard.release.findings.ReleaseReport`.

>>> # report = check_release(Path("dist/app-1.0.whl"), ReleaseSettings(terms=["Bluebird"]))
>>> # report.passed
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path, PurePosixPath

from atlasguard.artifacts.findings import Severity
from atlasguard.errors import UsageError
from atlasguard.release import detect
from atlasguard.release.findings import AllowList, ReleaseFinding, ReleaseReport
from atlasguard.release.settings import ReleaseSettings
from atlasguard.release.walk import HEAD, Item, Limits, Walker, archive_kind, git_blob_id

__all__ = ["check_release"]

_LFS_WORTH = 10 << 20  # an LFS pointer to an unknown kind of file this big is reported


def check_release(
    target: Path,
    settings: ReleaseSettings | None = None,
    *,
    history: bool = False,
    allow: AllowList | None = None,
    limits: Limits | None = None,
) -> ReleaseReport:
    """Examine ``target`` (a directory, a git repository, or one archive or file)."""
    settings = settings or ReleaseSettings()
    if not target.exists():
        raise UsageError(f"{target.name}: no such file or directory")
    run = _Run(settings, Walker(limits or Limits()))
    with tempfile.TemporaryDirectory(prefix="atlasguard-release-") as scratch:
        run.scratch = Path(scratch)
        if target.is_dir():
            seen: set[str] = set()
            for item in run.walker.directory(target):
                if history:
                    seen.add(_blob_id(item))
                run.examine(item)
            if history:
                if not _is_git(target):
                    raise UsageError(
                        f"{target.name}: --history needs a git repository (no .git found)"
                    )
                for item in run.walker.history(target, seen):
                    run.examine(item)
        else:
            if history:
                raise UsageError("--history needs a git repository directory, not a file")
            single = run.walker.file(target, target.name)
            if single is not None:
                run.examine(single)
        run.image_sets()
    for path, why in run.walker.unexamined:
        run.findings.append(
            ReleaseFinding("unexamined", Severity.MEDIUM, path, f"not examined: {why}", why)
        )
    allow = allow or AllowList()
    findings = allow.apply(_dedupe(run.findings))
    return ReleaseReport(
        target=target.name,
        findings=findings,
        files=run.files,
        bytes=run.walker.total + run.disk_bytes,
        commits=run.walker.commits,
        unused_allow=allow.unused(),
    )


def _is_git(root: Path) -> bool:
    try:
        done = subprocess.run(
            ["git", "-c", "safe.directory=*", "-C", str(root), "rev-parse", "--git-dir"],
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _blob_id(item: Item) -> str:
    if item.complete or item.disk is None:
        return git_blob_id(item.data)
    import hashlib

    digest = hashlib.sha1(b"blob %d\0" % item.size, usedforsecurity=False)
    with item.disk.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _dedupe(findings: list[ReleaseFinding]) -> list[ReleaseFinding]:
    seen: set[tuple[str, str, str, int | None]] = set()
    out = []
    for f in findings:
        key = (f.rule, f.path, f.match, f.line)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


@dataclass
class _Run:
    settings: ReleaseSettings
    walker: Walker
    findings: list[ReleaseFinding] = field(default_factory=list)
    files: int = 0
    disk_bytes: int = 0
    images: Counter[str] = field(default_factory=Counter)
    scratch: Path = Path()

    def add(self, finding: ReleaseFinding) -> None:
        self.findings.append(finding)

    def examine(self, item: Item) -> None:
        self.files += 1
        if item.disk is not None and item.depth == 0:
            self.disk_bytes += item.size
        detector = self._detector
        for hit in detector.term_hits(item, item.inner):
            self.add(replace(hit, message=f"file name: {hit.message}"))
        head = item.data[:HEAD]
        model = _safe(detect.model_kind, item)
        if model:
            self._model(item, model)
        pointer = detect.lfs_pointer(item)
        if pointer is not None:
            self._pointer(item, pointer)
            return
        kind = archive_kind(head)
        if kind is not None and not (model and kind == "zip"):
            before = len(self.findings)
            for member in self.walker.members(item, kind):
                self.examine(member)
            self._upgrade_bundled(item, before)
            return
        suffix = PurePosixPath(item.name).suffix.lower()
        if not model:
            data = _safe(detect.data_kind, item, self.settings)
            if data:
                self.add(
                    ReleaseFinding(
                        "dataset",
                        Severity.HIGH,
                        item.path,
                        f"data set: {data}",
                        data.split(" (")[0],
                    )
                )
        if suffix in detect.IMAGE_SUFFIXES or head[:4] in (
            b"\x89PNG",
            b"\xff\xd8\xff\xe0",
            b"\xff\xd8\xff\xe1",
            b"II*\x00",
            b"MM\x00*",
        ):
            self._image(item)
            return
        if suffix == ".ipynb" or (
            head.lstrip()[:1] == b"{"
            and b'"nbformat"' in head[: 1 << 20]
            and b'"cells"' in head[: 1 << 20]
        ):
            self._notebook(item)
        got = detect.text_of(item)
        if got is None:
            return
        text, is_text, unread = got
        if unread:
            why = "PDF text in fonts with their own encoding"
            self.add(
                ReleaseFinding(
                    "unexamined",
                    Severity.MEDIUM,
                    item.path,
                    f"not examined: {why} (glyph ids, not characters) is not read; read the "
                    "document, or accept it in the allow-list",
                    why,
                )
            )
        for hit in detector.text(item, text, is_text):
            self.add(hit)
        if not is_text:
            # a key compiled into a binary is a key; __pycache__ holds the sources' strings
            if self.settings.secrets and text and "__pycache__/" not in item.inner:
                strings = Item(item.path, text.encode(), len(text), item.depth, item.bundle)
                self._secrets(strings, lines=False)
            return
        config = detector.ml_config(item, text)
        if config is not None and not model:
            self.add(config)
        self._blobs(item, text)
        if self.settings.secrets and item.complete:
            self._secrets(item)

    @cached_property
    def _detector(self) -> detect.Detector:
        return detect.Detector(self.settings)

    def _model(self, item: Item, model: str) -> None:
        bundle = item.bundle or _client_dir(item.inner)
        if bundle:
            self.add(
                ReleaseFinding(
                    "bundled-model",
                    Severity.HIGH,
                    item.path,
                    f"{model} ({item.size} bytes) ships inside a {bundle}",
                    model,
                )
            )
        else:
            self.add(
                ReleaseFinding(
                    "model", Severity.HIGH, item.path, f"{model} ({item.size} bytes)", model
                )
            )

    def _pointer(self, item: Item, pointer: tuple[str, int]) -> None:
        oid, size = pointer
        suffix = PurePosixPath(item.name).suffix.lower()
        if suffix in detect.MODEL_SUFFIXES or suffix in detect.DATA_SUFFIXES or size >= _LFS_WORTH:
            what = "model" if suffix in detect.MODEL_SUFFIXES else "data set or large file"
            self.add(
                ReleaseFinding(
                    "model-pointer",
                    Severity.MEDIUM,
                    item.path,
                    f"Git LFS pointer to a {what} of {size} bytes (sha256 {oid[:16]}...)",
                    oid,
                )
            )

    def _upgrade_bundled(self, archive: Item, before: int) -> None:
        """An sdist or npm package is known only once its members are seen: models found
        inside it before then ship to every user as well."""
        if archive.bundle:
            return
        prefix = archive.path + "!"
        inside = self.walker.listing.get(archive.path, [])
        bundle = None
        if any(n.endswith("package/package.json") for n in inside):
            bundle = "npm package"
        elif any(n.count("/") == 1 and n.endswith("/PKG-INFO") for n in inside):
            bundle = "Python sdist"
        if bundle is None:
            return
        for i in range(before, len(self.findings)):
            f = self.findings[i]
            if f.rule == "model" and f.path.startswith(prefix):
                self.findings[i] = replace(
                    f, rule="bundled-model", message=f"{f.message} ships inside a {bundle}"
                )

    def _image(self, item: Item) -> None:
        folder = item.path.rpartition("/")[0] or "."
        self.images[folder] += 1
        if not item.complete:
            return
        try:
            found = detect.image_metadata(item.data)
            text = detect.image_text(item.data)
        except Exception:
            return
        for hit in self._detector.text(item, text, False):  # names and hosts in metadata
            self.add(replace(hit, message=f"image metadata: {hit.message}"))
        for severity, what, value in found:
            self.add(
                ReleaseFinding(
                    "image-metadata",
                    severity,
                    item.path,
                    f"image metadata: {what} ({value})",
                    what,
                )
            )

    def image_sets(self) -> None:
        """A folder of ``min_images`` images, or a folder whose sub-folders (two or more:
        classes, or train/val/test) hold that many together; the outermost one is named."""
        limit = self.settings.min_images
        subtree: Counter[str] = Counter()
        children: dict[str, set[str]] = {}
        for folder, count in self.images.items():
            node = folder
            while True:
                subtree[node] += count
                parent = _parent(node)
                if parent is None:
                    break
                children.setdefault(parent, set()).add(node)
                node = parent
        chosen: list[tuple[str, str]] = []
        for folder in sorted(subtree, key=lambda f: (f.count("/") + f.count("!"), f)):
            if any(folder.startswith((c + "/", c + "!")) for c, _ in chosen):
                continue
            direct = self.images.get(folder, 0)
            spread = len([c for c in children.get(folder, ()) if subtree[c]]) >= 2
            if direct >= limit:
                chosen.append((folder, f"image set: {direct} images in one folder"))
            elif spread and subtree[folder] >= limit and folder not in (".", ""):
                chosen.append((folder, f"image set: {subtree[folder]} images in its sub-folders"))
        for folder, message in chosen:
            self.add(
                ReleaseFinding("dataset", Severity.HIGH, folder + "/", message, "image folder")
            )

    def _notebook(self, item: Item) -> None:
        try:
            cells = detect.notebook_outputs(item.data)
        except (ValueError, RecursionError):
            return
        for number, what in cells:
            self.add(
                ReleaseFinding(
                    "notebook-output",
                    Severity.MEDIUM,
                    item.path,
                    f"cell {number} keeps its output: {what}",
                    f"cell {number}",
                )
            )

    def _blobs(self, item: Item, text: str) -> None:
        lines = None
        encoded = [
            *((o, d, m, "base64") for o, d, m in detect.base64_blobs(text)),
            *((o, d, d.startswith(detect.MEDIA), "hex") for o, d in detect.hex_blobs(text)),
        ]
        for offset, decoded, media, how in encoded:
            if media:
                continue
            if lines is None:
                lines = detect._LineIndex(text)
            line = lines.line(offset)
            inner = Item(
                f"{item.path}#{how}@{line}", decoded, len(decoded), item.depth + 1, item.bundle
            )
            before = len(self.findings)
            if item.depth + 1 <= self.walker.limits.max_depth:
                self.examine(inner)
            if len(self.findings) == before and len(decoded) >= self.settings.min_blob_bytes:
                kind = "text" if detect._printable(decoded[:4096]) else "binary"
                self.add(
                    ReleaseFinding(
                        "embedded-blob",
                        Severity.LOW,
                        item.path,
                        f"{how} blob of {len(decoded)} bytes ({kind}) on line {line}",
                        f"{len(decoded)} bytes",
                        line,
                    )
                )

    def _secrets(self, item: Item, *, lines: bool = True) -> None:
        for number, kinds, secret in _detect_secrets(item, self.scratch):
            shown = f"{secret[:4]}...({len(secret)} chars)" if len(secret) > 8 else "(short)"
            self.add(
                ReleaseFinding(
                    "credential",
                    Severity.CRITICAL,
                    item.path,
                    f"{' / '.join(kinds)}: {shown}",
                    _digest(secret),
                    number if lines else None,  # a binary's strings have no lines
                )
            )


def _parent(folder: str) -> str | None:
    """The folder above ``folder`` inside the same archive (``None`` at its top)."""
    inner = folder.rpartition("!")[2]
    if "/" not in inner:
        return None
    return folder.rpartition("/")[0]


def _digest(secret: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def _safe(func: Callable[..., str | None], *args: object) -> str | None:
    """A check that chokes on hostile bytes answers nothing rather than stopping the gate."""
    try:
        return func(*args)
    except (ValueError, OSError, RecursionError, MemoryError, UnicodeError, IndexError, KeyError):
        return None


def _client_dir(path: str) -> str | None:
    parts = [p.lower() for p in PurePosixPath(path).parts[:-1]]
    for part in parts:
        if part in detect.CLIENT_DIRS or part.endswith((".app", ".bundle", ".framework")):
            return f"client assets folder ({part}/)"
    return None


# Lines detect-secrets could flag: a keyword its keyword detector knows, a prefix of a
# known token format, credentials in a URL, or a long token with a digit in it. Every
# other line is left out (line numbers mapped back) before detect-secrets reads it: its
# per-line plugins were 93% of the gate's time on a source tree (cProfile, 183 files).
_CANDIDATE = re.compile(
    rb"(?i:pass|pwd|secret|token|key|auth|cred|api|bearer|private|signature|-----BEGIN"
    rb"|://[^/\s:@]+:[^/\s@]+@)"
    rb"|AKIA|ASIA|xox[abposr]-|gh[opsur]_|github_pat_|glpat-|[sr]k_(?:live|test)|AIza|SG\."
    rb"|eyJ|npm_|pypi-"
)
_TOKEN = re.compile(rb"[\w+/=\-]{20,}")
_WINDOW, _OVERLAP = 2048, 256  # a secret up to 256 bytes long is whole in some window
_DIGIT = re.compile(rb"\d")


def _candidate(line: bytes) -> bool:
    """Linear in the line: a keyword or prefix, or a 20+ character token with a digit."""
    if _CANDIDATE.search(line):
        return True
    return any(_DIGIT.search(m.group(0)) for m in _TOKEN.finditer(line))


def _candidate_lines(data: bytes) -> tuple[bytes, list[int]]:
    """The lines worth giving detect-secrets, and the line number each had."""
    kept: list[bytes] = []
    numbers: list[int] = []
    for number, line in enumerate(data.split(b"\n"), 1):
        # a minified bundle's one long line goes in overlapping windows: detect-secrets'
        # patterns are not all linear in the length of a line
        step = _WINDOW - _OVERLAP
        pieces = (
            [line]
            if len(line) <= _WINDOW
            else [line[i : i + _WINDOW] for i in range(0, len(line) - _OVERLAP, step)]
        )
        for piece in pieces:
            if _candidate(piece):
                kept.append(piece)
                numbers.append(number)
    return b"\n".join(kept) + b"\n", numbers


_PLACEHOLDER_SECRET = re.compile(
    r"^(?:pass(?:word)?|secret|pw|pwd|user(?:name)?|changeme|example|test|dummy|xxx+|\*+|"
    r"<[^>]*>|\{[^}]*\}|\$\{?\w+\}?)$",
    re.IGNORECASE,
)


def _signature_bundle(item: Item) -> bool:
    """A Sigstore / OpenSSF model-signing bundle, or the in-toto statement inside it:
    public signatures, certificates and file digests, high in entropy and meant to be
    published beside the model."""
    name = item.name.lower()
    head = item.data[:4096]
    return name.endswith((".sig", ".sigstore", ".sigstore.json", ".intoto.jsonl")) or any(
        mark in head for mark in (b"application/vnd.dev.sigstore.bundle", b"in-toto.io/Statement")
    )


def _example(kind: str, value: str) -> bool:
    """detect-secrets hits that are examples, not credentials: atlasguard's filters on top
    of detect-secrets' own (measured on the docs and tests of requests, httpx, pydantic
    and fastapi, where every hit was one of these)."""
    if kind == "Secret Keyword":
        # prose after "API key:", a short word ("pw"), a placeholder
        return (
            len(value) > 200
            or re.search(r"\s", value) is not None
            or len(value) < 8
            or _PLACEHOLDER_SECRET.match(value) is not None
        )
    if kind == "Base64 High Entropy String":
        import base64
        import binascii

        try:
            decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        except (binascii.Error, ValueError):
            return False
        printable = sum(32 <= b < 127 for b in decoded)
        return bool(decoded) and printable == len(decoded)  # base64 of plain text
    if kind == "Hex High Entropy String":
        return len(value) < 20
    if kind == "Basic Auth Credentials":  # scott:tiger in a connection-string example
        return "%" in value or len(value) < 8 or _PLACEHOLDER_SECRET.match(value) is not None
    return False


def _detect_secrets(item: Item, scratch: Path) -> list[tuple[int, list[str], str]]:
    try:
        from detect_secrets.core.secrets_collection import SecretsCollection
        from detect_secrets.settings import default_settings
    except ImportError as exc:
        raise UsageError(
            "credential checks need detect-secrets: pip install 'atlasguard[release]' "
            "(or set [controls.release] secrets = false)"
        ) from exc
    name = PurePosixPath(item.name).name or "file"
    path = scratch / name
    lines, numbers = _candidate_lines(item.data)
    if not numbers:
        return []
    path.write_bytes(lines)
    try:
        with default_settings():
            collection = SecretsCollection()
            collection.scan_file(str(path))
    finally:
        path.unlink(missing_ok=True)
    signed = _signature_bundle(item)
    grouped: dict[tuple[int, str], list[str]] = {}
    for _file, secrets in collection.data.items():
        for s in secrets:
            value = s.secret_value or ""
            if _example(s.type, value) or (signed and "High Entropy" in s.type):
                continue
            line = numbers[s.line_number - 1] if 0 < s.line_number <= len(numbers) else 0
            grouped.setdefault((line, value), []).append(s.type)
    return [(line, sorted(set(kinds)), value) for (line, value), kinds in sorted(grouped.items())]
