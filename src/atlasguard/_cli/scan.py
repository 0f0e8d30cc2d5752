"""``atlasguard scan``: scan model files and directories, report, fail on a threshold."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from atlasguard._cli.console import console, err_console
from atlasguard.artifacts.findings import FileReport, Severity
from atlasguard.artifacts.report import ReportFormat, renderer_for
from atlasguard.artifacts.scan import iter_files, scan_paths
from atlasguard.errors import UsageError

__all__ = ["register"]

_PROGRESS_MIN_FILES = 20


def _scan(
    paths: list[Path],
    allow: list[str],
    show_progress: bool,
    fast: bool = False,
    dask: str | None = None,
) -> list[FileReport]:
    run = scan_paths
    if dask is not None:
        from atlasguard.artifacts.distributed import scan_paths_distributed

        run = functools.partial(scan_paths_distributed, scheduler=dask)
    total = sum(1 for _ in iter_files(paths)) if show_progress else 0
    if total < _PROGRESS_MIN_FILES:
        return run(paths, allow=allow, fast=fast)
    with Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("scan", total=total)
        return run(
            paths,
            allow=allow,
            progress=lambda done, _total: progress.update(task, completed=done),
            fast=fast,
        )


def scan(
    paths: list[Path] = typer.Argument(..., help="Files, directories or archives to scan."),
    fmt: ReportFormat = typer.Option(ReportFormat.TEXT, "--format", help="Report format."),
    fail_on: str = typer.Option(
        "high",
        "--fail-on",
        metavar="critical|high|medium|low",
        help="Exit 1 when a finding is at or above this severity.",
    ),
    allow: list[str] = typer.Option(
        [],
        "--allow",
        metavar="MODULE.NAME|sha256:DIGEST",
        help="Allow a pickle import (module.Name), or the code a model folder or archive "
        "names by the digest its model-code finding reports (sha256:...). Repeatable.",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the report to a file, not stdout."
    ),
    fast: bool = typer.Option(
        False,
        "--fast",
        help="Read only what a loader executes: a PyTorch checkpoint's tensor storages are "
        "skipped (each report says what was), and no file digest is computed.",
    ),
    dask: str | None = typer.Option(
        None,
        "--dask",
        metavar="SCHEDULER",
        help="Scan on a Dask cluster (tcp://HOST:8786): files are fanned out to its workers, "
        "which must see the paths at the same place; the report is the local one. "
        "Needs the dask extra.",
    ),
) -> None:
    """Scan model files by content (pickle, PyTorch, joblib, NumPy, archives and more).

    Exit codes: 0 nothing at or above --fail-on, 1 findings, 2 usage error.
    """
    threshold = Severity.parse(fail_on)
    if threshold < Severity.LOW:
        raise UsageError("--fail-on must be critical, high, medium or low")
    for p in paths:
        if not p.exists() and not p.is_symlink():
            raise UsageError(f"no such file or directory: {p}")
    reports = _scan(paths, allow, show_progress=err_console.is_terminal, fast=fast, dask=dask)
    color = output is None and console.is_terminal
    text = renderer_for(fmt, color=color).render(reports)
    if output is not None:
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        err_console.print(f"wrote {escape(str(output))}")
    elif fmt is ReportFormat.TEXT and color:
        sys.stdout.write(text)
    else:
        console.out(text.rstrip("\n"), highlight=False)
    if any(r.fails(threshold) for r in reports):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``atlasguard scan`` to ``app``."""
    app.command("scan")(scan)
