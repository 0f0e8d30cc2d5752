"""What the release gate finds, the allow-list that accepts some of it, and its reports.

A :class:`ReleaseFinding` names the file (``dist/app.whl!pkg/model.onnx`` for a
member, ``1a2b3c4d5e6f:path`` for a file found only in git history), the
rule, the ATLAS mitigations and techniques it protects, and what matched
(credentials are never echoed whole). Its :attr:`~ReleaseFinding.fingerprint`
leaves the commit out, so one allow-list entry covers a file in every commit.

The allow-list is TOML::

    [[accept]]
    rule = "private-address"        # optional: every rule when absent
    path = "docs/deploy/*.md"       # a glob over the finding's path; required
    match = "10.0.0.5"              # optional: only this match
    reason = "documentation example, not a real host"   # required

>>> f = ReleaseFinding("model", Severity.HIGH, "m.onnx", "ONNX model", match="onnx")
>>> old = ReleaseFinding("model", Severity.HIGH, "0123456789ab:m.onnx", "x", match="onnx")
>>> f.fingerprint == old.fingerprint
True
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from atlasguard import __version__
from atlasguard.artifacts.findings import Severity
from atlasguard.errors import UsageError
from atlasguard.release.walk import strip_commit

__all__ = [
    "RULES",
    "AllowEntry",
    "AllowList",
    "ReleaseFinding",
    "ReleaseReport",
    "render_json",
    "render_sarif",
    "render_text",
]

INFORMATION_URI = "https://github.com/atlasguard/atlasguard"
MAX_ALLOW_BYTES = 1 << 20

# rule -> (title, mitigations, techniques, what to do)
RULES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], str]] = {
    "model": (
        "Model weights or checkpoint in the release",
        ("AML.M0001",),
        ("AML.T0002.001", "AML.T0005", "AML.T0044"),
        "serve the model behind an API instead of publishing it, or accept it in the "
        "allow-list if it is meant to be public",
    ),
    "bundled-model": (
        "Model bundled into a client package",
        ("AML.M0017", "AML.M0001"),
        ("AML.T0044", "AML.T0043.000", "AML.T0048.004", "AML.T0010.003"),
        "every client gets full white-box access to this model: serve it from the cloud, "
        "or accept it with a reason",
    ),
    "model-pointer": (
        "Git LFS pointer to a model or data set",
        ("AML.M0001",),
        ("AML.T0002.001", "AML.T0002.000"),
        "the pointer names the object and its size; anyone with the repository's LFS "
        "access fetches the file: drop it from the release",
    ),
    "dataset": (
        "Data set in the release",
        ("AML.M0001",),
        ("AML.T0002.000", "AML.T0020"),
        "keep training and evaluation data out of the release, or publish a synthetic sample",
    ),
    "notebook-output": (
        "Notebook outputs that hold data",
        ("AML.M0000", "AML.M0001"),
        ("AML.T0002.000", "AML.T0000"),
        "clear the outputs before release (jupyter nbconvert --clear-output --inplace)",
    ),
    "embedded-blob": (
        "Opaque base64 blob",
        ("AML.M0000", "AML.M0001"),
        ("AML.T0002",),
        "check what the blob holds; the gate decodes it and reports any model or archive inside",
    ),
    "ml-config": (
        "Model architecture or hyper-parameter configuration",
        ("AML.M0001", "AML.M0000"),
        ("AML.T0005", "AML.T0002.001"),
        "an attacker builds a close proxy model from these settings: keep them internal",
    ),
    "internal-host": (
        "Internal hostname",
        ("AML.M0000",),
        ("AML.T0003", "AML.T0004"),
        "replace internal host names with placeholders (example.com, RFC 2606)",
    ),
    "private-address": (
        "Private network address",
        ("AML.M0000",),
        ("AML.T0003", "AML.T0004"),
        "replace private addresses with documentation ranges (192.0.2.0/24, RFC 5737)",
    ),
    "storage-uri": (
        "Object-store or file-system URI",
        ("AML.M0000", "AML.M0001"),
        ("AML.T0003", "AML.T0002"),
        "bucket and container names tell an attacker where the training data and "
        "models live: move them to configuration that is not released",
    ),
    "tracking-uri": (
        "Experiment-tracking server or project",
        ("AML.M0000", "AML.M0001"),
        ("AML.T0003", "AML.T0002"),
        "tracking servers (MLflow, Weights & Biases) hold every run, model and data "
        "version: keep their addresses and project names out of the release",
    ),
    "local-path": (
        "Local path naming a person or machine",
        ("AML.M0000",),
        ("AML.T0003",),
        "replace home-directory and mount paths with relative paths",
    ),
    "image-metadata": (
        "Image metadata (location, camera, author)",
        ("AML.M0000",),
        ("AML.T0003",),
        "strip the metadata (exiftool -all= FILE, or re-save without EXIF)",
    ),
    "policy-term": (
        "Term the policy lists as not for release",
        ("AML.M0000",),
        ("AML.T0003", "AML.T0000"),
        "remove the term, or accept it in the allow-list with a reason",
    ),
    "credential": (
        "Credential (detect-secrets)",
        ("AML.M0000",),
        ("AML.T0055",),
        "revoke the credential now (it may already be copied), then remove it from the "
        "release and its history",
    ),
    "unexamined": (
        "Part of the release could not be examined",
        ("AML.M0000", "AML.M0001"),
        ("AML.T0002",),
        "check the file by hand, or raise the limit that stopped the gate",
    ),
}


@dataclass(frozen=True, slots=True)
class ReleaseFinding:
    """One thing the release should not carry."""

    rule: str
    severity: Severity
    path: str
    message: str
    match: str = ""
    line: int | None = None
    accepted: str | None = None  # the allow-list's reason, when accepted

    @property
    def mitigations(self) -> tuple[str, ...]:
        return RULES[self.rule][1]

    @property
    def techniques(self) -> tuple[str, ...]:
        return RULES[self.rule][2]

    @property
    def advice(self) -> str:
        return RULES[self.rule][3]

    @property
    def fingerprint(self) -> str:
        """Stable across commits and line moves: rule, path without ``commit:``, match."""
        path = strip_commit(self.path)
        return hashlib.sha256(f"{self.rule}\0{path}\0{self.match}".encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["severity"] = self.severity.label
        out["mitigations"] = list(self.mitigations)
        out["techniques"] = list(self.techniques)
        out["fingerprint"] = self.fingerprint
        out["advice"] = self.advice
        return out


@dataclass(frozen=True, slots=True)
class AllowEntry:
    path: str
    reason: str
    rule: str | None = None
    match: str | None = None
    used: int = 0

    def accepts(self, f: ReleaseFinding) -> bool:
        path = strip_commit(f.path)
        return (
            (self.rule is None or self.rule == f.rule)
            and (self.match is None or self.match == f.match)
            and (fnmatch.fnmatchcase(path, self.path) or fnmatch.fnmatchcase(f.path, self.path))
        )


@dataclass
class AllowList:
    """Accepted findings, each with the reason a person gave."""

    entries: list[AllowEntry] = field(default_factory=list)
    source: str = ""

    @classmethod
    def load(cls, path: Path) -> AllowList:
        """Read an allow-list file; a missing file is an empty list."""
        if not path.is_file():
            return cls(source=path.name)
        raw = path.read_bytes()[: MAX_ALLOW_BYTES + 1]
        if len(raw) > MAX_ALLOW_BYTES:
            raise UsageError(f"{path.name}: allow-list larger than {MAX_ALLOW_BYTES} bytes")
        return cls.parse(raw.decode("utf-8", errors="replace"), source=path.name)

    @classmethod
    def parse(cls, text: str, *, source: str = "allow-list") -> AllowList:
        """Parse the TOML; every entry needs a ``path`` glob and a ``reason``."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{source}: not valid TOML: {exc}") from None
        unknown = set(data) - {"accept"}
        if unknown:
            raise UsageError(
                f"{source}: unknown table(s) {', '.join(sorted(unknown))}: "
                "expected only [[accept]] entries"
            )
        raw = data.get("accept", [])
        if not isinstance(raw, list):
            raise UsageError(f"{source}: 'accept' must be an array of tables ([[accept]])")
        entries = []
        for i, item in enumerate(raw, 1):
            where = f"{source}: [[accept]] #{i}"
            if not isinstance(item, dict):
                raise UsageError(f"{where}: expected a table")
            extra = set(item) - {"path", "reason", "rule", "match"}
            if extra:
                raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
            values = {k: item.get(k) for k in ("path", "reason", "rule", "match")}
            if any(v is not None and not isinstance(v, str) for v in values.values()):
                raise UsageError(f"{where}: every value must be a string")
            path, reason = values["path"], values["reason"]
            if not path or not reason or not str(reason).strip():
                raise UsageError(
                    f"{where}: needs a 'path' glob and a 'reason' saying why "
                    "the finding is accepted"
                )
            rule = values["rule"]
            if rule is not None and rule not in RULES:
                raise UsageError(f"{where}: unknown rule {rule!r}; rules: {', '.join(RULES)}")
            entries.append(AllowEntry(path, str(reason).strip(), rule, values["match"]))
        return cls(entries, source)

    def apply(self, findings: Sequence[ReleaseFinding]) -> list[ReleaseFinding]:
        """The findings, those an entry accepts marked with its reason; counts each entry's use."""
        out = []
        for f in findings:
            for i, entry in enumerate(self.entries):
                if entry.accepts(f):
                    self.entries[i] = replace(entry, used=entry.used + 1)
                    f = replace(f, accepted=entry.reason)
                    break
            out.append(f)
        return out

    def unused(self) -> list[AllowEntry]:
        return [e for e in self.entries if e.used == 0]


