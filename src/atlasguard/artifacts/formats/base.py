"""The contract every format scanner follows.

A format scanner recognises its format from the first bytes of a stream
(``sniff``) and yields findings for it (``scan``). Containers (zip, tar, 7z,
PyTorch checkpoints, npz...) hand each member back to the dispatcher through
:meth:`ScanContext.scan_member`, so a pickle inside a zip inside a tar is
examined by the same code as a pickle on disk.

Scanners never execute, import or unpickle what they read. They read from a
seekable binary stream and keep memory bounded: large members are spooled to
a temporary file, never held whole in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, runtime_checkable

from atlasguard.artifacts.findings import Finding, Location, Severity

__all__ = [
    "HEAD_BYTES",
    "FormatScanner",
    "LimitExceeded",
    "Limits",
    "MemberObserver",
    "ScanContext",
    "limit_finding",
    "unreadable_finding",
]

HEAD_BYTES = 4096
"""How many leading bytes ``sniff`` is given."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that turn hostile inputs into findings instead of hangs."""

    max_seconds_per_file: float = 120.0
    max_depth: int = 8  # containers inside containers
    max_members: int = 100_000  # per container
    max_decompressed_bytes: int = 8 * 1024**3  # per top-level file, all members together
    max_compression_ratio: float = 200.0  # per member, when larger than 1 MiB
    max_pickle_opcodes: int = 500_000_000
    max_header_bytes: int = 100 * 1024**2  # safetensors / GGUF / JSON metadata headers
    spool_bytes: int = 16 * 1024**2  # members larger than this are spooled to disk


class LimitExceeded(Exception):
    """A limit of :class:`Limits` was hit; the dispatcher turns it into a finding."""

    def __init__(self, what: str, location: Location | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.location = location or Location()


@dataclass(slots=True)
class _Budget:
    decompressed: int = 0
    skipped_members: int = 0  # fast mode: members no loader executes, left unread
    skipped_bytes: int = 0


class MemberObserver(Protocol):
    """Watches every file and member a scan reads (code folders, misnamed files)."""

    def observe_member(self, container: str | None, name: str, stream: BinaryIO) -> None:
        """Called before member ``name`` of ``container`` is dispatched."""
        ...

    def member_scanned(
        self, name: str, fmt: str, stream: BinaryIO, where: Location
    ) -> list[Finding]:
        """Called after it was scanned as ``fmt``; returns findings to add."""
        ...


@dataclass(slots=True)
class ScanContext:
    """What a format scanner needs beyond the stream: limits, allow-list, recursion.

    ``member`` is the location of the stream being scanned (``None`` for a file
    on disk). ``allow`` holds ``module.name`` entries the user added to the
    pickle allow-list. ``dispatch`` is the dispatcher's entry point for nested
    members; scanners call :meth:`scan_member` rather than it.
    """

    limits: Limits
    allow: frozenset[str]
    dispatch: Callable[[BinaryIO, ScanContext], list[Finding]]
    member: str | None = None
    depth: int = 0
    deadline: float = field(default_factory=lambda: time.monotonic() + 120.0)
    budget: _Budget = field(default_factory=_Budget)
    formats_seen: list[str] = field(default_factory=list)
    observer: MemberObserver | None = None
    fast: bool = False  # read only what a loader executes (see atlasguard scan --fast)

    def skip(self, nbytes: int) -> None:
        """Fast mode: count a member left unread because no loader executes it."""
        self.budget.skipped_members += 1
        self.budget.skipped_bytes += nbytes

    def location(self, offset: int | None = None, inner: str | None = None) -> Location:
        """A location at ``offset`` in this stream, or in its member ``inner``."""
        member = self.member
        if inner is not None:
            member = f"{member}!{inner}" if member else inner
        return Location(member=member, offset=offset)

    def check_time(self) -> None:
        """Raise :class:`LimitExceeded` when this file's time budget is spent."""
        if time.monotonic() > self.deadline:
            raise LimitExceeded(
                f"scan time limit of {self.limits.max_seconds_per_file:g}s exceeded",
                self.location(),
            )

    def charge(self, decompressed: int) -> None:
        """Count decompressed bytes against the per-file budget (zip bombs)."""
        self.budget.decompressed += decompressed
        if self.budget.decompressed > self.limits.max_decompressed_bytes:
            raise LimitExceeded(
                f"more than {self.limits.max_decompressed_bytes} bytes decompressed",
                self.location(),
            )

    def child(self, name: str) -> ScanContext:
        """The context for member ``name`` of this stream."""
        member = f"{self.member}!{name}" if self.member else name
        if self.depth + 1 > self.limits.max_depth:
            raise LimitExceeded(
                f"containers nested deeper than {self.limits.max_depth}", Location(member=member)
            )
        return ScanContext(
            limits=self.limits,
            allow=self.allow,
            dispatch=self.dispatch,
            member=member,
            depth=self.depth + 1,
            deadline=self.deadline,
            budget=self.budget,
            formats_seen=self.formats_seen,
            observer=self.observer,
            fast=self.fast,
        )

    def scan_member(self, stream: BinaryIO, name: str) -> list[Finding]:
        """Scan a member of this container (any format) and return its findings."""
        try:
            child = self.child(name)
        except LimitExceeded as exc:
            return [limit_finding(exc)]
        observer = self.observer
        if observer is None:
            return self.dispatch(stream, child)
        observer.observe_member(self.member, name, stream)
        seen = len(self.formats_seen)
        found = self.dispatch(stream, child)
        fmt = self.formats_seen[seen] if len(self.formats_seen) > seen else "unknown"
        return found + observer.member_scanned(name, fmt, stream, child.location())


@runtime_checkable
class FormatScanner(Protocol):
    """One file format: recognise it, then scan it."""

    name: str
    """Short format name used in reports (``pickle``, ``pytorch-zip``, ``safetensors``...)."""

    def sniff(self, head: bytes) -> bool:
        """True when ``head`` (the first :data:`HEAD_BYTES` bytes) looks like this format."""
        ...

    def scan(self, stream: BinaryIO, ctx: ScanContext) -> Iterable[Finding]:
        """Yield the findings in ``stream`` (positioned at 0, seekable).

        Raise :class:`LimitExceeded` for a limit hit; any other exception from a
        malformed file is turned into an ``unreadable`` finding by the dispatcher,
        but a scanner should prefer yielding a precise finding itself.
        """
        ...


def unreadable_finding(
    message: str, location: Location, *, severity: Severity = Severity.HIGH
) -> Finding:
    """A file or member the scanner could not read in full: it may still load elsewhere."""
    return Finding(rule="unreadable", severity=severity, message=message, location=location)


def limit_finding(exc: LimitExceeded) -> Finding:
    """A limit hit while scanning: reported, never a silent pass."""
    return Finding(
        rule="limit-exceeded",
        severity=Severity.HIGH,
        message=f"scan stopped: {exc.what}",
        location=exc.location,
    )
