"""The training-data audit (AML.M0007): what in a data set should not be trained on.

:func:`audit` runs every check on arrays and returns an :class:`AuditReport`
whose ``findings`` each name a row (0-based, as read), a ``kind``, a ``score``
(higher = surer) and a short ``reason``:

* ``schema``: a row that could not be read as numbers with a label;
* ``duplicate``: the same row (``exact``) or one closer to an earlier row than a
  tenth of the typical nearest-neighbour distance (``near``), earlier row named;
* ``label-error``: confident learning (cleanlab) on a logistic regression's
  out-of-fold probabilities;
* ``poison``: rows carrying a backdoor trigger (:mod:`atlasguard.data.poison`);
* ``outlier``: rows far from every other row (the distance to the 5 nearest,
  a robust z-score over the data set above ``outlier_z``);
* ``class-balance``: a class under a fifth of the median class's size (no row);
* ``content``: a text column that breaks the content policy
  (:mod:`atlasguard.data.content`: personal data, listed terms and topics).

No check needs to be told how much is wrong. Incremental mode (``accepted=``)
audits a new batch against rows already accepted: the models see both, only
the new rows are reported, and a new row that repeats an accepted one is a
duplicate.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(200, 4)); y = (x[:, 0] > 0).astype(int)
>>> x[7] = x[3]; x[9] = 40.0
>>> report = audit(x, y, checks=("duplicate", "outlier"))
>>> sorted((f.row, f.kind) for f in report.findings)
[(7, 'duplicate'), (9, 'outlier')]
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from atlasguard.data.content import ContentPolicy
from atlasguard.data.load import Problem

__all__ = ["CHECKS", "AuditReport", "Finding", "audit"]

FloatArray = npt.NDArray[np.float64]
CHECKS = ("schema", "duplicate", "label-error", "poison", "outlier", "class-balance", "content")
# ATLAS technique each kind of finding answers
TECHNIQUES = {
    "poison": "AML.T0020",  # Poison Training Data
    "label-error": "AML.T0020",
    "duplicate": "AML.T0020",
    "outlier": "AML.T0020",
    "class-balance": "AML.T0020",
    "schema": "AML.T0020",
    "content": "AML.T0020",
}


@dataclass(frozen=True)
class Finding:
    """One thing wrong with the data. ``row`` is None for a finding about the whole set."""

    row: int | None
    kind: str
    score: float
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditReport:
    """Every finding, and a summary: rows read, rows flagged, counts by kind, timings."""

    findings: tuple[Finding, ...]
    rows: int
    checks: tuple[str, ...]
    seconds: dict[str, float]
    classes: tuple[str, ...] = ()

    @property
    def flagged(self) -> npt.NDArray[np.intp]:
        """Rows with at least one finding (the rows a cleaned copy leaves out)."""
        rows = {f.row for f in self.findings if f.row is not None}
        return np.array(sorted(rows), np.intp)

    def summary(self) -> dict[str, Any]:
        by_kind: dict[str, int] = {}
        for f in self.findings:
            by_kind[f.kind] = by_kind.get(f.kind, 0) + 1
        return {
            "rows": self.rows,
            "rows_flagged": len(self.flagged),
            "findings": by_kind,
            "checks": list(self.checks),
            "mitigation": "AML.M0007",
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "findings": [
                {**asdict(f), "score": round(f.score, 4), "technique": TECHNIQUES[f.kind]}
                for f in self.findings
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def audit(
    x: npt.ArrayLike,
    y: npt.ArrayLike | None = None,
    *,
    problems: Iterable[Problem] = (),
    checks: Sequence[str] = CHECKS,
    accepted: tuple[npt.ArrayLike, npt.ArrayLike | None] | None = None,
    classes: Sequence[str] = (),
    predict: Callable[[FloatArray], npt.NDArray[np.int64]] | None = None,
    embed: Callable[[FloatArray], FloatArray] | None = None,
    outlier_z: float = 6.0,
    texts: Sequence[str] | None = None,
    content: ContentPolicy | None = None,
    random_state: int = 0,
) -> AuditReport:
    """Audit ``x`` (rows x features) with labels ``y`` (or none: the label checks are
    skipped). ``problems`` are the rows the reader could not read; ``accepted`` is
    (x, y) already audited, for incremental mode; ``predict`` and ``embed`` (the
    last hidden layer) come from the user's model, if given."""
    unknown = set(checks) - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; the checks are {', '.join(CHECKS)}")
    rows_x = np.asarray(x, np.float64)
    if rows_x.ndim != 2:
        raise ValueError("x must be 2-D: rows x features")
    labels = None if y is None else np.asarray(y, np.int64)
    new = len(rows_x)
    if accepted is not None:
        old_x = np.asarray(accepted[0], np.float64).reshape(-1, rows_x.shape[1])
        old_y = None if accepted[1] is None or labels is None else np.asarray(accepted[1], np.int64)
        rows_x = np.vstack([old_x, rows_x])
        labels = None if old_y is None or labels is None else np.concatenate([old_y, labels])
    offset = len(rows_x) - new
    ok = np.isfinite(rows_x).all(axis=1)
    if labels is not None:
        ok &= labels >= 0
    findings: list[Finding] = []
    seconds: dict[str, float] = {}

    def run(name: str, check: Callable[[], Iterable[Finding]]) -> None:
        if name not in checks:
            return
        start = time.perf_counter()
        for f in check():
            if f.row is None:
                findings.append(f)
            elif f.row >= offset:
                findings.append(Finding(f.row - offset, f.kind, f.score, f.reason, f.detail))
        seconds[name] = time.perf_counter() - start

    if rows_x.shape[1] == 0:  # text only: the numeric checks have nothing to read
        checks = tuple(
            c for c in checks if c in ("schema", "class-balance", "content", "duplicate")
        )
    usable = np.flatnonzero(ok)
    schema = [Finding(p.row + offset, "schema", 1.0, p.reason) for p in problems]
    run("schema", lambda: schema)
    if rows_x.shape[1] or texts is None:
        run("duplicate", lambda: _duplicates(rows_x, labels, usable))
    else:
        run("duplicate", lambda: _text_duplicates(texts, labels, offset))
    if texts is not None and content is not None:
        policy = content
        run(
            "content",
            lambda: (
                Finding(f.row + offset, "content", f.score, f.reason)
                for f in policy.check(list(texts))
            ),
        )
    label_checks = labels is not None and len(np.unique(labels[usable])) >= 2
    label_checks = label_checks and rows_x.shape[1] > 0
    if label_checks and labels is not None:
        names = tuple(classes)
        run("label-error", lambda: _label_errors(rows_x, labels, usable, names, random_state))
        run(
            "poison",
            lambda: _poisons(rows_x, labels, usable, names, predict, embed, random_state),
        )
        run("class-balance", lambda: _balance(labels, usable, names))
    run("outlier", lambda: _outliers(rows_x, usable, outlier_z))
    findings.sort(key=lambda f: (f.row is not None, f.row or 0, f.kind))
    return AuditReport(
        tuple(findings), new, tuple(c for c in CHECKS if c in checks), seconds, tuple(classes)
    )


