"""Opening the deployment a command acts on (``--config``), once per command."""

from __future__ import annotations

import enum
import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from atlasguard.errors import ConfigurationError

if TYPE_CHECKING:
    from atlasguard.runtime.deployment import Deployment

__all__ = [
    "CONFIG",
    "PASSPHRASE_ENV",
    "TableOrJson",
    "local_actor",
    "open_deployment",
    "passphrase",
]

CONFIG = typer.Option(Path("atlasguard.toml"), "--config", "-c", help="Policy file.")
"""The ``--config`` option of every command that opens a deployment."""


class TableOrJson(enum.StrEnum):
    """``--format`` of a listing: a table for people, JSON for programs."""

    table = "table"
    json = "json"


PASSPHRASE_ENV = "ATLASGUARD_KEY_PASSPHRASE"  # noqa: S105 - a variable name, not a secret


def passphrase() -> bytes | None:
    """The signing key's passphrase from ``ATLASGUARD_KEY_PASSPHRASE``, if set."""
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def local_actor() -> str:
    """Who runs the command line, as the audit log names them: ``local:<OS user>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = "operator"
    return f"local:{user}"


@contextmanager
def open_deployment(config: Path, what: str = "this command") -> Iterator[Deployment]:
    """The deployment ``config`` describes, closed (its audit records written) on exit."""
    try:
        from atlasguard.runtime.deployment import Deployment
    except ModuleNotFoundError as exc:  # SQLAlchemy/Alembic come with the gateway extra
        raise ConfigurationError(
            f"{what} needs {exc.name}: pip install 'atlasguard[gateway]'"
        ) from None
    from atlasguard.policy import load_policy

    deployment = Deployment.open(load_policy(config), passphrase=passphrase())
    try:
        yield deployment
    finally:
        deployment.close()
