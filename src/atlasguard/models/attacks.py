"""Attacks for evaluating defences (never in the request path).

Every attack is written against a plain function from a batch of inputs to a
batch of scores (``[n, classes]``, probabilities or whatever the deployment
reveals, labels as one-hot when only labels come back), so the same attack
runs against the bare model, the in-process protected model and the HTTP
gateway. A refusal (any exception the function raises) ends the attack: the
result says how many queries it got answered.

* :func:`simba`: SimBA (Guo et al., 2019), a score-based evasion attack that
  tries one pixel direction at a time and keeps a step that lowers the true
  class's score;
* :func:`random_extraction` and :func:`jacobian_extraction`: model extraction
  by labelling random inputs, or by Papernot et al.'s Jacobian-based dataset
  augmentation around a few seeds (the surrogate's gradient sign, step
  ``lam``), training a scikit-learn surrogate on the answers.

>>> import numpy as np
>>> w = np.eye(4)
>>> scores = lambda x: np.exp(x @ w) / np.exp(x @ w).sum(axis=1, keepdims=True)
>>> out = simba(scores, np.array([1.0, 0, 0, 0]), label=0, epsilon=0.5, max_queries=50)
>>> out.queries <= 50
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "ExtractionResult",
    "Scores",
    "SimbaResult",
    "jacobian_extraction",
    "random_extraction",
    "simba",
]

FloatArray = npt.NDArray[np.float64]
Scores = Callable[[FloatArray], FloatArray]


@dataclass
class SimbaResult:
    """Where SimBA got: the adversarial input, whether it flipped the label, queries used."""

    x: FloatArray
    success: bool
    queries: int
    stopped: str = ""  # the refusal that ended it, if one did


def simba(
    scores: Scores,
    x: FloatArray,
    *,
    label: int,
    epsilon: float = 0.2,
    max_queries: int = 1_000,
    bounds: tuple[float, float] = (0.0, 1.0),
    random_state: int = 0,
) -> SimbaResult:
    """SimBA in the pixel basis: ``x`` misclassified away from ``label``, or out of queries."""
    rng = np.random.default_rng(random_state)
    x = np.asarray(x, dtype=np.float64).copy()
    queries = 0
    try:
        best = scores(x[None])[0]
        queries += 1
        for i in rng.permutation(x.size):
            if int(np.argmax(best)) != label:
                return SimbaResult(x, True, queries)
            for sign in (-1.0, 1.0):
                if queries >= max_queries:
                    return SimbaResult(x, False, queries)
                trial = x.copy()
                trial.flat[i] = np.clip(trial.flat[i] + sign * epsilon, *bounds)
                if np.array_equal(trial, x):
                    continue
                got = scores(trial[None])[0]
                queries += 1
                if got[label] < best[label]:
                    x, best = trial, got
                    break
    except Exception as exc:  # the defence refused: the attack ends there
        return SimbaResult(x, False, queries, stopped=f"{type(exc).__name__}: {exc}")
    return SimbaResult(x, int(np.argmax(best)) != label, queries)


@dataclass
class ExtractionResult:
    """A surrogate trained on the answers, and how many queries were answered."""

    surrogate: Any
    queries: int
    stopped: str = ""
    answered_x: FloatArray = field(default_factory=lambda: np.empty((0, 0)))


def _fit(x: FloatArray, y: npt.NDArray[np.int64], random_state: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        from sklearn.dummy import DummyClassifier

        return DummyClassifier(strategy="most_frequent").fit(x, y)
    return LogisticRegression(max_iter=500, random_state=random_state).fit(x, y)


def random_extraction(
    scores: Scores,
    *,
    n_features: int,
    budget: int,
    batch: int = 1,
    bounds: tuple[float, float] = (0.0, 1.0),
    random_state: int = 0,
) -> ExtractionResult:
    """Label ``budget`` uniformly random inputs, ``batch`` per query; fit a surrogate."""
    rng = np.random.default_rng(random_state)
    xs: list[FloatArray] = []
    ys: list[int] = []
    stopped = ""
    queries = 0
    while len(xs) < budget:
        x = rng.uniform(*bounds, size=(min(batch, budget - len(xs)), n_features))
        try:
            answer = scores(x)
        except Exception as exc:
            stopped = f"{type(exc).__name__}: {exc}"
            break
        queries += 1
        xs.extend(x)
        ys.extend(int(c) for c in np.argmax(answer, axis=1))
    x_all = np.array(xs).reshape(len(xs), n_features)
    surrogate = _fit(x_all, np.array(ys), random_state) if xs else None
    return ExtractionResult(surrogate, queries, stopped, x_all)


def jacobian_extraction(
    scores: Scores,
    seeds: FloatArray,
    *,
    budget: int,
    lam: float = 0.1,
    bounds: tuple[float, float] = (0.0, 1.0),
    random_state: int = 0,
) -> ExtractionResult:
    """Papernot et al.'s Jacobian-based augmentation, one input per query.

    Label the seeds, fit a linear surrogate, then add for every known input
    ``x + lam * sign(grad of the surrogate's score for x's label)`` and label
    those; repeat until ``budget`` answers. The surrogate is a multinomial
    logistic regression, whose input gradient is ``W[y] - sum_k p_k W[k]``.
    """
    xs: list[FloatArray] = []
    ys: list[int] = []
    queries = 0
    stopped = ""

    def ask(x: FloatArray) -> bool:
        nonlocal queries, stopped
        try:
            answer = scores(x[None])
        except Exception as exc:
            stopped = f"{type(exc).__name__}: {exc}"
            return False
        queries += 1
        xs.append(x)
        ys.append(int(np.argmax(answer[0])))
        return True

    for seed in np.asarray(seeds, dtype=np.float64):
        if len(xs) >= budget or not ask(seed):
            break
    surrogate = _fit(np.array(xs), np.array(ys), random_state) if xs else None
    while not stopped and len(xs) < budget and surrogate is not None:
        known = np.array(xs)
        labels = np.array(ys)
        grads = _logistic_input_gradient(surrogate, known, labels)
        for x, g in zip(known, grads, strict=True):
            if len(xs) >= budget or not ask(np.clip(x + lam * np.sign(g), *bounds)):
                break
        surrogate = _fit(np.array(xs), np.array(ys), random_state)
    answered = np.array(xs) if xs else np.empty((0, np.asarray(seeds).shape[-1]))
    return ExtractionResult(surrogate, queries, stopped, answered)


def _logistic_input_gradient(
    model: Any, x: FloatArray, labels: npt.NDArray[np.int64]
) -> FloatArray:
    coef = getattr(model, "coef_", None)
    if coef is None:  # a one-class dummy: no gradient, step anywhere
        return np.random.default_rng(0).standard_normal(x.shape)
    proba = model.predict_proba(x)
    classes = list(model.classes_)
    rows = np.array([classes.index(c) if c in classes else 0 for c in labels])
    w = np.vstack([-coef[0], coef[0]]) if coef.shape[0] == 1 else coef  # binary: one vector
    mean = proba @ w
    return np.asarray(w[rows] - mean, dtype=np.float64)