def _name(label: int, classes: Sequence[str]) -> str:
    return classes[label] if 0 <= label < len(classes) else str(label)


def _duplicates(
    x: FloatArray, y: npt.NDArray[np.int64] | None, usable: npt.NDArray[np.intp]
) -> Iterable[Finding]:
    first: dict[bytes, int] = {}
    exact = np.zeros(len(x), bool)
    for r in usable:
        key = hashlib.blake2b(np.ascontiguousarray(x[r]).tobytes(), digest_size=16).digest()
        if key in first:
            exact[r] = True
            yield _duplicate(int(r), first[key], y, "exact", 1.0)
        else:
            first[key] = int(r)
    kept = usable[~exact[usable]]
    if len(kept) < 3:
        return
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=2).fit(x[kept])
    distance, index = nn.kneighbors(x[kept])
    typical = float(np.median(distance[:, 1]))
    if typical <= 0:
        return
    for i, r in enumerate(kept):
        other = int(kept[index[i, 1]])
        if distance[i, 1] < 0.1 * typical and other < r:
            yield _duplicate(int(r), other, y, "near", 1.0 - float(distance[i, 1]) / typical)


def _text_duplicates(
    texts: Sequence[str], y: npt.NDArray[np.int64] | None, offset: int
) -> Iterable[Finding]:
    """The same text (case and white space aside) as an earlier row; ``texts`` are the new
    rows only (the accepted ones have no text here)."""
    first: dict[str, int] = {}
    for r, text in enumerate(texts):
        key = " ".join(text.lower().split())
        if not key:
            continue
        if key in first:
            yield _duplicate(r + offset, first[key] + offset, y, "exact", 1.0)
        else:
            first[key] = r


