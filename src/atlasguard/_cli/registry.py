"""``atlasguard registry push|pull|list|show|grant|revoke|promote``: the access-controlled registry.

The command line acts as the local operator: it opens the deployment's
database and store directly (it has file access to them anyway), and acts as
``--principal`` (the OS user by default). Every action is still decided by the
principal's grants and recorded in the audit log.
"""

from __future__ import annotations

import dataclasses
import enum
import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from atlasguard._cli.console import console, err_console
from atlasguard._cli.deployment import CONFIG, open_deployment
from atlasguard.errors import UsageError

if TYPE_CHECKING:
    pass

__all__ = ["register"]

registry_app = typer.Typer(
    help="Registry of models and data sets: deny by default, every push scanned, "
    "every pull verified, every read and write audited. The CLI acts as the local "
    "operator (--principal, default: the OS user) with that principal's grants.",
    no_args_is_help=True,
)


def _default_principal() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "operator"


_PRINCIPAL = typer.Option(
    None,
    "--principal",
    "-p",
    help="Act as this principal (default: the OS user). The CLI has file access to the "
    "deployment, so it is trusted to say who runs it; grants still decide.",
)


class Format(enum.StrEnum):
    text = "text"
    json = "json"


def _call(config: Path, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call one method of the deployment's registry, then close the deployment.

    A refusal for want of a grant says how to get one.
    """
    from atlasguard.registry.access import AccessDeniedError

    with open_deployment(config, "the registry") as deployment:
        try:
            return getattr(deployment.registry, method)(*args, **kwargs)
        except AccessDeniedError as exc:
            if "no-grant" not in str(exc):
                raise
            raise AccessDeniedError(f"{exc}\n{GRANT_HINT.format(config=config)}") from None


GRANT_HINT = (
    "next: an admin, or a manager of a pattern that covers the name, grants a role "
    "(reader, editor, manager): `atlasguard registry grant PRINCIPAL 'PATTERN' --role editor "
    "--config {config} -p ADMIN`. No admin yet? Make one with `atlasguard keys create "
    "--config {config} --principal ADMIN --admin` and act as it with `-p ADMIN`."
)


def _who(principal: str | None) -> str:
    return principal or _default_principal()


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _meta(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--meta {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


@registry_app.command("push")
def push(
    name: str = typer.Argument(..., help="Object name."),
    path: Path = typer.Argument(..., help="File or directory to store."),
    kind: str = typer.Option("model", "--kind", help="model or dataset."),
    description: str = typer.Option("", "--description", help="Set on the first push."),
    framework: str = typer.Option("", "--framework", help="e.g. onnx, sklearn, torch."),
    tag: list[str] = typer.Option([], "--tag", help="Tag (repeatable; first push)."),
    lineage: list[str] = typer.Option(
        [], "--lineage", help="Version this one came from, e.g. train@3 (repeatable)."
    ),
    meta: list[str] = typer.Option([], "--meta", help="KEY=VALUE (repeatable)."),
    config: Path = CONFIG,
    principal: str | None = _PRINCIPAL,
) -> None:
    """Scan, hash and store a new version; exit 1 with the findings when refused."""
    if kind not in ("model", "dataset"):
        raise UsageError(f"--kind {kind!r}: expected model or dataset")
    version = _call(
        config,
        "push",
        _who(principal),
        name,
        path,
        "model" if kind == "model" else "dataset",
        description=description,
        framework=framework,
        tags=tag,
        metadata=_meta(meta),
        lineage=lineage,
    )
    console.print(f"{escape(str(version.ref))} sha256:{version.digest}")


@registry_app.command("pull")
def pull(
    ref: str = typer.Argument(..., help="name, name@3, name@sha256:<hex> or name@alias."),
    dest: Path = typer.Argument(..., help="Where to write it (must not exist)."),
    config: Path = CONFIG,
    principal: str | None = _PRINCIPAL,
) -> None:
    """Write a version to DEST after re-verifying it against its manifest."""
    out = _call(config, "pull", _who(principal), ref, dest)
    err_console.print(f"verified and wrote {escape(str(out))}")


@registry_app.command("list")
def list_objects(
    kind: str | None = typer.Option(None, "--kind", help="Only models or only datasets."),
    fmt: Format = typer.Option(Format.text, "--format", help="text or json."),
    config: Path = CONFIG,
    principal: str | None = _PRINCIPAL,
) -> None:
    """The objects the principal may see."""
    if kind not in (None, "model", "dataset"):
        raise UsageError(f"--kind {kind!r}: expected model or dataset")
    objs = _call(
        config,
        "list",
        _who(principal),
        kind=None if kind is None else ("model" if kind == "model" else "dataset"),
    )
    if fmt is Format.json:
        console.out(json.dumps([_jsonable(o) for o in objs], indent=2))
        return
    table = Table(title="registry", title_justify="left")
    for col in ("name", "kind", "owner", "latest", "aliases"):
        table.add_column(col)
    for o in objs:
        aliases = ", ".join(f"{a}→{n}" for a, n in sorted(o.aliases.items()))
        table.add_row(escape(o.name), o.kind, escape(o.owner), str(o.latest), escape(aliases))
    console.print(table)


@registry_app.command("show")
def show(
    ref: str = typer.Argument(..., help="name, name@3, name@sha256:<hex> or name@alias."),
    fmt: Format = typer.Option(Format.text, "--format", help="text or json."),
    config: Path = CONFIG,
    principal: str | None = _PRINCIPAL,
) -> None:
    """An object and one of its versions (the latest by default)."""
    obj, version = _call(config, "show", _who(principal), ref)
    if fmt is Format.json:
        console.out(json.dumps({"object": _jsonable(obj), "version": _jsonable(version)}, indent=2))
        return
    console.print(f"[bold]{escape(str(version.ref))}[/] ({obj.kind}, owner {escape(obj.owner)})")
    console.print(f"  digest   sha256:{version.digest}")
    console.print(
        f"  size     {version.size} bytes, {'encrypted' if version.encrypted else 'plain'}"
    )
    console.print(f"  pushed   by {escape(version.created_by)}")
    if version.lineage:
        console.print(f"  lineage  {escape(', '.join(version.lineage))}")
    if obj.aliases:
        pairs = ", ".join(f"{a}→{n}" for a, n in sorted(obj.aliases.items()))
        console.print(f"  aliases  {escape(pairs)}")


@registry_app.command("grant")
def grant(
    grantee: str = typer.Argument(..., help="Principal receiving the role."),
    pattern: str = typer.Argument(..., help="Object name or fnmatch pattern ('*': all)."),
    role: str = typer.Option("reader", "--role", help="user, reader, editor, manager, admin."),
    config: Path = CONFIG,
    principal: str | None = _PRINCIPAL,
) -> None:
    """Give GRANTEE a role on PATTERN (managers and owners only)."""
    _call(config, "grant", _who(principal), grantee, pattern, role)
    console.print(f"granted {escape(role)} on {escape(pattern)} to {escape(grantee)}")


@registry_app.command("revoke")
def revoke(
    grantee: str = typer.Argument(..., help="Principal losing the role."),
    pattern: str = typer.Argument(..., help="Exactly the name or pattern granted."),
    role: str | None = typer.Option(None, "--role", help="Only this role (default: all)."),
    config: Path = CONFIG,
    principal: str | None = _PRINCIPAL,
) -> None:
    """Remove GRANTEE's grants on PATTERN."""
    removed = _call(config, "revoke", _who(principal), grantee, pattern, role)
    console.print(f"removed {removed} grant(s)")


@registry_app.command("promote")
def promote(
    ref: str = typer.Argument(..., help="The version to point at, e.g. digits@3."),
    alias: str = typer.Argument(..., help="e.g. production, staging."),
    config: Path = CONFIG,
    principal: str | None = _PRINCIPAL,
) -> None:
    """Move ALIAS to the version REF names (audited)."""
    version = _call(config, "promote", _who(principal), ref, alias)
    console.print(f"{escape(version.name)}@{escape(alias)} → {version.number}")


@registry_app.command("audit-mlflow")
def audit_mlflow(
    target: str = typer.Argument(
        ..., help="An MLflow tracking server URL, or the path of its basic_auth.ini."
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of text."),
) -> None:
    """Report the weaknesses of an MLflow server's access control; exit 1 at high or above."""
    from atlasguard.artifacts.findings import Severity
    from atlasguard.registry.mlflow_audit import audit_mlflow as run_audit

    findings = run_audit(target)
    if as_json:
        console.out(
            json.dumps(
                [
                    {
                        "rule": f.rule,
                        "severity": f.severity.label,
                        "message": f.message,
                        "where": f.location.member,
                    }
                    for f in findings
                ],
                indent=2,
            )
        )
    elif not findings:
        console.print(f"{escape(target)}: no weakness found")
    else:
        for f in findings:
            console.print(
                f"[bold]{f.severity.label:>8}[/]  {escape(f.rule)}  {escape(f.message)}",
                soft_wrap=True,
            )
    if any(f.severity >= Severity.HIGH for f in findings):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
