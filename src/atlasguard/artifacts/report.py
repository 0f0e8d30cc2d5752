"""Render scan reports as text, JSON or SARIF 2.1.0 (GitHub code scanning).

One small renderer class per format, chosen by :class:`ReportFormat`.

>>> from atlasguard.artifacts.findings import FileReport, Finding, Location, Severity
>>> from atlasguard.artifacts.report import ReportFormat, render
>>> report = FileReport(path="model.pkl", format="pickle", sha256="0" * 64, size=10,
...     findings=(Finding("pickle-import", Severity.CRITICAL, "imports os.system",
...                       Location(offset=2)),))
>>> import json
>>> json.loads(render([report], ReportFormat.JSON))[0]["findings"][0]["location"]
{'member': None, 'offset': 2}
>>> json.loads(render([report], ReportFormat.SARIF))["version"]
'2.1.0'
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from enum import StrEnum
from pathlib import PurePath
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table
from rich.text import Text

from atlasguard import __version__
from atlasguard.artifacts.findings import FileReport, Finding, Severity

__all__ = [
    "JsonRenderer",
    "Renderer",
    "ReportFormat",
    "SarifRenderer",
    "TextRenderer",
    "render",
    "renderer_for",
]

INFORMATION_URI = "https://github.com/atlasguard/atlasguard"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

_RULES: dict[str, tuple[str, str]] = {
    "pickle-import": (
        "Pickle imports a callable outside the allow-list",
        "Loading this pickle imports a module attribute that is not a known-harmless "
        "constructor; known code-execution primitives are critical.",
    ),
    "pickle-import-unresolved": (
        "Pickle import cannot be resolved statically",
        "The module or name of an import is computed in a way the analysis does not follow.",
    ),
    "pickle-call-unresolved": (
        "Pickle calls an unresolvable callable",
        "A call site's callable is not a resolved import.",
    ),
    "pickle-ext": (
        "Pickle uses the copyreg extension registry",
        "EXT opcodes import whatever the loading process registered.",
    ),
    "pickle-nested": (
        "Pickle unpickles embedded data",
        "Bytes handed to a loader are a second pickle (scanned as well).",
    ),
    "pickle-build-global": (
        "Pickle sets attributes on a class or module",
        "BUILD applied to an import monkey-patches it.",
    ),
    "unreadable": (
        "File or member could not be read in full",
        "A file the scanner cannot read may still load in the framework.",
    ),
    "limit-exceeded": ("Scan limit exceeded", "The scan stopped at a size, time or nesting limit."),
}

_SARIF_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.8",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}
_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


class ReportFormat(StrEnum):
    """The report formats the CLI offers."""

    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"


class Renderer(Protocol):
    """Turns file reports into one document."""

    def render(self, reports: Sequence[FileReport]) -> str:
        """The whole report as text."""
        ...


def _finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "rule": f.rule,
        "severity": f.severity.label,
        "message": f.message,
        "location": {"member": f.location.member, "offset": f.location.offset},
        "techniques": list(f.techniques),
        "mitigations": list(f.mitigations),
    }


class JsonRenderer:
    """An array with one object per file."""

    def render(self, reports: Sequence[FileReport]) -> str:
        """JSON text, indented."""
        return json.dumps(
            [
                {
                    "path": r.path,
                    "format": r.format,
                    "sha256": r.sha256,
                    "size": r.size,
                    "findings": [_finding_dict(f) for f in r.findings],
                }
                for r in reports
            ],
            indent=2,
        )


def _uri(path: str, base: str | None) -> str:
    p = PurePath(path)
    if p.is_absolute():
        try:
            p = PurePath(os.path.relpath(path, base or os.getcwd()))
        except ValueError:  # another drive on Windows
            return p.as_posix()
    return p.as_posix()


class SarifRenderer:
    """SARIF 2.1.0, in the subset GitHub code scanning accepts.

    ``base`` is the directory URIs are made relative to (the repository root,
    the current directory by default).
    """

    def __init__(self, *, base: str | None = None) -> None:
        self.base = base

    def render(self, reports: Sequence[FileReport]) -> str:
        """SARIF JSON text."""
        rule_ids = sorted({f.rule for r in reports for f in r.findings} | {"pickle-import"})
        worst: dict[str, Severity] = {}
        for r in reports:
            for f in r.findings:
                worst[f.rule] = max(worst.get(f.rule, f.severity), f.severity)
        rules = [self._rule(rid, worst.get(rid, Severity.HIGH)) for rid in rule_ids]
        index = {rid: i for i, rid in enumerate(rule_ids)}
        results = [self._result(r, f, index[f.rule]) for r in reports for f in r.findings]
        doc = {
            "$schema": SARIF_SCHEMA,
            "version": "2.1.0",
            "runs": [
                {
                    "tool": {
                        "driver": {
                            "name": "atlasguard",
                            "version": __version__,
                            "semanticVersion": __version__,
                            "informationUri": INFORMATION_URI,
                            "rules": rules,
                        }
                    },
                    "results": results,
                }
            ],
        }
        return json.dumps(doc, indent=2)

    @staticmethod
    def _rule(rule_id: str, severity: Severity) -> dict[str, Any]:
        short, full = _RULES.get(rule_id, (rule_id.replace("-", " ").capitalize(), rule_id))
        return {
            "id": rule_id,
            "name": "".join(part.capitalize() for part in rule_id.split("-")),
            "shortDescription": {"text": short},
            "fullDescription": {"text": full},
            "helpUri": f"{INFORMATION_URI}/blob/main/docs/mitigations/AML.M0016.md#{rule_id}",
            "help": {"text": full},
            "defaultConfiguration": {"level": _SARIF_LEVEL[severity]},
            "properties": {
                "tags": ["security", "mitre-atlas", "AML.T0011.000", "AML.T0010"],
                "precision": "high",
                "security-severity": _SECURITY_SEVERITY[severity],
            },
        }

    def _result(self, report: FileReport, f: Finding, rule_index: int) -> dict[str, Any]:
        where = str(f.location)
        region: dict[str, Any] = {"startLine": 1}
        if f.location.offset is not None and f.location.member is None:
            region["byteOffset"] = f.location.offset
            region["byteLength"] = 1
        text = f"{f.message} [{f.severity.label}]"
        if where != "-":
            text += f" (at {where})"
        uri = _uri(report.path, self.base)
        fingerprint = hashlib.sha256(
            f"{uri}\0{f.rule}\0{f.location.member}\0{f.message}".encode()
        ).hexdigest()
        return {
            "ruleId": f.rule,
            "ruleIndex": rule_index,
            "level": _SARIF_LEVEL[f.severity],
            "message": {"text": text},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri},
                        "region": region,
                    }
                }
            ],
            "partialFingerprints": {"atlasguard/v1": fingerprint},
            "properties": {
                "severity": f.severity.label,
                "sha256": report.sha256,
                "techniques": list(f.techniques),
                "mitigations": list(f.mitigations),
            },
        }


class TextRenderer:
    """A readable summary grouped by file (Rich markup, plain when not a terminal)."""

    def __init__(self, *, width: int = 120, color: bool = False) -> None:
        self.width = width
        self.color = color

    def render(self, reports: Sequence[FileReport]) -> str:
        """The summary as text."""
        buf = io.StringIO()
        console = Console(
            file=buf,
            width=self.width,
            force_terminal=self.color,
            no_color=not self.color,
            highlight=False,
        )
        flagged = [r for r in reports if r.findings]
        for r in flagged:
            worst = r.max_severity or Severity.INFO
            head = Text(f"{r.path} ", style="bold")
            head.append(f"[{r.format}] ", style="dim")
            head.append(worst.label.upper(), style=_STYLE[worst])
            console.print(head)
            table = Table(show_header=False, box=None, padding=(0, 1), expand=False)
            table.add_column("severity", no_wrap=True)
            table.add_column("rule", no_wrap=True)
            table.add_column("where")
            table.add_column("message")
            for f in sorted(r.findings, key=lambda x: -x.severity):
                table.add_row(
                    Text(f.severity.label, style=_STYLE[f.severity]),
                    f.rule,
                    str(f.location),
                    f.message,
                )
            console.print(table)
        counts: dict[Severity, int] = {}
        for r in reports:
            for f in r.findings:
                counts[f.severity] = counts.get(f.severity, 0) + 1
        summary = ", ".join(f"{n} {s.label}" for s, n in sorted(counts.items(), reverse=True))
        console.print(
            f"{len(reports)} file(s) scanned, {len(flagged)} with findings"
            + (f": {summary}" if summary else "")
        )
        return buf.getvalue()


def renderer_for(fmt: ReportFormat, *, color: bool = False) -> Renderer:
    """The renderer for ``fmt``."""
    if fmt is ReportFormat.JSON:
        return JsonRenderer()
    if fmt is ReportFormat.SARIF:
        return SarifRenderer()
    return TextRenderer(color=color)


def render(reports: Sequence[FileReport], fmt: ReportFormat) -> str:
    """Render ``reports`` in ``fmt``."""
    return renderer_for(fmt).render(reports)
