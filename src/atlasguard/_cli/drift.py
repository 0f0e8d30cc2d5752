"""``atlasguard drift``: has the data drifted from a reference? (AML.M0008)"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from atlasguard._cli.console import console

__all__ = ["register"]


def drift_command(
    reference: Path = typer.Argument(..., help="Data the model was validated on (.csv, .npz...)."),
    current: Path = typer.Argument(..., help="Data to compare with it (e.g. recent traffic)."),
    labels: str | None = typer.Option(
        None, "--labels", help="A label column to leave out of the comparison."
    ),
    model: Path | None = typer.Option(
        None, "--model", help="An ONNX model: compare its scores too (black-box shift)."
    ),
    window: int | None = typer.Option(
        None, "--window", help="Test CURRENT in consecutive windows of this many rows."
    ),
    alpha: float = typer.Option(0.01, "--alpha", help="False alarms allowed per window tested."),
    fmt: str = typer.Option("text", "--format", metavar="text|json", help="Report format."),
) -> None:
    """Test whether data has drifted from a reference. Exit 1 when a window has.

    Per-feature KS / chi-squared tests (Bonferroni), MMD, and with --model a shift in the
    model's scores."""
    from atlasguard.data.load import read_table
    from atlasguard.errors import DataError, UsageError
    from atlasguard.models.onnx_scores import onnx_scores
    from atlasguard.runtime.drift import DriftDetector

    if fmt not in ("text", "json"):
        raise UsageError("--format takes text or json")
    ref, now = read_table(reference, labels=labels), read_table(current, labels=labels)
    if ref.x.shape[1] != now.x.shape[1]:
        raise DataError(f"the reference has {ref.x.shape[1]} features, the data {now.x.shape[1]}")
    x_ref, x_now = ref.x[ref.usable], now.x[now.usable]
    scores = onnx_scores(model) if model is not None else None
    detector = DriftDetector(alpha=alpha, names=ref.columns)
    detector.fit(x_ref, None if scores is None else scores(x_ref))
    size = window or len(x_now)
    results = []
    for start in range(0, len(x_now) - size + 1, size):
        part = x_now[start : start + size]
        result = detector.test(part, None if scores is None else scores(part))
        results.append((start, result))
    if not results:
        raise DataError(f"the data has {len(x_now)} rows, fewer than one window of {size}")
    if fmt == "json":
        body = [
            {
                "rows": [start, start + r.rows],
                "drifted": r.drifted,
                "p_values": r.p_values,
                "features": [f.__dict__ for f in r.features],
            }
            for start, r in results
        ]
        console.out(json.dumps({"alpha": alpha, "windows": body}, indent=2), highlight=False)
    else:
        for start, r in results:
            verdict = "DRIFT" if r.drifted else "ok"
            shown = "  ".join(f"{k} p={v:.3g}" for k, v in r.p_values.items())
            console.out(f"rows {start}-{start + r.rows - 1}: {verdict:5}  {shown}", highlight=False)
            for f in r.features[:3] if r.drifted else ():
                console.out(f"    {f.feature}: {f.test} p={f.p_value:.3g} PSI {f.psi:.2f}")
    if any(r.drifted for _, r in results):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``atlasguard drift``."""
    app.command("drift")(drift_command)
