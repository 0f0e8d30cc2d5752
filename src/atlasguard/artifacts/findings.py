"""What a scan finds: severities, locations, findings and per-file reports.

Results are values (frozen dataclasses). A file that could not be examined is
reported with a finding of its own (rule ``unreadable`` or ``limit-exceeded``),
never silently passed.

>>> from atlasguard.artifacts.findings import Finding, Location, Severity
>>> f = Finding(rule="pickle-import", severity=Severity.CRITICAL,
...             message="imports os.system", location=Location(member="data.pkl", offset=2))
>>> f.severity >= Severity.HIGH
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from atlasguard.errors import UsageError

__all__ = ["FileReport", "Finding", "Location", "Severity"]


class Severity(IntEnum):
    """How bad a finding is; ordered, so ``>=`` compares thresholds."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Severity:
        """``"high"`` -> :attr:`HIGH`; raises :class:`UsageError` on anything else."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in cls)
            raise UsageError(f"unknown severity {text!r}: expected one of {names}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a file a finding sits.

    ``member`` is the path inside a container, nested containers joined by
    ``!`` (``outer.zip!inner.tar!model/data.pkl``); ``None`` for the file itself.
    ``offset`` is the byte offset within that member (or file).
    """

    member: str | None = None
    offset: int | None = None

    def __str__(self) -> str:
        parts = []
        if self.member:
            parts.append(self.member)
        if self.offset is not None:
            parts.append(f"@{self.offset}")
        return " ".join(parts) if parts else "-"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a scanner found.

    ``rule`` is a stable identifier (``pickle-import``, ``zip-unreadable``...);
    ``techniques`` the ATLAS techniques it relates to (``AML.T0011.000`` for
    unsafe AI artifacts, ``AML.T0010`` supply-chain compromise); ``mitigations``
    the ATLAS mitigations whose control raised it.
    """

    rule: str
    severity: Severity
    message: str
    location: Location = field(default_factory=Location)
    techniques: tuple[str, ...] = ("AML.T0011.000", "AML.T0010")
    mitigations: tuple[str, ...] = ("AML.M0016",)
    subject: str | None = None
    """A file beside this one that the finding is about (a sibling a loader opens)."""


@dataclass(frozen=True, slots=True)
class FileReport:
    """Everything found in one file given to the scanner."""

    path: str
    format: str
    sha256: str
    size: int
    findings: tuple[Finding, ...] = ()

    @property
    def max_severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def fails(self, threshold: Severity) -> bool:
        """True when any finding is at or above ``threshold``."""
        return any(f.severity >= threshold for f in self.findings)
