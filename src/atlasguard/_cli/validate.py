"""``atlasguard validate``: test a model before release for a backdoor and for unfair
decisions (AML.M0008)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import typer

from atlasguard._cli.console import console, err_console

__all__ = ["register"]


def validate_command(
    model: Path = typer.Argument(..., help="The model to validate (.onnx)."),
    data: Path = typer.Option(
        ..., "--data", help="Clean labelled data the model was not trained on (.csv, .npz...)."
    ),
    labels: str | None = typer.Option(None, "--labels", help="The label column."),
    sensitive: str | None = typer.Option(
        None,
        "--sensitive",
        help="A column naming each row's group (not a model input): test fairness across it.",
    ),
    max_parity: float = typer.Option(
        0.1, "--max-parity", help="Largest demographic parity difference that passes."
    ),
    max_odds: float = typer.Option(
        0.1, "--max-odds", help="Largest equalized odds difference that passes."
    ),
    steps: int = typer.Option(
        400, "--steps", help="Trigger search steps per label (each asks the model 20 times)."
    ),
    skip_backdoor: bool = typer.Option(False, "--no-backdoor", help="Skip the trigger search."),
    epsilons: list[float] = typer.Option(
        [],
        "--epsilon",
        help="Measure accuracy under FGSM and PGD-40 at this L-inf epsilon (repeatable), with "
        "gradients from finite differences through the model (black box).",
    ),
    min_robust: float | None = typer.Option(
        None,
        "--min-robust",
        help="Fail when PGD-40 accuracy at the largest --epsilon is below this.",
    ),
    robust_rows: int = typer.Option(
        200,
        "--robust-rows",
        min=1,
        help="Rows attacked (each costs 2 x features model calls per step).",
    ),
    fmt: str = typer.Option("text", "--format", metavar="text|json", help="Report format."),
) -> None:
    """Test a model for a backdoor, for fragility and for unfair decisions. Exit 1 when
    one is found.

    A Neural Cleanse-style trigger search on every label (the anomaly index of the
    smallest trigger), accuracy; with --epsilon, accuracy under FGSM and PGD-40 (the
    model's gradient estimated through it: any ONNX model); with --sensitive, the
    demographic parity and equalized odds differences across the groups."""
    from atlasguard.data.load import read_table
    from atlasguard.errors import DataError, UsageError
    from atlasguard.models.onnx_scores import onnx_scores

    if fmt not in ("text", "json"):
        raise UsageError("--format takes text or json")
    table = read_table(data, labels=labels)
    if table.y is None:
        raise DataError("validation needs labels: name the label column with --labels")
    x, y = table.x, table.y
    groups = None
    if sensitive is not None:
        if sensitive not in table.columns:
            raise DataError(f"there is no column {sensitive!r} to take groups from")
        at = table.columns.index(sensitive)
        groups, x = x[:, at], np.delete(x, at, axis=1)
    keep = np.isfinite(x).all(axis=1) & (y >= 0)
    x, y = x[keep], y[keep]
    groups = None if groups is None else groups[keep]
    scores = onnx_scores(model)
    predicted = scores(x).argmax(axis=1)
    classes = table.classes
    named = np.array([int(float(c)) if _is_int(c) else i for i, c in enumerate(classes)])
    report: dict[str, Any] = {
        "model": model.name,
        "rows": len(x),
        "accuracy": round(float(np.mean(predicted == named[y])), 4),
    }
    failed = False
    if not skip_backdoor:
        from atlasguard.models.validation import neural_cleanse

        width = scores(x[:1]).shape[1]
        err_console.print(f"searching a trigger for each of {width} labels ({steps} steps each)")
        backdoor = neural_cleanse(scores, x, shape=(x.shape[1],), classes=width, steps=steps)
        report["backdoor"] = backdoor.to_dict()
        failed |= backdoor.flagged
    if epsilons:
        from atlasguard.models.blackbox import blackbox_robustness

        largest = max(epsilons)
        err_console.print(
            f"attacking {min(robust_rows, len(x))} rows with FGSM and PGD-40 at epsilon "
            f"{', '.join(f'{e:g}' for e in sorted(epsilons))} (finite differences)"
        )
        measured = blackbox_robustness(
            scores,
            x,
            named[y],
            epsilons=tuple(sorted(epsilons)),
            low=float(x.min()),
            high=float(x.max()),
            max_rows=robust_rows,
        )
        robust = measured[f"pgd40@{largest:g}"]
        passed = min_robust is None or robust >= min_robust
        report["robustness"] = {
            "accuracy": measured,
            "rows": min(robust_rows, len(x)),
            "method": "black box: gradients by central finite differences (h 0.01)",
            "min_robust": min_robust,
            "passed": passed,
        }
        failed |= not passed
    if groups is not None:
        from atlasguard.models.fairness import fairness

        verdict = fairness(named[y], predicted, groups, max_parity=max_parity, max_odds=max_odds)
        report["fairness"] = verdict
        failed |= not verdict["passed"]
    report["passed"] = not failed
    if fmt == "json":
        console.out(json.dumps(report, indent=2), highlight=False)
    else:
        _render(report)
    if failed:
        raise typer.Exit(1)


def _is_int(value: str) -> bool:
    try:
        return float(value).is_integer()
    except ValueError:
        return False


def _render(report: dict[str, Any]) -> None:
    console.out(f"{report['model']}: accuracy {report['accuracy']:.3f} on {report['rows']} rows")
    if "backdoor" in report:
        b = report["backdoor"]
        verdict = f"BACKDOOR on label {b['label']}" if b["flagged"] else "no backdoor found"
        console.out(
            f"  trigger search: {verdict} (anomaly index {b['anomaly_index']:.2f}, "
            f"flagged above {b['threshold']:g}; smallest mask / median {b['ratio']:.2f}, "
            f"flagged below {b['ratio_threshold']:g}; both must hold); smallest mask per label: "
            + ", ".join(f"{n:.1f}" for n in b["norms"])
        )
    if "robustness" in report:
        r = report["robustness"]
        verdict = (
            ""
            if r["min_robust"] is None
            else (f" ({'passed' if r['passed'] else 'FAILED'}: at least {r['min_robust']:g} asked)")
        )
        console.out(
            f"  robustness on {r['rows']} rows{verdict}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in r["accuracy"].items())
        )
    if "fairness" in report:
        f = report["fairness"]
        console.out(
            f"  fairness: {'passed' if f['passed'] else 'FAILED'}: demographic parity difference "
            f"{f['demographic_parity_difference']:.3f} (limit "
            f"{f['limits']['demographic_parity_difference']}), equalized odds difference "
            f"{f['equalized_odds_difference']:.3f} (limit "
            f"{f['limits']['equalized_odds_difference']})"
        )


def register(app: typer.Typer) -> None:
    """Add ``atlasguard validate``."""
    app.command("validate")(validate_command)
