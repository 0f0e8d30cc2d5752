"""Scan model files: pick the format by content, never by extension, and report.

:func:`scan_paths` walks files and directories (recursively, symlinks never
followed out of the tree), examines every regular file by its content, and
returns one :class:`~atlasguard.artifacts.findings.FileReport` per file. A
file no scanner recognises is reported with format ``unknown`` and no
finding; anything that starts like a pickle goes to the pickle scanner
whatever its name. A scanner that fails becomes an ``unreadable`` finding, a
limit a ``limit-exceeded`` finding: never a crash, never a silent pass.

>>> import os, pickle, tempfile
>>> from atlasguard.artifacts.scan import scan_path
>>> d = tempfile.mkdtemp()
>>> with open(os.path.join(d, "notes.txt"), "wb") as f:
...     _ = f.write(b"cos\\nsystem\\n(S'echo hi'\\ntR.")
>>> [(r.format, [x.severity.label for x in r.findings]) for r in scan_path(d)]
[('pickle', ['critical'])]
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from atlasguard.artifacts.allowlist import digest_entries, parse_allow_entry
from atlasguard.artifacts.findings import FileReport, Finding, Location, Severity
from atlasguard.artifacts.formats.base import (
    HEAD_BYTES,
    FormatScanner,
    LimitExceeded,
    Limits,
    ScanContext,
    limit_finding,
    unreadable_finding,
)
from atlasguard.artifacts.formats.codefolders import CodeIndex
from atlasguard.errors import UsageError

__all__ = [
    "FORMAT_MODULES",
    "dispatch",
    "iter_files",
    "scan_path",
    "scan_paths",
    "scan_stream",
    "scanners",
    "settle_siblings",
]

# Most specific first: formats with a strong magic, then pickle, then formats
# recognised by weaker structure. A module that does not exist yet is skipped.
FORMAT_MODULES: tuple[str, ...] = tuple(
    f"atlasguard.artifacts.formats.{name}"
    for name in (
        "zip",
        "sevenzip",
        "tar",
        "compressed",
        "numpy",
        "gguf",
        "hdf5",
        "safetensors",
        "pickle",
        "keras",
        "savedmodel",
        "onnx",
    )
)


_loaded: tuple[FormatScanner, ...] | None = None


def scanners() -> tuple[FormatScanner, ...]:
    """Every available format scanner, in detection order (imported on first use)."""
    global _loaded  # a lazy, idempotent cache of imported modules
    if _loaded is None:
        found: list[FormatScanner] = []
        for name in FORMAT_MODULES:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name != name:
                    raise
                continue
            found.extend(getattr(module, "SCANNERS", ()))
        _loaded = tuple(found)
    return _loaded


_ZIP_LOCAL_HEADER = b"PK\x03\x04"
WIDE_SNIFF_BYTES = 1 << 20
"""How far dispatch reads when nothing recognises the first HEAD_BYTES (a long first opcode)."""


def dispatch(stream: BinaryIO, ctx: ScanContext) -> list[Finding]:
    """Scan ``stream`` as every format its content could load as; the containers' entry point.

    Every scanner whose sniff accepts the head runs, not only the first, and so
    do those for a format found further in (a zip directory at the end, an HDF5
    signature past the head). When nothing accepts the head, the sniffs look
    again at the first MiB: an unpickler reads a first opcode of any length. A
    file that is valid as two formats is itself a finding (``high`` when one of
    them is a pickle): two loaders would read two different things from it.
    """
    ctx.check_time()
    stream.seek(0)
    head = stream.read(HEAD_BYTES)
    matched = [s for s in scanners() if _sniff(s, head)]
    if not matched and len(head) == HEAD_BYTES:
        stream.seek(0)
        wide = stream.read(WIDE_SNIFF_BYTES)
        matched = [s for s in scanners() if _sniff(s, wide)]
    if head.startswith(_ZIP_LOCAL_HEADER):
        # Never unpickled: torch.load, joblib and NumPy open it as a zip, and pickle.load
        # stops at its first byte (PERSID, with no persistent_load to answer it).
        matched = [s for s in matched if s.name != "pickle"]
    stream.seek(0)
    chosen = matched[0] if matched else None
    ctx.formats_seen.append(chosen.name if chosen else "unknown")
    names = {s.name for s in matched}
    every = matched + [s for s in _polyglot(stream, chosen) if s.name not in names]
    findings: list[Finding] = []
    kinds = sorted({s.name for s in every})
    if len(kinds) > 1:
        # A pickle view can run code whatever the other view is; two data formats cannot.
        severity = Severity.HIGH if "pickle" in kinds else Severity.MEDIUM
        findings.append(
            Finding(
                rule="polyglot",
                severity=severity,
                message=f"this {_where(ctx)} is valid as {' and '.join(kinds)} at once: "
                "different loaders read different things from it (each view was scanned)",
                location=ctx.location(),
            )
        )
    for scanner in every:
        stream.seek(0)
        _run(scanner, stream, ctx, findings)
    return findings


def _run(scanner: FormatScanner, stream: BinaryIO, ctx: ScanContext, out: list[Finding]) -> None:
    try:
        for finding in scanner.scan(stream, ctx):  # keep what was found before a failure
            out.append(finding)
    except LimitExceeded as exc:
        out.append(limit_finding(exc))
    except Exception as exc:  # a scanner failure must be a finding, not a crash
        out.append(
            unreadable_finding(
                f"{scanner.name} scanner could not read this {_where(ctx)}: "
                f"{type(exc).__name__}: {exc}",
                ctx.location(),
            )
        )


def _polyglot(stream: BinaryIO, chosen: FormatScanner | None) -> list[FormatScanner]:
    """Scanners for a second format hidden in the same bytes.

    ``zipfile`` finds an archive by its end, whatever precedes it, and the HDF5
    library finds its signature at any power of two: a file whose head sniffs as
    a pickle or text may also load as a zip or HDF5 file, so scan it as both.
    """
    extra: list[FormatScanner] = []
    name = chosen.name if chosen else ""
    try:
        from atlasguard.artifacts.formats import hdf5
        from atlasguard.artifacts.formats import zip as zipfmt
    except ImportError:  # pragma: no cover - both ship with the package
        return extra
    try:
        if name != "zip" and zipfmt.has_zip_tail(stream):
            extra.extend(zipfmt.SCANNERS)
        offset = hdf5.find_signature(stream)
        if name != "hdf5" and offset is not None and offset >= HEAD_BYTES:
            extra.extend(hdf5.SCANNERS)
    except OSError:
        pass
    finally:
        stream.seek(0)
    return extra


def _sniff(scanner: FormatScanner, head: bytes) -> bool:
    try:
        return bool(scanner.sniff(head))
    except Exception:  # a sniffer that chokes does not claim the file
        return False


def _where(ctx: ScanContext) -> str:
    return "member" if ctx.member else "file"


def scan_stream(
    stream: BinaryIO, *, allow: Iterable[str] = (), limits: Limits | None = None
) -> tuple[str, list[Finding]]:
    """Scan one seekable stream; returns ``(format, findings)``."""
    limits = limits or Limits()
    index = CodeIndex()
    ctx = ScanContext(
        limits=limits,
        allow=frozenset(parse_allow_entry(a) for a in allow),
        dispatch=dispatch,
        deadline=time.monotonic() + limits.max_seconds_per_file,
        observer=index,
    )
    findings = dispatch(stream, ctx)
    findings += index.resolve(digest_entries(ctx.allow))
    return (ctx.formats_seen[0] if ctx.formats_seen else "unknown"), findings


class _FileHasher:
    """SHA-256 of a file, computed on a second thread while the scanners read it.

    ``hashlib`` releases the GIL on large updates, so on a machine with two
    cores the digest costs no wall time beside the scan; the scanners, which
    seek around containers, never have to read in order for it.
    """

    _CHUNK = 4 * 1024 * 1024

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._digest = ""
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="atlasguard-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        h = hashlib.sha256()
        offset = 0
        try:
            while chunk := os.pread(self._fd, self._CHUNK, offset):
                h.update(chunk)
                offset += len(chunk)
        except OSError as exc:
            self._error = exc
            return
        self._digest = h.hexdigest()

    def finish(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest


def _scan_file(
    path: Path, display: str, allow: frozenset[str], limits: Limits, *, fast: bool = False
) -> FileReport:
    try:
        raw = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below, shared with the hasher
    except OSError as exc:
        return FileReport(
            path=display,
            format="unknown",
            sha256="",
            size=0,
            findings=(unreadable_finding(f"cannot open: {exc.strerror or exc}", Location()),),
        )
    with raw:
        size = os.fstat(raw.fileno()).st_size
        hasher = None if fast else _FileHasher(raw.fileno())
        # A small buffer: container scanners seek a lot, and every seek refills it.
        stream = io.BufferedReader(raw, buffer_size=64 * 1024)
        index = CodeIndex()
        ctx = ScanContext(
            limits=limits,
            allow=allow,
            dispatch=dispatch,
            deadline=time.monotonic() + limits.max_seconds_per_file,
            observer=index,
            fast=fast,
        )
        examined = False
        try:
            index.observe_file(display, stream)
            findings = dispatch(stream, ctx)
            examined = True
        except LimitExceeded as exc:
            findings = [limit_finding(exc)]
        except OSError as exc:
            findings = [unreadable_finding(f"read error: {exc}", Location())]
        fmt = ctx.formats_seen[0] if ctx.formats_seen else "unknown"
        findings += _code_findings(index, ctx, path, stream, display, fmt if examined else None)
        if ctx.budget.skipped_members:
            findings.append(
                Finding(
                    rule="fast-skipped",
                    severity=Severity.INFO,
                    message=f"--fast: {ctx.budget.skipped_members} tensor storage member(s), "
                    f"{ctx.budget.skipped_bytes:,} bytes, not read (torch.load reads them as "
                    "raw bytes, never unpickles them); scan without --fast to read everything",
                    location=Location(),
                )
            )
        try:
            digest = hasher.finish() if hasher is not None else ""
        except OSError:
            digest = ""
        return FileReport(
            path=display, format=fmt, sha256=digest, size=size, findings=tuple(findings)
        )


def _code_findings(
    index: CodeIndex,
    ctx: ScanContext,
    path: Path,
    stream: BinaryIO,
    display: str,
    fmt: str | None,
) -> list[Finding]:
    """Code a model folder names (resolved against the file's folder), misnamed files."""
    try:
        found = index.resolve(digest_entries(ctx.allow), disk=path)
        if fmt is not None:
            found += index.member_scanned(display, fmt, stream, Location())
    except OSError as exc:
        found = [unreadable_finding(f"read error: {exc}", Location())]
    return found


def iter_files(paths: Sequence[str | os.PathLike[str]]) -> Iterator[tuple[Path, str]]:
    """``(path, display name)`` of every regular file under ``paths``.

    Raises :class:`UsageError` for a path that does not exist. Symbolic links
    are followed only when they stay inside the tree being walked.
    """
    for given in paths:
        root = Path(given)
        if not root.exists() and not root.is_symlink():
            raise UsageError(f"no such file or directory: {given}")
        if not root.is_dir():
            if root.is_file():
                yield root, str(given)
            continue
        real_root = root.resolve()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath) / name
                if p.is_symlink():
                    target = p.resolve()
                    if not target.is_relative_to(real_root) or not target.is_file():
                        continue
                elif not p.is_file():
                    continue
                yield p, str(p)