@dataclass
class ReleaseReport:
    """Everything the gate found in one release."""

    target: str
    findings: list[ReleaseFinding]
    files: int = 0
    bytes: int = 0
    commits: int = 0
    unused_allow: list[AllowEntry] = field(default_factory=list)

    @property
    def open(self) -> list[ReleaseFinding]:
        return [f for f in self.findings if f.accepted is None]

    @property
    def passed(self) -> bool:
        return not self.open

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for f in self.open:
            counts[f.rule] = counts.get(f.rule, 0) + 1
        return {
            "target": self.target,
            "passed": self.passed,
            "files": self.files,
            "bytes": self.bytes,
            "commits": self.commits,
            "open": len(self.open),
            "accepted": len(self.findings) - len(self.open),
            "by_rule": dict(sorted(counts.items())),
            "unused_allow_entries": [
                {"path": e.path, "rule": e.rule, "reason": e.reason} for e in self.unused_allow
            ],
        }


def render_json(report: ReleaseReport) -> str:
    body = {"summary": report.summary(), "findings": [f.to_dict() for f in report.findings]}
    return json.dumps(body, indent=1)


def render_text(report: ReleaseReport) -> str:
    lines: list[str] = []
    order = sorted(report.findings, key=lambda f: (f.accepted is not None, -f.severity, f.path))
    for f in order:
        where = f"{f.path}:{f.line}" if f.line else f.path
        state = f"accepted: {f.accepted}" if f.accepted else f.severity.label.upper()
        lines.append(f"{state:<8} {f.rule:<16} {where}")
        lines.append(f"         {f.message}")
        if not f.accepted:
            lines.append(
                f"         {', '.join(f.mitigations)} against {', '.join(f.techniques)}"
                f"; next: {f.advice}"
            )
    s = report.summary()
    history = f", {s['commits']} commit(s)" if s["commits"] else ""
    lines.append(
        f"{s['files']} file(s) examined{history}: {s['open']} open finding(s), "
        f"{s['accepted']} accepted"
    )
    for e in report.unused_allow:
        lines.append(f"note: allow-list entry for {e.path!r} ({e.reason}) matched nothing")
    if not report.passed:
        lines.append(
            "release blocked: fix the open findings, or accept each in the allow-list "
            "with a reason ([[accept]] path, rule, reason)"
        )
    return "\n".join(lines)


