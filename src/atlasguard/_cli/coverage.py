"""``atlasguard coverage``: which ATLAS mitigations and techniques a policy covers."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from atlasguard._cli.console import console, err_console

if TYPE_CHECKING:
    from atlasguard.catalog.coverage import Coverage
    from atlasguard.policy import Policy

__all__ = ["register"]


class CoverageFormat(StrEnum):
    table = "table"
    json = "json"
    misp = "misp"
    navigator = "navigator"


class RelationChoice(StrEnum):
    atlas = "atlas"
    misp = "misp"


def coverage(
    policy_path: Path | None = typer.Option(
        None, "--policy", help="Policy file; default: the policy `atlasguard policy init` writes."
    ),
    fmt: CoverageFormat = typer.Option(CoverageFormat.table, "--format", help="Output format."),
    relation: RelationChoice = typer.Option(
        RelationChoice.atlas, "--relation", help="Mitigation-to-technique relation: ATLAS or MISP."
    ),
    techniques: bool = typer.Option(False, "--techniques", help="Table: list every technique."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to a file, not stdout."),
) -> None:
    """Which of the twenty ATLAS mitigations a policy enables, with evidence.

    For each mitigation: implemented, enabled by the policy, and the setting
    that enables it; for each technique, how many enabled mitigations cover it.
    """
    from atlasguard.catalog.coverage import compute_coverage
    from atlasguard.catalog.export import coverage_json, misp_cluster, navigator_layer
    from atlasguard.policy import Policy, load_policy

    policy = load_policy(policy_path) if policy_path else Policy.default()
    parts = None
    if policy_path is not None:  # commands count once their runs are on the deployment's record
        from atlasguard.runtime.evidence import recorded_evidence
        from atlasguard.runtime.plan import plan

        parts = (*plan(policy), *recorded_evidence(policy))
    cov = compute_coverage(policy, relation=relation.value, parts=parts)
    doc: dict[str, Any] | None = None
    if fmt is CoverageFormat.json:
        doc = coverage_json(cov)
    elif fmt is CoverageFormat.misp:
        doc = misp_cluster(cov)
    elif fmt is CoverageFormat.navigator:
        doc = navigator_layer(cov)
    if doc is not None:
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        if output:
            output.write_text(text, encoding="utf-8")
            err_console.print(f"wrote {escape(str(output))}")
        else:
            console.out(text, end="")
        return
    if output:
        with output.open("w", encoding="utf-8") as fh:
            from rich.console import Console

            _render_table(Console(file=fh, width=120, highlight=False), cov, techniques, policy)
        err_console.print(f"wrote {escape(str(output))}")
        return
    _render_table(console, cov, techniques, policy)


def _not_counted(key: str, policy: Policy | None) -> str:
    """Why an implemented control does not count: off, or on but never run."""
    from atlasguard.runtime.evidence import MAX_AGE_DAYS, RUNS

    if policy is not None and policy.enabled(key) and key in RUNS:
        return f"on, no run on record in {MAX_AGE_DAYS} days: {RUNS[key][1]} ... --policy FILE"
    return f"off: [controls.{key}]"


def _render_table(out: Any, cov: Coverage, techniques: bool, policy: Policy | None = None) -> None:
    table = Table(
        title=f"ATLAS {cov.atlas_version} mitigations under {escape(cov.policy)}",
        title_justify="left",
    )
    table.add_column("id", no_wrap=True)
    table.add_column("mitigation")
    table.add_column("status", no_wrap=True)
    table.add_column("evidence")
    styles = {"enabled": "green", "available": "yellow", "not implemented": "dim"}
    for m in cov.mitigations:
        evidence = "\n".join(f"{e.control}: {e.setting} ({e.location})" for e in m.evidence)
        if not evidence and m.implemented:
            evidence = "\n".join(_not_counted(c, policy) for c in m.controls)
        table.add_row(
            m.mitigation.id,
            escape(m.mitigation.name),
            f"[{styles[m.status]}]{m.status}[/]",
            escape(evidence),
        )
    out.print(table)
    out.print(
        f"{cov.enabled_count} of {len(cov.mitigations)} mitigations enabled, "
        f"{cov.implemented_count} implemented; {cov.covered_techniques} of {len(cov.techniques)} "
        f"techniques covered by at least one enabled mitigation (relation {cov.relation})."
    )
    if techniques:
        tt = Table(title="Techniques", title_justify="left")
        tt.add_column("technique", no_wrap=True)
        tt.add_column("name")
        tt.add_column("enabled mitigations", justify="right")
        tt.add_column("which")
        for t in cov.techniques:
            tt.add_row(
                t.technique.id, escape(t.technique.name), str(t.count), ", ".join(t.mitigations)
            )
        out.print(tt)
    else:
        out.print(
            "[dim]--techniques lists every technique; --format json|misp|navigator for tools.[/]"
        )


def register(app: typer.Typer) -> None:
    app.command("coverage")(coverage)
