"""``atlasguard policy init|check``: write and check the deployment policy file."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from atlasguard._cli.console import console
from atlasguard.errors import UsageError

__all__ = ["register"]

policy_app = typer.Typer(
    help="Write and check the policy file (atlasguard.toml).", no_args_is_help=True
)


@policy_app.command("init")
def init(
    path: Path = typer.Argument(Path("atlasguard.toml"), help="Where to write the policy."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented default policy that turns every implemented control on."""
    from atlasguard.policy import render_default_policy

    if path.exists() and not force:
        raise UsageError(f"{path} already exists (use --force to overwrite)")
    if path.parent and not path.parent.exists():
        raise UsageError(f"directory {path.parent} does not exist")
    path.write_text(render_default_policy(), encoding="utf-8")
    console.print(f"wrote {escape(str(path))}")


@policy_app.command("check")
def check(path: Path = typer.Argument(..., help="The policy file to check.")) -> None:
    """Parse and validate a policy file; exit 2 with one clear line if it is wrong."""
    from atlasguard.policy import load_policy

    policy = load_policy(path)
    enabled = ", ".join(policy.enabled_controls()) or "none"
    console.print(f"{escape(str(path))}: ok (controls enabled: {escape(enabled)})")


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
