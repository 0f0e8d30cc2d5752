"""``atlasguard release-check``: what a release must not carry (AML.M0000, M0001, M0017)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from atlasguard._cli.console import console, err_console

__all__ = ["register"]


def release_check_command(
    path: Path = typer.Argument(
        ...,
        help="A directory or git repository, a wheel or sdist, a zip/tar archive, an npm "
        "package, an APK or IPA, a .deb or .rpm, an Electron app.asar.",
    ),
    policy: Path | None = typer.Option(
        None, "--policy", help="Policy file whose \\[controls.release] lists terms and limits."
    ),
    fmt: str = typer.Option("text", "--format", metavar="text|json|sarif", help="Report format."),
    history: bool = typer.Option(
        False, "--history", help="Also every commit reachable from HEAD (PATH is a git repository)."
    ),
    allow: Path | None = typer.Option(
        None,
        "--allow",
        help="Allow-list of accepted findings (default: the policy's `allow`, or "
        ".atlasguard-release-allow.toml in PATH).",
    ),
    terms: list[str] = typer.Option(
        [], "--term", help="A term not for release (repeatable; added to the policy's)."
    ),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write the report here."),
) -> None:
    """Check a release for what ATLAS says to keep back: model weights, data sets, notebook
    outputs, ML configs, internal hosts and storage URIs, image metadata, listed terms and
    credentials. Exit 1 when a finding is not accepted in the allow-list."""
    from atlasguard.errors import UsageError
    from atlasguard.policy import load_policy
    from atlasguard.release.check import check_release
    from atlasguard.release.findings import AllowList, render_json, render_sarif, render_text
    from atlasguard.release.settings import ReleaseSettings

    renderers = {"text": render_text, "json": render_json, "sarif": render_sarif}
    if fmt not in renderers:
        raise UsageError("--format takes text, json or sarif")
    settings = ReleaseSettings()
    base = path if path.is_dir() else Path.cwd()
    if policy is not None:
        loaded = load_policy(policy)
        found = loaded.settings("release")
        assert isinstance(found, ReleaseSettings)
        settings = found
        base = loaded.base_dir
    if terms:
        settings = settings.model_copy(update={"terms": (*settings.terms, *terms)})
    allow_file = allow if allow is not None else base / settings.allow
    if allow is not None and not allow.is_file():
        raise UsageError(f"{allow.name}: no such allow-list file")
    report = check_release(path, settings, history=history, allow=AllowList.load(allow_file))
    text = renderers[fmt](report)
    if output is not None:
        output.write_text(text + "\n")
        console.out(
            f"{output.name}: {len(report.open)} open finding(s), "
            f"{len(report.findings) - len(report.open)} accepted",
            highlight=False,
        )
    else:
        console.out(text, highlight=False)
    if policy is not None:  # the gate's run goes on the deployment's record (coverage)
        from atlasguard._cli.deployment import local_actor
        from atlasguard._cli.runs import record_run

        details = {
            "path": path.resolve().name,
            "open": str(len(report.open)),
            "accepted": str(len(report.findings) - len(report.open)),
            "history": str(history).lower(),
        }
        said = record_run(
            policy,
            "release.checked",
            local_actor(),
            details,
            decision="allow" if report.passed else "deny",
        )
        err_console.print(escape(said))
    if not report.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``atlasguard release-check``."""
    app.command("release-check")(release_check_command)