def scan_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    allow: Iterable[str] = (),
    limits: Limits | None = None,
    progress: Callable[[int, int], None] | None = None,
    fast: bool = False,
) -> list[FileReport]:
    """Scan files and directories; one report per regular file, in walk order.

    ``progress(done, total)`` is called after each file when given. With
    ``fast``, members that no loader executes (a PyTorch checkpoint's raw tensor
    storages) are left unread and no file digest is computed; each report says
    what was skipped (an ``info`` finding, rule ``fast-skipped``).
    """
    allowed = frozenset(parse_allow_entry(a) for a in allow)
    files = list(iter_files(paths))
    reports: list[FileReport] = []
    for i, (path, display) in enumerate(files, 1):
        reports.append(_scan_file(path, display, allowed, limits or Limits(), fast=fast))
        if progress is not None:
            progress(i, len(files))
    return settle_siblings(files, reports)


def settle_siblings(
    files: Sequence[tuple[Path, str]], reports: Sequence[FileReport]
) -> list[FileReport]:
    """Judge the files a report's loader opens beside it against what this run scanned.

    A ``joblib-sibling-file`` finding (joblib's ``NDArrayWrapper`` makes
    ``joblib.load`` unpickle a file beside the pickle) becomes ``info`` when that
    file was scanned in the same run, and stays ``high`` otherwise; one that
    names the file itself is ``high`` whatever else was scanned.
    """
    scanned = {os.path.realpath(path) for path, _ in files}
    settled: list[FileReport] = []
    for (path, _display), report in zip(files, reports, strict=True):
        if not any(f.rule == "joblib-sibling-file" for f in report.findings):
            settled.append(report)
            continue
        here = os.path.realpath(path)
        findings = []
        for f in report.findings:
            if f.rule == "joblib-sibling-file" and f.subject:
                target = os.path.realpath(os.path.join(os.path.dirname(path), f.subject))
                if target == here:
                    f = replace(
                        f,
                        rule="joblib-external-file",
                        message=f"joblib NDArrayWrapper names this file itself ({f.subject!r}): "
                        "joblib.load unpickles all of it again with numpy.load(allow_pickle=True)",
                    )
                elif target in scanned:
                    f = replace(
                        f,
                        severity=Severity.INFO,
                        message=f"joblib.load opens {f.subject!r} beside this file with "
                        "numpy.load(allow_pickle=True); that file was scanned in this run "
                        "(its own report says what it holds)",
                    )
            findings.append(f)
        settled.append(replace(report, findings=tuple(findings)))
    return settled


def scan_path(
    path: str | os.PathLike[str], *, allow: Iterable[str] = (), limits: Limits | None = None
) -> list[FileReport]:
    """Scan one file or directory (see :func:`scan_paths`)."""
    return scan_paths([path], allow=allow, limits=limits)
