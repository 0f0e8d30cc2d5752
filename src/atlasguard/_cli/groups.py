"""``atlasguard groups add|remove|list``: groups of principals that share grants.

A group is the principal ``group:<name>``: grant it a role like any principal
(``atlasguard keys create --principal group:ml --models 'digits*'`` or
``atlasguard registry grant group:ml 'digits*'``) and every member holds it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from atlasguard._cli.console import console
from atlasguard._cli.deployment import CONFIG, TableOrJson, local_actor, open_deployment

__all__ = ["register"]

groups_app = typer.Typer(
    help="Groups (principals named group:NAME): a grant to a group reaches every member.",
    no_args_is_help=True,
)


@groups_app.command("add")
def add(
    group: str = typer.Argument(..., help="The group: NAME or group:NAME (created if needed)."),
    member: str = typer.Argument(..., help="The principal joining it (not a group)."),
    config: Path = CONFIG,
) -> None:
    """Make MEMBER a member of GROUP; the group's grants reach it within seconds."""
    from atlasguard.identity.store import group_name

    name = group_name(group)
    with open_deployment(config, "groups") as deployment:
        deployment.admin.add_member(local_actor(), name, member)
    console.print(f"added {escape(member)} to {escape(name)}")


@groups_app.command("remove")
def remove(
    group: str = typer.Argument(..., help="The group: NAME or group:NAME."),
    member: str = typer.Argument(..., help="The principal leaving it."),
    config: Path = CONFIG,
) -> None:
    """End MEMBER's membership of GROUP; the group's grants stop reaching it within seconds."""
    from atlasguard.identity.store import group_name

    name = group_name(group)
    with open_deployment(config, "groups") as deployment:
        deployment.admin.remove_member(local_actor(), name, member)
    console.print(f"removed {escape(member)} from {escape(name)}")


@groups_app.command("list")
def list_groups(
    group: str | None = typer.Argument(None, help="Only this group."),
    output: TableOrJson = typer.Option(TableOrJson.table, "--format", help="table or json."),
    config: Path = CONFIG,
) -> None:
    """Groups kept in the store, with their members and grants."""
    from atlasguard.identity.store import group_name

    with open_deployment(config, "groups") as deployment:
        store = deployment.identity
        if group is not None:
            name = group_name(group)
            found = {name: store.members(name)}
        else:
            found = store.list_groups()
        rows: list[dict[str, Any]] = [
            {
                "group": name,
                "members": members,
                "grants": [f"{g.role}:{g.models}" for g in store.grants_of(name)],
            }
            for name, members in found.items()
        ]
    if output is TableOrJson.json:
        console.out(json.dumps(rows, indent=2))
        return
    table = Table(title="Groups", title_justify="left")
    for col in ("group", "members", "grants"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            escape(str(r["group"])),
            escape(", ".join(r["members"])),
            escape(", ".join(r["grants"])),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(groups_app, name="groups")
