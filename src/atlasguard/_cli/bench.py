"""``atlasguard bench efficacy``: how much each runtime defence stops, and what it costs.

Runs :mod:`atlasguard.models.efficacy` (the query monitor against black-box
evasion and model extraction, adaptive variants, benign clients, on
scikit-learn's digits), prints the table, and writes the rows as JSON and a PNG
plot (matplotlib, the ``plot`` extra). Progress goes to stderr.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from atlasguard._cli.console import console, err_console

__all__ = ["register"]

bench_app = typer.Typer(help="Measured efficacy of the defences.", no_args_is_help=True)


@bench_app.command("efficacy")
def efficacy(
    quick: bool = typer.Option(
        False, "--quick", help="Fewer targets and streams (under a minute)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the rows as JSON here, and the plot beside it (.png)."
    ),
) -> None:
    """Attack success without and with each defence, clean cost, detection and false-positive
    rates, queries to detection; one row per attack and defence."""
    from atlasguard.models.efficacy import plot, render_table, run

    result = run(quick=quick, progress=lambda line: err_console.print(escape(line)))
    console.out(render_table(result), highlight=False)
    if output is not None:
        output.write_text(result.to_json() + "\n", encoding="utf-8")
        png = output.with_suffix(".png")
        plot(result, png)
        err_console.print(f"wrote {escape(str(output))} and {escape(str(png))}")


@bench_app.command("training")
def training(
    quick: bool = typer.Option(
        False, "--quick", help="The main BadNets row, all-to-all, one blended trigger, flips."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the rows as JSON here."),
) -> None:
    """Poison and label-error detection on digits: precision and recall next to the
    references (spectral signatures per the paper, confident learning alone), one row per
    task and defence."""
    from atlasguard.models.training import render_table, run

    result = run(quick=quick, progress=lambda line: err_console.print(escape(line)))
    result.command = "atlasguard bench training" + (" --quick" if quick else "")
    console.out(render_table(result), highlight=False)
    if output is not None:
        output.write_text(result.to_json() + "\n", encoding="utf-8")
        err_console.print(f"wrote {escape(str(output))}")


def register(app: typer.Typer) -> None:
    """Add ``atlasguard bench``."""
    app.add_typer(bench_app, name="bench")
