"""``atlasguard init DIR [--demo]``: set up a deployment, optionally with the demo model."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from atlasguard._cli.console import err_console

__all__ = ["register"]


def init(
    directory: Path = typer.Argument(..., help="Directory of the new deployment."),
    demo: bool = typer.Option(
        False,
        "--demo",
        help="Also train, export, sign and register a digits classifier as model 'digits', "
        "and create an admin and a demo principal.",
    ),
) -> None:
    """Write DIR/atlasguard.toml, DIR/state/ and a signing key pair in DIR/keys/.

    Refuses (exit 2) when DIR/atlasguard.toml exists. With --demo, the two API
    keys are printed once, each alone on a line, followed by a curl example.
    """
    from atlasguard.gateway.demo import curl_example, init_project

    if demo:
        err_console.print("training the demo digits classifier...", soft_wrap=True)
    project = init_project(directory, demo=demo)
    err_console.print(f"wrote {escape(str(project.policy_path))}", soft_wrap=True)
    err_console.print(
        f"signing key pair: {escape(str(project.private_key.parent))}/", soft_wrap=True
    )
    model = project.demo
    if model is None or project.admin_key is None or project.demo_key is None:
        config = escape(str(project.policy_path))
        err_console.print(
            "next, make an admin principal (deny by default: nobody holds a grant yet): "
            f"`atlasguard keys create --config {config} --principal ops --admin`; "
            f"push as it with `atlasguard registry push NAME PATH --config {config} -p ops`, "
            "and grant others with `atlasguard registry grant PRINCIPAL 'PATTERN' "
            f"--role reader --config {config} -p ops`",
            soft_wrap=True,
        )
        return
    err_console.print(
        f"model digits: held-out accuracy {model.accuracy:.3f} as served"
        + (
            f" ({model.unrestored_accuracy:.3f} without input restoration)"
            if model.unrestored_accuracy is not None
            else ""
        )
        + "; "
        f"signed ({escape(str(model.signature))}); scan clean"
    )
    err_console.print(
        "admin key (admin API and the console at /console; shown only now, store it safely):",
        soft_wrap=True,
    )
    typer.echo(project.admin_key)
    err_console.print("demo key (role 'user' on digits; shown only now):", soft_wrap=True)
    typer.echo(project.demo_key)
    err_console.print(
        f"serve it with `atlasguard serve --config {escape(str(project.policy_path))}`, "
        f"then ask about one held-out digit (a {model.sample_label}):"
    )
    typer.echo(curl_example(project.demo_key, model.sample))


def register(app: typer.Typer) -> None:
    """Add ``init`` to the command line."""
    app.command("init")(init)