def _duplicate(
    row: int, of: int, y: npt.NDArray[np.int64] | None, how: str, score: float
) -> Finding:
    conflict = bool(y is not None and y[row] != y[of])
    reason = f"{how} duplicate of row {of}" + (" with a different label" if conflict else "")
    return Finding(row, "duplicate", score, reason, {"of": of, "how": how, "conflict": conflict})


def _label_errors(
    x: FloatArray,
    y: npt.NDArray[np.int64],
    usable: npt.NDArray[np.intp],
    classes: Sequence[str],
    random_state: int,
) -> Iterable[Finding]:
    from atlasguard.data.labels import label_issues

    for r, given, likely, confidence in label_issues(x[usable], y[usable], random_state):
        row = int(usable[r])
        yield Finding(
            row,
            "label-error",
            1.0 - confidence,
            f"labelled {_name(given, classes)}, looks like {_name(likely, classes)}",
            {"given": _name(given, classes), "likely": _name(likely, classes)},
        )


def _poisons(
    x: FloatArray,
    y: npt.NDArray[np.int64],
    usable: npt.NDArray[np.intp],
    classes: Sequence[str],
    predict: Callable[[FloatArray], npt.NDArray[np.int64]] | None,
    embed: Callable[[FloatArray], FloatArray] | None,
    random_state: int,
) -> Iterable[Finding]:
    from atlasguard.data.poison import PoisonCluster, PoisonDetector

    detector = PoisonDetector(predict=predict, embed=embed, random_state=random_state)
    detector.fit(x[usable], y[usable])

    def preferred(c: PoisonCluster) -> tuple[bool, float]:  # a one-target group first
        return c.shared == 0.0, c.success if c.shared == 0.0 else c.shared

    chosen: dict[int, PoisonCluster] = {}  # per class, the group its findings name
    for c in detector.clusters_:
        if c.poisoned and (c.label not in chosen or preferred(c) > preferred(chosen[c.label])):
            chosen[c.label] = c
    for r in detector.rows_:
        cluster = chosen[int(y[usable[r]])]
        label = _name(cluster.label, classes)
        if cluster.shared:
            reason = (
                f"carries a trigger shared by the poison of {detector.shared_classes_} classes "
                f"(all-to-all), labelled {label}"
            )
            yield Finding(int(usable[r]), "poison", cluster.shared, reason, {"target": label})
        else:
            reason = f"carries a trigger that sends {cluster.success:.0%} of other rows to {label}"
            yield Finding(int(usable[r]), "poison", cluster.success, reason, {"target": label})


def _balance(
    y: npt.NDArray[np.int64], usable: npt.NDArray[np.intp], classes: Sequence[str]
) -> Iterable[Finding]:
    counts = np.bincount(y[usable])
    present = counts[counts > 0]
    median = float(np.median(present))
    for label, count in enumerate(counts):
        if 0 < count < median / 5:
            yield Finding(
                None,
                "class-balance",
                1.0 - count / median,
                f"class {_name(label, classes)} has {count} rows; "
                f"the median class has {median:.0f}",
                {"class": _name(label, classes), "rows": int(count)},
            )


def _outliers(x: FloatArray, usable: npt.NDArray[np.intp], z_limit: float) -> Iterable[Finding]:
    if len(usable) < 10:
        return
    from sklearn.neighbors import NearestNeighbors

    k = min(5, len(usable) - 1)
    rows = x[usable]
    nn = NearestNeighbors(n_neighbors=k + 1).fit(rows)
    distance = nn.kneighbors(rows)[0][:, 1:].mean(axis=1)
    log_d = np.log(distance + 1e-12)
    centre = float(np.median(log_d))
    spread = 1.4826 * float(np.median(np.abs(log_d - centre)))
    if spread <= 0:
        return
    z = (log_d - centre) / spread
    for i in np.flatnonzero(z > z_limit):
        yield Finding(
            int(usable[i]),
            "outlier",
            float(z[i]),
            f"{distance[i] / np.exp(centre):.1f}x the typical distance to its nearest rows",
            {"z": round(float(z[i]), 2)},
        )
