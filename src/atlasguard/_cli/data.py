"""``atlasguard data audit``: find what a training set should not be trained on (AML.M0007)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from atlasguard._cli.console import console, err_console

__all__ = ["register"]

data_app = typer.Typer(help="Training data: audit it before training on it.", no_args_is_help=True)


@data_app.command("audit")
def audit_command(
    data: Path = typer.Argument(
        ...,
        help="A .csv, .parquet, .npy or .npz file, or a folder of images (one sub-folder "
        "per class).",
    ),
    labels: str | None = typer.Option(
        None,
        "--labels",
        help="The label column (name or 0-based index; a .npz array name). Default: a column "
        "named label, target, class or y; image folders take the sub-folder's name.",
    ),
    fmt: str = typer.Option("text", "--format", metavar="text|json|html", help="Report format."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the report to a file, not stdout."
    ),
    cleaned: Path | None = typer.Option(
        None, "--cleaned", help="Write a copy of the data without the flagged rows here."
    ),
    accepted: Path | None = typer.Option(
        None,
        "--accepted",
        help="Data already accepted (same format): audit DATA as a new batch against it and "
        "report only the new rows (active learning).",
    ),
    checks: list[str] = typer.Option(
        [],
        "--check",
        metavar="NAME",
        help="Run only this check (repeatable): schema, duplicate, label-error, poison, "
        "outlier, class-balance, content. Default: all.",
    ),
    model: Path | None = typer.Option(
        None,
        "--model",
        help="The ONNX model trained on DATA: the poison check reads its last hidden layer "
        "and asks it, instead of training its own network.",
    ),
    text: str | None = typer.Option(
        None, "--text", help="A text column (CSV, Parquet): checked by the content policy."
    ),
    terms: Path | None = typer.Option(
        None, "--terms", help="Terms not to train on, one per line (# comments)."
    ),
    topics: Path | None = typer.Option(
        None,
        "--topics",
        help="Topics not to train on, 'name: description' per line (needs atlasguard[text]).",
    ),
    topic_similarity: float = typer.Option(
        0.5, "--topic-similarity", help="Cosine similarity at which a row is about a topic."
    ),
    seed: int = typer.Option(0, "--seed", help="Random state of the models the checks train."),
    policy: Path | None = typer.Option(
        None,
        "--policy",
        help="Record the audit in this deployment's audit log (coverage counts AML.M0007 "
        "once a run is on record).",
    ),
) -> None:
    """Find what a training set should not be trained on. Exit 1 when anything is found.

    Mislabeled, poisoned, duplicated and outlying rows, class imbalance, and rows that
    cannot be read."""
    from atlasguard.data.audit import CHECKS, audit
    from atlasguard.data.load import read_table
    from atlasguard.data.report import AuditFormat, render, write_cleaned
    from atlasguard.errors import DataError, UsageError

    try:
        report_format = AuditFormat(fmt)
    except ValueError:
        raise UsageError("--format takes text, json or html") from None
    table = read_table(data, labels=labels, text_column=text)
    content = None
    if text is not None:
        from atlasguard.data.content import ContentPolicy

        content = ContentPolicy(
            terms=_lines(terms) if terms is not None else (),
            topics=dict(_topic(line) for line in _lines(topics)) if topics is not None else None,
            topic_similarity=topic_similarity,
        )
    previous: tuple[Any, Any] | None = None
    if accepted is not None:
        old = read_table(accepted, labels=labels)
        if old.x.shape[1] != table.x.shape[1]:
            raise DataError(
                f"the accepted data has {old.x.shape[1]} features, the new batch {table.x.shape[1]}"
            )
        if table.y is not None and old.y is not None and old.classes != table.classes:
            mapping = {c: i for i, c in enumerate(table.classes)}
            extra = [c for c in old.classes if c not in mapping]
            classes = (*table.classes, *extra)
            mapping.update({c: len(table.classes) + i for i, c in enumerate(extra)})
            old_y = [mapping[old.classes[v]] if v >= 0 else -1 for v in old.y]
            previous = (old.x, old_y)
            table = type(table)(
                table.x, table.y, table.columns, table.problems, classes, table.kind, table.sources
            )
        else:
            previous = (old.x, old.y)
    predict = embed = None
    if model is not None:
        from atlasguard.models.onnx_scores import onnx_hidden, onnx_scores

        scores = onnx_scores(model)
        embed = onnx_hidden(model)
        # the model's class i is taken to be the i-th label in numeric order (as
        # scikit-learn and most trainers order them), which is the audit's label i
        predict = _label_predictor(scores)
    err_console.print(f"auditing {len(table.x)} rows of {escape(data.name)}")
    report = audit(
        table.x,
        table.y,
        problems=table.problems,
        checks=tuple(checks) or CHECKS,
        accepted=previous,
        classes=table.classes,
        predict=predict,
        embed=embed,
        texts=table.texts if text is not None else None,
        content=content,
        random_state=seed,
    )
    text = render(report, report_format)
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
        err_console.print(f"wrote the report to {escape(str(output))}")
    else:
        console.out(text, highlight=False)
    if cleaned is not None:
        kept = write_cleaned(data, table, report, cleaned)
        err_console.print(f"wrote {kept} of {len(table.x)} rows to {escape(str(cleaned))}")
    if policy is not None:
        from atlasguard._cli.deployment import local_actor
        from atlasguard._cli.runs import record_run

        kinds = sorted({f.kind for f in report.findings})
        details = {
            "data": data.name,
            "rows": str(len(table.x)),
            "findings": str(len(report.findings)),
            "kinds": ",".join(kinds),
            "cleaned": "yes" if cleaned is not None else "no",
        }
        # an audit that found something did its job: the run counts either way
        said = record_run(policy, "data.audited", local_actor(), details)
        err_console.print(escape(said))
    if report.findings:
        raise typer.Exit(1)


def _lines(path: Path) -> tuple[str, ...]:
    from atlasguard.errors import DataError

    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise DataError(f"{path.name} cannot be read as UTF-8 text") from None
    return tuple(
        s.strip() for s in raw.splitlines() if s.strip() and not s.lstrip().startswith("#")
    )


def _topic(line: str) -> tuple[str, str]:
    from atlasguard.errors import DataError

    name, sep, description = line.partition(":")
    if not sep or not name.strip() or not description.strip():
        raise DataError(f"a topic line reads 'name: description', not {line[:40]!r}")
    return name.strip(), description.strip()


def _label_predictor(scores: Any) -> Any:
    """The model's decisions as class indices."""
    import numpy as np

    def predict(x: Any) -> Any:
        return np.asarray(scores(x).argmax(axis=1), np.int64)

    return predict


def register(app: typer.Typer) -> None:
    """Add ``atlasguard data``."""
    app.add_typer(data_app, name="data")
