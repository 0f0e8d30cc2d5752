"""The console's efficacy page: bench and lab results, read from the deployment.

:func:`efficacy_view` reads the JSON tables and PNG plots a ``results`` directory
holds (``[controls.serving] console_results``) and the newest ``labs.completed``
record of each lab; :func:`rows_about` picks the rows about one mitigation's
controls for the coverage page. Nothing here writes.

>>> _cell(0.123456), _cell(None), _shown(0.25, "%")
('0.123', '', '25%')
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlasguard.gateway.console.views import RESULT_NAME, _clock

if TYPE_CHECKING:
    from atlasguard.audit.log import AuditLog
    from atlasguard.audit.records import AuditRecord

__all__ = ["efficacy_view", "rows_about"]


def efficacy_view(log: AuditLog, results: Path | None) -> dict[str, Any]:
    """Bench and lab results (JSON, with their PNG plots) from the ``results``
    directory, and the latest ``labs.completed`` record of each lab."""
    tables = []
    plots = []
    if results is not None and results.is_dir():
        for path in sorted(results.iterdir()):
            if not RESULT_NAME.match(path.name) or not path.is_file() or path.is_symlink():
                continue
            if path.suffix == ".png":
                plots.append(path.name)
            elif path.suffix == ".json" and path.stat().st_size <= 4 << 20:
                table = _table_of(path)
                if table is not None:
                    tables.append(table)
    units = _lab_units(results)
    labs: dict[str, dict[str, Any]] = {}
    for _, r in _records_of(log, "labs.completed"):
        name = r.details.get("lab", "")
        if not name or name in labs:
            continue
        try:
            figures = json.loads(r.details.get("figures", "{}"))
        except ValueError:
            figures = {}
        labs[name] = {
            "lab": name,
            "who": r.details.get("who", r.principal),
            "when": _clock(r.time),
            "mitigations": r.details.get("mitigations", ""),
            "figures": [
                {
                    "what": k,
                    "without": v[0],
                    "with": v[1],
                    "shown": [_shown(v[0], units.get(k, "")), _shown(v[1], units.get(k, ""))],
                }
                for k, v in figures.items()
                if isinstance(v, list)
                and len(v) == 2
                and all(isinstance(x, (int, float)) for x in v)
            ],
        }
    return {"tables": tables, "plots": plots, "labs": sorted(labs.values(), key=lambda x: x["lab"])}


def rows_about(tables: list[dict[str, Any]], controls: Iterable[str]) -> list[dict[str, Any]]:
    """The rows of the results ``tables`` whose defence names one of ``controls``
    (``[controls.monitor]``, or "query monitor" for ``monitor``): a mitigation's
    measured efficacy, read from what the benches wrote.

    >>> table = {"name": "e.json", "command": "c", "columns": ["attack", "defence"],
    ...          "rows": [["SimBA", "query monitor (default [controls.monitor])"], ["x", "none"]]}
    >>> [t["rows"] for t in rows_about([table], ["monitor", "quotas"])]
    [[['SimBA', 'query monitor (default [controls.monitor])']]]
    """
    stems = [key.rstrip("s").replace("_", " ") for key in controls if len(key) >= 4]
    found = []
    for table in tables:
        if "defence" not in table["columns"]:
            continue
        at = table["columns"].index("defence")
        rows = [r for r in table["rows"] if any(stem in r[at].lower() for stem in stems)]
        if rows:
            found.append({**table, "rows": rows})
    return found


def _lab_units(results: Path | None) -> dict[str, str]:
    """The unit of each lab figure, from the labs' JSON in ``results`` (the audit
    record keeps only the numbers)."""
    units: dict[str, str] = {}
    if results is None or not results.is_dir():
        return units
    for path in results.glob("*.json"):
        if not RESULT_NAME.match(path.name) or path.stat().st_size > 1 << 20:
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "lab" in doc and isinstance(doc.get("figures"), list):
            for f in doc["figures"]:
                if isinstance(f, dict) and isinstance(f.get("what"), str):
                    units[f["what"]] = str(f.get("unit", ""))
    return units


def _shown(value: float, unit: str) -> str:
    """A lab figure as the lab prints it: rates as percentages, yes/no, or a count."""
    if unit == "%":
        return f"{value:.0%}"
    if unit == "yes/no":
        return "yes" if value else "no"
    return f"{value:g}{(' ' + unit) if unit else ''}"


def _records_of(
    log: AuditLog, action: str, scan: int = 50_000
) -> Iterator[tuple[int, AuditRecord]]:
    """The records of ``action`` among the newest ``scan``, newest first."""
    for idx, r in itertools.islice(log.newest_first(), scan):
        if r.action == action:
            yield idx, r


def _table_of(path: Path) -> dict[str, Any] | None:
    """A results file as a table: a bench's ``rows``, or a lab's ``figures``."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"name": path.name, "error": "not readable as JSON", "columns": [], "rows": []}
    if not isinstance(doc, dict):
        return None
    rows = doc.get("rows")
    if rows is None and isinstance(doc.get("figures"), list):
        rows = doc["figures"]
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return None
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns and not isinstance(row[key], (dict, list)):
                columns.append(key)
    return {
        "name": path.name,
        "command": str(
            doc.get("command") or (f"atlasguard labs run {doc['lab']}" if "lab" in doc else "")
        ),
        "columns": columns[:12],
        "rows": [[_cell(row.get(c)) for c in columns[:12]] for row in rows[:200]],
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)[:200]
