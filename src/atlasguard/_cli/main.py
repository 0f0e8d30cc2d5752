"""Entry point of the ``atlasguard`` command.

Exit codes are decided here and nowhere else: 0 clean, 1 findings or a failed
check, 2 usage or configuration error. Library errors carry their code
(:attr:`atlasguard.errors.AtlasguardError.exit_code`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import typer
from rich.markup import escape

from atlasguard import __version__
from atlasguard._cli.console import err_console
from atlasguard.errors import AtlasguardError

__all__ = ["app", "main"]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2

# Each module here exposes ``register(app)``, which adds its commands.
_COMMAND_MODULES: tuple[str, ...] = (
    "atlasguard._cli.catalog",
    "atlasguard._cli.policy",
    "atlasguard._cli.coverage",
    "atlasguard._cli.audit",
    "atlasguard._cli.keys",
    "atlasguard._cli.scan",
    "atlasguard._cli.integrity",
    "atlasguard._cli.serve",
    "atlasguard._cli.init",
    "atlasguard._cli.registry",
    "atlasguard._cli.groups",
    "atlasguard._cli.monitor",
    "atlasguard._cli.bench",
    "atlasguard._cli.data",
    "atlasguard._cli.harden",
    "atlasguard._cli.drift",
    "atlasguard._cli.validate",
    "atlasguard._cli.release",
    "atlasguard._cli.labs",
)
# The module behind each top-level command: a command imports only its own module
# (`atlasguard scan` starts without the server, the database or the registry).
# tests/_cli/test_foundation_cli.py checks this table against what the modules add.
_COMMANDS: dict[str, str] = {
    "catalog": "atlasguard._cli.catalog",
    "policy": "atlasguard._cli.policy",
    "coverage": "atlasguard._cli.coverage",
    "audit": "atlasguard._cli.audit",
    "keys": "atlasguard._cli.keys",
    "scan": "atlasguard._cli.scan",
    **dict.fromkeys(
        ("hash", "keygen", "sign", "verify", "encrypt", "decrypt", "rekey"),
        "atlasguard._cli.integrity",
    ),
    "serve": "atlasguard._cli.serve",
    "init": "atlasguard._cli.init",
    "registry": "atlasguard._cli.registry",
    "groups": "atlasguard._cli.groups",
    "monitor": "atlasguard._cli.monitor",
    "bench": "atlasguard._cli.bench",
    "data": "atlasguard._cli.data",
    "harden": "atlasguard._cli.harden",
    "drift": "atlasguard._cli.drift",
    "validate": "atlasguard._cli.validate",
    "release-check": "atlasguard._cli.release",
    "labs": "atlasguard._cli.labs",
}

app = typer.Typer(
    name="atlasguard",
    help="The MITRE ATLAS mitigations as working, tested, measured software.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"atlasguard {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """The MITRE ATLAS mitigations as working, tested, measured software.

    Exit codes: 0 clean, 1 findings or a failed check, 2 usage or configuration error.
    """


def load_commands(command: str | None = None) -> None:
    """Add ``command``'s module to the app, or every module (``None``); each once."""
    present = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    for module in _COMMAND_MODULES:
        if command is not None and _COMMANDS.get(command) != module:
            continue
        names = {name for name, owner in _COMMANDS.items() if owner == module}
        if not names <= present:
            importlib.import_module(module).register(app)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` and return the exit code.

    Typer reports usage errors itself (exit 2); atlasguard's own errors are
    translated here, by their ``exit_code``, without a traceback.
    """
    args = list(argv) if argv is not None else sys.argv[1:]
    first = next((a for a in args if not a.startswith("-")), None)
    load_commands(first if first in _COMMANDS else None)  # help and typos see every command
    try:
        app(args=args, prog_name="atlasguard")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return EXIT_OK
        return code if isinstance(code, int) else EXIT_USAGE
    except AtlasguardError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return EXIT_OK


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
