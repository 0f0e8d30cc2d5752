"""``atlasguard serve``: the protected model gateway (FastAPI on Uvicorn).

With ``--workers N`` (N > 1) the workers share their metrics through
prometheus_client's multiprocess mode: ``serve`` makes a private directory
(mode 0700) for ``PROMETHEUS_MULTIPROC_DIR`` before any worker starts, so each
worker imports prometheus_client already in that mode, and removes the
directory when the server stops.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from atlasguard._cli.console import err_console
from atlasguard._cli.deployment import passphrase
from atlasguard.errors import ConfigurationError, UsageError

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["app_factory", "register"]

_CONFIG_ENV = "ATLASGUARD_CONFIG"
_METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it at import


def _build(config: Path, *, metrics_dir: Path | None = None) -> FastAPI:
    try:
        from atlasguard.gateway.app import create_app
        from atlasguard.gateway.service import Gateway
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"serving needs {exc.name}: pip install 'atlasguard[gateway,onnx]'"
        ) from None
    from atlasguard.policy import load_policy

    gateway = Gateway.from_policy(load_policy(config), passphrase=passphrase())
    for name, reason in gateway.refused.items():
        err_console.print(f"[red]not serving {escape(name)}:[/] {escape(reason)}", soft_wrap=True)
    return create_app(gateway, metrics_dir=metrics_dir)


def app_factory() -> FastAPI:
    """Uvicorn's factory for ``--workers N``: each worker builds its own gateway."""
    metrics = os.environ.get(_METRICS_ENV)
    return _build(Path(os.environ[_CONFIG_ENV]), metrics_dir=Path(metrics) if metrics else None)


def serve(
    config: Path = typer.Option(Path("atlasguard.toml"), "--config", "-c", help="Policy file."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error."),
    access_log: bool = typer.Option(
        False,
        "--access-log/--no-access-log",
        help="Also log one line per HTTP request (the audit log already records every call).",
    ),
) -> None:
    """Serve the policy's models over the Open Inference Protocol, behind every guard."""
    import uvicorn

    from atlasguard.gateway.logs import logging_config
    from atlasguard.policy import load_policy

    policy = load_policy(config)
    if workers > 1 and policy.enabled("quotas") and not policy.deployment.redis_url:
        raise UsageError(
            "--workers > 1 with quotas needs [deployment] redis_url: in-process counts "
            "would let each worker admit the whole quota"
        )
    log_config = logging_config(log_level)
    err_console.print(
        f"atlasguard gateway on http://{host}:{port} (models: {', '.join(policy.models) or 'none'})"
    )
    serving = policy.settings("serving")
    if getattr(serving, "console", False):
        err_console.print(
            f"console on http://{host}:{port}/console (sign in with an admin key; "
            "`atlasguard keys create --principal NAME --admin` makes one)"
        )
    from atlasguard.gateway.protocol import GuardedHttpToolsProtocol

    if workers == 1:
        uvicorn.run(
            _build(config),
            host=host,
            port=port,
            log_config=log_config,
            access_log=access_log,
            timeout_graceful_shutdown=10,
            http=GuardedHttpToolsProtocol,
        )
        return
    os.environ[_CONFIG_ENV] = str(config.resolve())
    # Set before the workers start (they are spawned, so they import prometheus_client
    # afresh, with it); mkdtemp makes the directory 0700, readable by this user only.
    metrics_dir = tempfile.mkdtemp(prefix="atlasguard-metrics-")
    previous = os.environ.get(_METRICS_ENV)
    os.environ[_METRICS_ENV] = metrics_dir
    try:
        uvicorn.run(
            "atlasguard._cli.serve:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=log_config,
            access_log=access_log,
            timeout_graceful_shutdown=10,
            http=GuardedHttpToolsProtocol,
        )
    finally:
        if previous is None:
            os.environ.pop(_METRICS_ENV, None)
        else:
            os.environ[_METRICS_ENV] = previous
        shutil.rmtree(metrics_dir, ignore_errors=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
