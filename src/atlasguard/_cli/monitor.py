"""``atlasguard monitor list|lift``: principals the query monitor suspended.

The query monitor (``[controls.monitor]``, AML.M0015) suspends a principal whose
queries to a model look like an attack in progress. The suspension is kept in
the deployment's database: every worker and replica honours it, a restart keeps
it, and it ends when ``suspend_seconds`` pass or an administrator lifts it here
(audited).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from atlasguard._cli.console import console
from atlasguard._cli.deployment import CONFIG, TableOrJson, local_actor, open_deployment

__all__ = ["register"]

monitor_app = typer.Typer(
    help="Principals the query monitor suspended: list them, lift a suspension.",
    no_args_is_help=True,
)


@monitor_app.command("list")
def list_suspensions(
    output: TableOrJson = typer.Option(TableOrJson.table, "--format", help="table or json."),
    config: Path = CONFIG,
) -> None:
    """Suspensions in force: principal, model, since, until and why."""
    with open_deployment(config, "monitor") as deployment:
        rows = deployment.suspensions.active(now=time.time())
    if output is TableOrJson.json:
        console.out(
            json.dumps(
                [
                    {
                        "principal": r.principal,
                        "model": r.model,
                        "since": r.since,
                        "until": r.until,
                        "why": r.why,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return
    table = Table(title="Suspended by the query monitor", title_justify="left")
    for col in ("principal", "model", "since (UTC)", "until (UTC)", "why"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            escape(r.principal),
            escape(r.model),
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.since)),
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.until)),
            escape(r.why),
        )
    console.print(table if rows else "no principal is suspended")


@monitor_app.command("lift")
def lift(
    principal: str = typer.Argument(..., help="The suspended principal."),
    model: str | None = typer.Option(None, "--model", help="Only on this model."),
    config: Path = CONFIG,
) -> None:
    """Lift PRINCIPAL's suspension, recorded in the audit log; it may query again within seconds."""
    with open_deployment(config, "monitor") as deployment:
        n = deployment.admin.lift_suspension(local_actor(), principal, model)
    console.print(f"lifted {n} suspension(s) of {escape(principal)}")


def register(app: typer.Typer) -> None:
    app.add_typer(monitor_app, name="monitor")
