"""``atlasguard keys create|list|revoke``: per-principal API keys and their grants."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from atlasguard._cli.console import console, err_console
from atlasguard.errors import ConfigurationError, UsageError

if TYPE_CHECKING:
    from atlasguard.identity.store import IdentityStore

__all__ = ["register"]

keys_app = typer.Typer(
    help="Per-principal API keys (shown once, stored as a slow hash) and grants (deny by default).",
    no_args_is_help=True,
)

_CONFIG = typer.Option(Path("atlasguard.toml"), "--config", "-c", help="Policy file.")


def identity_store(config: Path, what: str = "API keys") -> IdentityStore:
    """The deployment's identity store (``what`` names the feature if an extra is missing)."""
    try:
        from atlasguard.identity.store import open_identity_store
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"{what} need {exc.name}: pip install 'atlasguard[gateway]'"
        ) from None
    from atlasguard.policy import load_policy

    return open_identity_store(load_policy(config))


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
    config: Path = _CONFIG,
) -> None:
    """Create a key for PRINCIPAL; the key is printed alone on the last line, once.

    For a group (``group:NAME``) only the grants are made: groups hold no keys.
    """
    store = identity_store(config)
    from atlasguard.identity.store import group_name, is_group

    if is_group(principal):
        principal = group_name(principal)
        if admin:
            raise UsageError(f"{principal} is a group: groups are never admins")
        if not models.strip():
            raise UsageError(f"{principal} is a group: give --models to grant it; it holds no key")
    for pattern in filter(None, (m.strip() for m in models.split(","))):
        store.grant(principal, pattern, role, rate=rate, quota=quota)
    if is_group(principal):
        err_console.print(
            f"granted {escape(role)} on {escape(models)} to {escape(principal)} "
            "(groups hold no keys: atlasguard groups add GROUP MEMBER)"
        )
        return
    issued = store.create_key(principal, admin=admin)
    err_console.print(
        f"created key {issued.key_id} for {escape(principal)}; "
        "it is shown only now, store it safely"
    )
    typer.echo(issued.secret)


@keys_app.command("list")
def list_keys(
    config: Path = _CONFIG,
    principal: str | None = typer.Option(None, "--principal"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List keys (ids only, never secrets) with their principal, grants and state."""
    store = identity_store(config)
    keys = store.list_keys(principal)
    rows: list[dict[str, Any]] = [
        {
            "key_id": k.key_id,
            "principal": k.principal,
            "active": k.active,
            "created": dt.datetime.fromtimestamp(k.created_at, dt.UTC).isoformat(
                timespec="seconds"
            ),
            "grants": [f"{g.role}:{g.models}" for g in store.grants_of(k.principal)],
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
    key_id: str = typer.Argument(..., help="The key id (not the key)."), config: Path = _CONFIG
) -> None:
    """Revoke a key; it stops working within seconds on every worker."""
    identity_store(config).revoke_key(key_id)
    console.print(f"revoked {escape(key_id)}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