_LEVEL = {
    Severity.INFO: "note",
    Severity.LOW: "note",
    Severity.MEDIUM: "warning",
    Severity.HIGH: "error",
    Severity.CRITICAL: "error",
}
_SECURITY = {
    Severity.INFO: "0.0",
    Severity.LOW: "3.0",
    Severity.MEDIUM: "5.5",
    Severity.HIGH: "8.0",
    Severity.CRITICAL: "9.5",
}


def render_sarif(report: ReleaseReport) -> str:
    """SARIF 2.1.0; accepted findings carry a suppression with the allow-list's reason."""
    used = sorted({f.rule for f in report.findings})
    index = {r: i for i, r in enumerate(used)}
    rules = [
        {
            "id": r,
            "name": "".join(p.capitalize() for p in r.split("-")),
            "shortDescription": {"text": RULES[r][0]},
            "fullDescription": {"text": f"{RULES[r][0]}. Next: {RULES[r][3]}."},
            "helpUri": f"{INFORMATION_URI}/blob/main/docs/mitigations/{RULES[r][1][0]}.md",
            "help": {"text": RULES[r][3]},
            "properties": {
                "tags": ["security", "mitre-atlas", *RULES[r][1], *RULES[r][2]],
            },
        }
        for r in used
    ]
    results = []
    for f in report.findings:
        artifact, _, inner = f.path.partition("!")
        commit = f.path[:12] if strip_commit(f.path) != f.path else ""
        artifact = quote(strip_commit(artifact), safe="/")
        location: dict[str, Any] = {"artifactLocation": {"uri": artifact}}
        if f.line and not inner:
            location["region"] = {"startLine": f.line}
        message = f.message + (f" (inside {inner})" if inner else "")
        message += f" (in commit {commit}, not in the working tree)" if commit else ""
        result: dict[str, Any] = {
            "ruleId": f.rule,
            "ruleIndex": index[f.rule],
            "level": _LEVEL[f.severity],
            "message": {"text": message},
            "locations": [{"physicalLocation": location}],
            "partialFingerprints": {"atlasguard/release/v1": f.fingerprint},
            "properties": {
                "severity": f.severity.label,
                "security-severity": _SECURITY[f.severity],
                "mitigations": list(f.mitigations),
                "techniques": list(f.techniques),
                "path": f.path,
            },
        }
        if f.accepted:
            result["suppressions"] = [{"kind": "external", "justification": f.accepted}]
        results.append(result)
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "atlasguard release-check",
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
    return json.dumps(doc, indent=1)
