"""Robustness of a model you can only run (AML.M0008): FGSM and PGD without its gradient.

For a model given as a function from rows to probabilities — an ONNX model through
ONNX Runtime, a model behind an endpoint — the gradient of the attack's loss is
taken by central finite differences: each row is moved by ``h`` up and down along
every feature, in batches, so one gradient costs ``2 x features`` model calls per
row. That is exact enough on small inputs (digits: 64 features), and the cost
grows with the input's size, so ``max_rows`` bounds the rows attacked.

PGD is the worse of two runs per epsilon, on the cross-entropy and on the
Carlini-Wagner margin (log-probabilities: a confident softmax keeps the runner-up's
log-probability precise in float32 when the top one's is lost), each from a
random start, as :func:`atlasguard.models.hardening.robustness` does with autograd.

>>> import numpy as np
>>> def scores(x):  # label 0 above 0.5, label 1 below
...     z = np.hstack([x - 0.5, 0.5 - x]) * 10
...     e = np.exp(z - z.max(axis=1, keepdims=True))
...     return e / e.sum(axis=1, keepdims=True)
>>> x = np.array([[0.9], [0.1]]); y = np.array([0, 1])
>>> out = blackbox_robustness(scores, x, y, epsilons=(0.05, 1.0), steps=5)
>>> out["clean"], out["pgd5@0.05"], out["pgd5@1"]
(1.0, 1.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = ["blackbox_robustness"]

FloatArray = npt.NDArray[np.float64]
Scores = Callable[[FloatArray], npt.ArrayLike]


def _log_probabilities(scores: Scores, x: FloatArray) -> FloatArray:
    p = np.asarray(scores(x), np.float64)
    return np.log(np.clip(p, 1e-30, None))


def _loss(logp: FloatArray, y: npt.NDArray[np.intp], kind: str) -> FloatArray:
    """What the attacker raises: the cross-entropy, or the margin of the best wrong label."""
    rows = np.arange(len(y))
    own = logp[rows, y]
    if kind == "ce":
        return np.asarray(-own)
    others = logp.copy()
    others[rows, y] = -np.inf
    return np.asarray(others.max(axis=1) - own)


def _gradient(
    scores: Scores, x: FloatArray, y: npt.NDArray[np.intp], kind: str, h: float, batch: int
) -> FloatArray:
    n, d = x.shape
    grad = np.empty((n, d))
    step = np.eye(d) * h
    chunk = max(1, batch // (2 * d))
    for start in range(0, n, chunk):
        rows = x[start : start + chunk]
        labels = np.repeat(y[start : start + chunk], d)
        up = (rows[:, None, :] + step[None]).reshape(-1, d)
        down = (rows[:, None, :] - step[None]).reshape(-1, d)
        both = _log_probabilities(scores, np.vstack([up, down]))
        half = len(up)
        rise = _loss(both[:half], labels, kind) - _loss(both[half:], labels, kind)
        grad[start : start + chunk] = (rise / (2 * h)).reshape(len(rows), d)
    return grad


def blackbox_robustness(
    scores: Scores,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    epsilons: tuple[float, ...] = (0.1, 0.2),
    low: float = 0.0,
    high: float = 1.0,
    steps: int = 40,
    h: float = 1e-2,
    max_rows: int = 200,
    batch: int = 1 << 16,
    random_state: int = 0,
) -> dict[str, float]:
    """Accuracy on clean rows, under FGSM and under PGD-``steps`` at each epsilon (L-inf,
    inputs kept in ``[low, high]``), on at most ``max_rows`` rows (a seeded sample)."""
    rng = np.random.default_rng(random_state)
    rows = np.asarray(x, np.float64)
    labels = np.asarray(y, np.intp)
    if len(rows) > max_rows:
        pick = rng.choice(len(rows), size=max_rows, replace=False)
        rows, labels = rows[pick], labels[pick]

    def correct(z: FloatArray) -> npt.NDArray[np.bool_]:
        return np.asarray(np.asarray(scores(z)).argmax(axis=1) == labels)

    out = {"clean": round(float(correct(rows).mean()), 4)}
    for eps in epsilons:
        grad = _gradient(scores, rows, labels, "ce", h, batch)
        fgsm = np.clip(rows + eps * np.sign(grad), low, high)
        out[f"fgsm@{eps:g}"] = round(float(correct(fgsm).mean()), 4)
        survived = np.ones(len(rows), dtype=bool)
        for kind in ("ce", "margin"):
            alpha = 2.5 * eps / steps
            adv = np.clip(rows + rng.uniform(-eps, eps, rows.shape), low, high)
            for _ in range(steps):
                grad = _gradient(scores, adv, labels, kind, h, batch)
                adv = np.clip(adv + alpha * np.sign(grad), rows - eps, rows + eps)
                adv = np.clip(adv, low, high)
            survived &= correct(adv)
        out[f"pgd{steps}@{eps:g}"] = round(float(survived.mean()), 4)
    return out
