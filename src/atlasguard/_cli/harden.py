"""``atlasguard harden``: train a hardened model on the user's data, as ONNX (AML.M0003)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from atlasguard._cli.console import console, err_console

__all__ = ["register"]


def harden_command(
    data: Path = typer.Argument(
        ..., help="Training data: .csv, .parquet, .npy/.npz, or a folder of images."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the ONNX model."),
    labels: str | None = typer.Option(None, "--labels", help="The label column (as data audit)."),
    method: str = typer.Option(
        "pgd", "--method", metavar="pgd|trades|distillation|standard", help="How to harden."
    ),
    epsilon: float = typer.Option(
        0.2, "--epsilon", help="L-infinity budget, in the data's units, to be robust at."
    ),
    epochs: int = typer.Option(40, "--epochs", help="Most epochs to train."),
    patience: int | None = typer.Option(
        None, "--patience", help="Stop after this many epochs without better robust accuracy."
    ),
    test: Path | None = typer.Option(
        None, "--test", help="Held-out data to report on (default: 15% of DATA, set aside)."
    ),
    report_path: Path | None = typer.Option(
        None, "--report", help="Write the robustness report (JSON) here."
    ),
    seed: int = typer.Option(0, "--seed", help="Random state."),
    policy: Path | None = typer.Option(
        None,
        "--policy",
        help="Record the run in this deployment's audit log (coverage counts AML.M0003 "
        "once a hardening run is on record).",
    ),
) -> None:
    """Train a hardened model (PGD, TRADES, distillation) and write it as ONNX.

    Early stopping on robust validation accuracy. Image data (square rows) gets a small
    CNN, other data an MLP, each behind a fixed layer that standardizes its input (so
    columns in different units train alike; epsilon stays in the data's units). The
    ONNX model takes flat rows and returns probabilities; the report gives clean, FGSM
    and PGD-40 accuracy on held-out data."""
    from atlasguard.data.load import read_table
    from atlasguard.errors import DataError, UsageError
    from atlasguard.models import hardening

    if method not in ("pgd", "trades", "distillation", "standard"):
        raise UsageError("--method takes pgd, trades, distillation or standard")
    if epochs < 1 or (patience is not None and patience < 1):
        raise UsageError("--epochs and --patience take a whole number of at least 1")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError("hardening needs PyTorch: pip install 'atlasguard[torch]'") from None
    table = read_table(data, labels=labels)
    if table.y is None:
        raise DataError("hardening needs labels: name the label column with --labels")
    keep = table.usable
    x, y = table.x[keep], table.y[keep]
    low, high = float(x.min()), float(x.max())
    split = _split(x, y, test is None, seed)
    if test is not None:
        held = read_table(test, labels=labels)
        if held.y is None or held.x.shape[1] != x.shape[1]:
            raise DataError("the test data needs the same features and a label column")
        split = (*split[:4], held.x[held.usable], held.y[held.usable])
    x_train, y_train, x_val, y_val, x_test, y_test = split
    side = math.isqrt(x.shape[1])
    classes = len(table.classes)
    if side * side == x.shape[1] and side >= 4:
        shape: tuple[int, ...] = (1, side, side)
        net = hardening.standardized(hardening.small_cnn(side, classes), x_train, per_feature=False)
    else:
        shape = (x.shape[1],)
        net = hardening.standardized(
            hardening.small_mlp(x.shape[1], classes), x_train, per_feature=True
        )
    settings = hardening.HardeningSettings(
        method=method,  # type: ignore[arg-type]
        epsilon=epsilon,
        epochs=epochs,
        patience=patience,
        low=low,
        high=high,
        random_state=seed,
    )
    err_console.print(f"training ({method}, epsilon {epsilon:g}) on {len(x_train)} rows")
    net, report = hardening.harden(
        net, x_train, y_train, x_val, y_val, settings=settings, shape=shape
    )
    report.robustness = hardening.robustness(
        net, x_test, y_test, shape=shape, epsilons=(epsilon / 2, epsilon), low=low, high=high
    )
    hardening.export_onnx(net, output, shape)
    body = report.to_dict() | {"classes": list(table.classes), "test_rows": len(x_test)}
    if report_path is not None:
        report_path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {escape(str(output))}: {method}, best epoch {report.best_epoch}")
    for name, value in report.robustness.items():
        console.print(f"  {name:<12} {value:.3f}")
    if policy is not None:
        from atlasguard._cli.deployment import local_actor
        from atlasguard._cli.runs import record_run

        details = {"model": output.name, "method": method, "epsilon": f"{epsilon:g}"}
        details |= {name: f"{value:.3f}" for name, value in report.robustness.items()}
        # "standard" training hardens nothing: on record, but not as a hardening run
        said = record_run(
            policy,
            "model.hardened",
            local_actor(),
            details,
            decision="deny" if method == "standard" else "allow",
            reason="not-hardened",
        )
        err_console.print(escape(said))


def _split(x: Any, y: Any, with_test: bool, seed: int) -> tuple[Any, Any, Any, Any, Any, Any]:
    from sklearn.model_selection import train_test_split

    if with_test:
        x_rest, x_test, y_rest, y_test = train_test_split(
            x, y, test_size=0.15, random_state=seed, stratify=y
        )
    else:
        x_rest, y_rest, x_test, y_test = x, y, None, None
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.18, random_state=seed + 1, stratify=y_rest
    )
    return x_train, y_train, x_val, y_val, x_test, y_test


def register(app: typer.Typer) -> None:
    """Add ``atlasguard harden``."""
    app.command("harden")(harden_command)
