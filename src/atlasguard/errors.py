"""The one exception hierarchy of atlasguard.

Every error atlasguard raises on purpose derives from :class:`AtlasguardError`.
Front ends translate them in one place: the CLI maps them to exit codes
(``exit_code``), the gateway to HTTP statuses.

>>> from atlasguard.errors import PolicyError, AtlasguardError
>>> issubclass(PolicyError, AtlasguardError)
True
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AtlasguardError",
    "CatalogError",
    "ConfigurationError",
    "DataError",
    "IntegrityError",
    "PolicyError",
    "ScanError",
    "UnknownIdError",
    "UnsafeArtifactError",
    "UsageError",
    "VerificationError",
]


class AtlasguardError(Exception):
    """Root of every error atlasguard raises on purpose.

    ``exit_code`` is what the command line exits with when this error ends a
    command: 1 for a failed check, 2 for a usage or configuration error.
    """

    exit_code: int = 2


class UsageError(AtlasguardError, ValueError):
    """A caller asked for something that cannot be done as asked."""

    exit_code = 2


class ConfigurationError(AtlasguardError):
    """A deployment is configured wrongly (missing file, bad setting)."""

    exit_code = 2


class PolicyError(ConfigurationError, ValueError):
    """The policy file is unreadable, malformed or holds a wrong value.

    The message names the file, the line or key, and what was expected.
    """


class DataError(AtlasguardError, ValueError):
    """A data set cannot be read as given (format, columns, labels); the message says what
    to change."""

    exit_code = 2


class CatalogError(AtlasguardError):
    """The packaged ATLAS data is missing or inconsistent."""

    exit_code = 2


class UnknownIdError(CatalogError, KeyError):
    """An ATLAS id (tactic, technique, mitigation) that the catalog does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class VerificationError(AtlasguardError):
    """A check failed: signature, manifest, access or safety. Fails closed."""

    exit_code = 1


class IntegrityError(VerificationError):
    """An artifact does not match its manifest, signature or authentication tag."""


class UnsafeArtifactError(VerificationError):
    """An artifact would run code, or import something outside the allow-list, if loaded.

    ``findings`` holds ``(file, finding)`` pairs (``file`` relative to what was
    scanned) when a scan decided the refusal, for front ends to show as data.
    """

    def __init__(self, message: str, *, findings: tuple[tuple[str, Any], ...] = ()) -> None:
        super().__init__(message)
        self.findings = findings

    @classmethod
    def of(cls, name: str, threshold: str, findings: list[tuple[str, Any]]) -> UnsafeArtifactError:
        """The refusal of ``name`` for ``findings`` at or above ``threshold``."""
        lines = [f"{path}: {f.severity.label} {f.rule}: {f.message}" for path, f in findings]
        return cls(
            f"refused {name}: findings at or above {threshold}:\n" + "\n".join(lines),
            findings=tuple(findings),
        )


class ScanError(AtlasguardError):
    """A scan could not be carried out at all (not: the scan found something)."""

    exit_code = 2
