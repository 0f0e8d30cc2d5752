"""``atlasguard catalog list|show``: the ATLAS mitigations and what atlasguard does for each."""

from __future__ import annotations

import json
from enum import StrEnum

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from atlasguard._cli.console import console

__all__ = ["register"]


class ListFormat(StrEnum):
    table = "table"
    json = "json"


class RelationChoice(StrEnum):
    atlas = "atlas"
    misp = "misp"


catalog_app = typer.Typer(
    help="The MITRE ATLAS catalog: mitigations and the techniques they cover.", no_args_is_help=True
)


@catalog_app.command("list")
def list_mitigations(
    all_: bool = typer.Option(
        False, "--all", help="All 35 ATLAS mitigations, not only the 20 seed."
    ),
    fmt: ListFormat = typer.Option(ListFormat.table, "--format", help="Output format."),
    relation: RelationChoice = typer.Option(
        RelationChoice.atlas, "--relation", help="Which source's mitigation-to-technique relation."
    ),
) -> None:
    """List ATLAS mitigations (AML.M0000-AML.M0019 by default) in id order."""
    from atlasguard.catalog import load_catalog
    from atlasguard.catalog.export import mitigation_json

    cat = load_catalog()
    chosen = list(cat.mitigations.values()) if all_ else list(cat.seed_mitigations())
    rows = [mitigation_json(m, catalog=cat, relation=relation.value) for m in chosen]
    if fmt is ListFormat.json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"MITRE ATLAS {cat.version} mitigations", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("name")
    table.add_column("techniques", justify="right")
    table.add_column("atlasguard", no_wrap=True)
    for row in rows:
        status = ", ".join(row["controls"]) if row["implemented"] else "[dim]not yet[/]"
        table.add_row(row["id"], escape(row["name"]), str(len(row["techniques"])), status)
    console.print(table)


@catalog_app.command("show")
def show(
    mitigation_id: str = typer.Argument(..., metavar="ID", help="e.g. AML.M0011 (or M0011)."),
    relation: RelationChoice = typer.Option(RelationChoice.atlas, "--relation"),
) -> None:
    """Explain one mitigation: what it does, the techniques it mitigates, how to turn it on."""
    from atlasguard.catalog import load_catalog
    from atlasguard.catalog.capabilities import CAPABILITIES
    from atlasguard.controls import implemented_controls

    cat = load_catalog()
    m = cat.mitigation(mitigation_id)
    controls = [c for c in implemented_controls() if m.id in c.mitigates]
    capability = CAPABILITIES.get(m.id)

    head = Text()
    head.append(f"{m.id}  ", style="bold cyan")
    head.append(m.name, style="bold")
    if m.misp_name and m.misp_name != m.name:
        head.append(f"\n(MISP galaxy: {m.misp_name})", style="dim")
    head.append(f"\n{m.url}", style="dim")
    if m.misp_uuid:
        head.append(f"\nMISP UUID {m.misp_uuid}", style="dim")
    console.print(Panel(head, expand=False))
    console.print(Text(m.description), "")

    edges = cat.relation(relation.value).techniques_of(m.id)
    table = Table(
        title=f"Techniques it mitigates ({len(edges)}, {cat.relation(relation.value).source})",
        title_justify="left",
        show_lines=True,
    )
    table.add_column("technique", no_wrap=True)
    table.add_column("how it helps (ATLAS)")
    for e in edges:
        tech = cat.techniques.get(e.technique)
        name = tech.name if tech else "(not in this ATLAS version)"
        table.add_row(f"{e.technique}\n[dim]{escape(name)}[/]", escape(e.use) or "[dim]-[/]")
    console.print(table)

    console.print("\n[bold]In atlasguard[/]")
    if capability:
        console.print(f"  {escape(capability.summary)}")
    if controls:
        for c in controls:
            console.print(
                f"  [green]implemented[/] by control [bold]{c.key}[/] ({escape(c.title)})"
            )
            console.print(f"  turn it on: {escape(c.enable)}")
    else:
        planned = capability.entry_point if capability else "-"
        console.print(f"  [yellow]not implemented yet[/] (planned entry point: {escape(planned)})")


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")
