"""``atlasguard audit verify|prove|report|checkpoint``: the tamper-evident audit log."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from atlasguard._cli.console import console, err_console
from atlasguard._cli.deployment import CONFIG, passphrase
from atlasguard.errors import ConfigurationError, UsageError

if TYPE_CHECKING:
    from atlasguard.audit.checkpoint import CheckpointVerifier
    from atlasguard.audit.log import AuditLog

__all__ = ["register"]

audit_app = typer.Typer(
    help="The tamper-evident audit log (RFC 6962 Merkle tree, signed checkpoints).",
    no_args_is_help=True,
)


def _open(config: Path, *, need_signer: bool = False) -> tuple[AuditLog, CheckpointVerifier | None]:
    try:
        from atlasguard.audit.log import open_audit_log
    except ModuleNotFoundError as exc:  # SQLAlchemy/Alembic come with the gateway extra
        raise ConfigurationError(
            f"the audit log needs {exc.name}: pip install 'atlasguard[gateway]'"
        ) from None
    from atlasguard.policy import load_policy

    return open_audit_log(load_policy(config), passphrase=passphrase(), need_signer=need_signer)


@audit_app.command("verify")
def verify(
    config: Path = CONFIG,
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="A checkpoint exported earlier and kept elsewhere."
    ),
) -> None:
    """Prove the stored log consistent with its signed checkpoints; exit 1 if not."""
    from atlasguard.audit.checkpoint import Checkpoint

    log, verifier = _open(config)
    if verifier is None:
        raise ConfigurationError("set keys.public_key or keys.signing_key to verify checkpoints")
    trusted = Checkpoint.from_json(checkpoint.read_text(encoding="utf-8")) if checkpoint else None
    report = log.verify(verifier, trusted=trusted)
    console.print(
        f"audit log ok: {report.records} records, {report.checkpoints} signed checkpoints, "
        f"head {report.root.hex()[:16]}…"
    )
    if report.unchecked_tail:
        console.print(
            f"[yellow]{report.unchecked_tail} records after the latest checkpoint "
            "are not covered by a signature yet[/] (atlasguard audit checkpoint)"
        )


@audit_app.command("checkpoint")
def checkpoint(
    config: Path = CONFIG,
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Also write the checkpoint here, to keep elsewhere."
    ),
) -> None:
    """Sign the current head of the log now."""
    log, _ = _open(config, need_signer=True)
    cp = log.checkpoint()
    if output:
        output.write_text(cp.to_json() + "\n", encoding="utf-8")
        err_console.print(f"wrote {escape(str(output))}")
    console.print(f"checkpoint: {cp.size} records, head {cp.root.hex()}")


@audit_app.command("prove")
def prove(
    record: int = typer.Argument(..., help="Index of the record."),
    config: Path = CONFIG,
) -> None:
    """Print an inclusion proof (JSON) of one record in the latest checkpoint covering it."""
    log, _ = _open(config)
    proof = log.prove(record)
    console.out(
        json.dumps(
            {
                "index": proof.index,
                "record": proof.record.to_dict(),
                "leaf_hash": proof.leaf_hash.hex(),
                "tree_size": proof.checkpoint.size,
                "root": proof.checkpoint.root.hex(),
                "inclusion_path": [h.hex() for h in proof.path],
                "checkpoint": json.loads(proof.checkpoint.to_json()),
            },
            indent=2,
        )
    )


def _parse_since(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since {text!r}: expected an ISO date or time, e.g. 2026-11-27"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@audit_app.command("report")
def report(
    config: Path = CONFIG,
    principal: str | None = typer.Option(None, "--principal", help="Only this principal."),
    since: str | None = typer.Option(None, "--since", help="ISO date or time (UTC)."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
) -> None:
    """Per-principal usage: requests, allowed, denied, by model and by reason."""
    log, _ = _open(config)
    rows = log.report(principal=principal, since=_parse_since(since))
    if as_json:
        console.out(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
        return
    table = Table(title="Usage by principal", title_justify="left")
    for col in ("principal", "requests", "allowed", "denied", "models", "denials by reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            escape(r.principal),
            str(r.requests),
            str(r.allowed),
            str(r.denied),
            escape(", ".join(f"{m}: {n}" for m, n in sorted(r.models.items()))),
            escape(", ".join(f"{m}: {n}" for m, n in sorted(r.reasons.items()))),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
