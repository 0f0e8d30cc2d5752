"""``atlasguard keys create|list|revoke``: per-principal API keys and their grants."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from atlasguard._cli.console import console, err_console
from atlasguard._cli.deployment import CONFIG, local_actor, open_deployment

__all__ = ["register"]

keys_app = typer.Typer(
    help="Per-principal API keys (shown once, stored as a slow hash) and grants (deny by default).",
    no_args_is_help=True,
)


@keys_app.command("create")
def create(
    principal: str = typer.Option(..., "--principal", help="Who the key is for."),
    models: str = typer.Option(
        "",
        "--models",
        help="Comma-separated model names or patterns to grant (none: the key reaches no model).",
    ),
    role: str = typer.Option("user", "--role", help="Role granted on those models."),
    rate: str = typer.Option("", "--rate", help='Rate limit for the grant, e.g. "10/second".'),
    quota: str = typer.Option("", "--quota", help='Quota for the grant, e.g. "1000/day".'),
    admin: bool = typer.Option(False, "--admin", help="May use the admin API."),
    config: Path = CONFIG,
) -> None:
    """Create a key for PRINCIPAL; the key is printed alone on the last line, once.

    For a group (``group:NAME``) only the grants are made: groups hold no keys.
    """
    from atlasguard.identity.store import is_group

    patterns = [m for m in (p.strip() for p in models.split(",")) if m]
    with open_deployment(config, "API keys") as deployment:
        issued = deployment.admin.create_key(
            local_actor(),
            principal,
            models=patterns,
            role=role,
            rate=rate,
            quota=quota,
            admin=admin,
        )
    if issued is None or is_group(principal):
        err_console.print(
            f"granted {escape(role)} on {escape(models)} to {escape(principal)} "
            "(groups hold no keys: atlasguard groups add GROUP MEMBER)"
        )
        return
    err_console.print(
        f"created key {issued.key_id} for {escape(principal)}; "
        "it is shown only now, store it safely"
    )
    typer.echo(issued.secret)


@keys_app.command("list")
def list_keys(
    config: Path = CONFIG,
    principal: str | None = typer.Option(None, "--principal"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List keys (ids only, never secrets) with their principal, grants and state."""
    with open_deployment(config, "API keys") as deployment:
        keys = deployment.admin.list_keys(local_actor(), principal)
        grants = {k.principal: deployment.identity.grants_of(k.principal) for k in keys}
    rows: list[dict[str, Any]] = [
        {
            "key_id": k.key_id,
            "principal": k.principal,
            "active": k.active,
            "created": dt.datetime.fromtimestamp(k.created_at, dt.UTC).isoformat(
                timespec="seconds"
            ),
            "grants": [f"{g.role}:{g.models}" for g in grants[k.principal]],
        }
        for k in keys
    ]
    if as_json:
        console.out(json.dumps(rows, indent=2))
        return
    table = Table(title="API keys", title_justify="left")
    for col in ("key id", "principal", "state", "created", "grants"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["key_id"]),
            escape(str(r["principal"])),
            "active" if r["active"] else "[dim]revoked/expired[/]",
            str(r["created"]),
            escape(", ".join(r["grants"])),
        )
    console.print(table)


@keys_app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="The key id (not the key)."), config: Path = CONFIG
) -> None:
    """Revoke a key; it stops working within seconds on every worker."""
    with open_deployment(config, "API keys") as deployment:
        deployment.admin.revoke_key(local_actor(), key_id)
    console.print(f"revoked {escape(key_id)}")


@keys_app.command("restrict")
def restrict(
    principal: str = typer.Argument(..., help="Whose grants (its own, not its groups')."),
    rate: str | None = typer.Option(None, "--rate", help="e.g. 10/minute."),
    quota: str | None = typer.Option(None, "--quota", help="Daily quota, e.g. 100/day."),
    output: str | None = typer.Option(
        None, "--output", help="Output policy for it alone, e.g. label (no scores)."
    ),
    config: Path = CONFIG,
) -> None:
    """Tighten a principal's grants: rate, daily quota, or what it sees of the scores.
    Every worker applies it within seconds; the console's alert actions do the same."""
    with open_deployment(config, "API keys") as deployment:
        changed = deployment.admin.restrict(
            local_actor(), principal, rate=rate, quota=quota, output=output
        )
    console.print(f"restricted {changed} grant(s) of {escape(principal)}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
