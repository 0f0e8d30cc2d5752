"""Render an :class:`~atlasguard.data.audit.AuditReport` (text, JSON, HTML) and write the
cleaned copy of the data: the input without the flagged rows, in the input's own format.

>>> from atlasguard.data.audit import AuditReport, Finding
>>> found = (Finding(2, "duplicate", 1.0, "exact duplicate of row 0"),)
>>> r = AuditReport(found, 5, ("duplicate",), {})
>>> print(render_text(r).splitlines()[0])
5 rows audited, 1 flagged: duplicate 1
"""

from __future__ import annotations

import csv
import enum
import html
import io
import shutil
from pathlib import Path

import numpy as np

from atlasguard.data.audit import AuditReport
from atlasguard.data.load import Table
from atlasguard.errors import DataError

__all__ = ["AuditFormat", "render", "render_html", "render_text", "write_cleaned"]

SHOWN = 200  # findings listed in the text report; JSON and HTML hold all of them


class AuditFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"
    HTML = "html"


def _headline(report: AuditReport) -> str:
    counts = report.summary()["findings"]
    kinds = ", ".join(f"{k} {n}" for k, n in counts.items()) or "nothing found"
    return f"{report.rows} rows audited, {len(report.flagged)} flagged: {kinds}"


def render_text(report: AuditReport) -> str:
    lines = [_headline(report)]
    for f in report.findings[:SHOWN]:
        where = "(data set)" if f.row is None else f"row {f.row}"
        lines.append(f"  {where:>10}  {f.kind:<13} {f.score:6.2f}  {f.reason}")
    if len(report.findings) > SHOWN:
        lines.append(f"  ... {len(report.findings) - SHOWN} more: --format json lists all")
    return "\n".join(lines)


def render_html(report: AuditReport) -> str:
    rows = "\n".join(
        "<tr><td>{}</td><td>{}</td><td>{:.2f}</td><td>{}</td></tr>".format(
            "" if f.row is None else f.row, html.escape(f.kind), f.score, html.escape(f.reason)
        )
        for f in report.findings
    )
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        "<title>atlasguard data audit</title><style>"
        "body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{padding:.25em .75em;border-bottom:1px solid #ddd;text-align:left}"
        "</style></head><body>\n"
        f"<h1>Data audit (AML.M0007)</h1>\n<p>{html.escape(_headline(report))}</p>\n"
        "<table><thead><tr><th>row</th><th>kind</th><th>score</th><th>reason</th></tr></thead>"
        f"<tbody>\n{rows}\n</tbody></table></body></html>\n"
    )


def render(report: AuditReport, fmt: AuditFormat) -> str:
    if fmt is AuditFormat.JSON:
        return report.to_json()
    if fmt is AuditFormat.HTML:
        return render_html(report)
    return render_text(report)


def write_cleaned(source: Path, table: Table, report: AuditReport, target: Path) -> int:
    """Write ``source`` without the flagged rows to ``target`` (same format); the count kept."""
    drop = set(report.flagged.tolist())
    keep = [r for r in range(len(table.x)) if r not in drop]
    if target.exists() and target.resolve() == source.resolve():
        raise DataError("the cleaned copy must not overwrite the input; give another path")
    if table.kind == "images":
        target.mkdir(parents=True, exist_ok=True)
        for r in keep:
            destination = target / table.sources[r]
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / table.sources[r], destination)
        return len(keep)
    suffix = source.suffix.lower()
    if suffix == ".csv":
        text = source.read_text(encoding="utf-8-sig")
        records = list(csv.reader(io.StringIO(text, newline="")))
        header = 1 if len(records) > len(table.x) else 0
        with target.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerows(records[:header])
            writer.writerows(records[header + r] for r in keep)
        return len(keep)
    x = table.x[keep]
    arrays = (
        {"x": x} if table.y is None else {"x": x, "y": np.asarray(table.classes)[table.y[keep]]}
    )
    with target.open("wb") as out:
        np.savez(out, **arrays)
    return len(keep)
