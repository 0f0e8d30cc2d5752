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
    "DecisionResult",
    "ExtractionResult",
    "Gradient",
    "Scores",
    "SimbaResult",
    "fgsm",
    "hop_skip_jump",
    "jacobian_extraction",
    "knockoff_extraction",
    "loss_gradient",
    "nes",
    "pgd",
    "random_extraction",
    "relu_activations",
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


# -- white box: FGSM and PGD ------------------------------------------------------------

Gradient = Callable[[FloatArray, npt.NDArray[np.int64]], FloatArray]
"""``(x, y) -> d loss / d x``: the gradient of the model's cross-entropy at ``x`` for ``y``."""


def relu_activations(model: Any, x: npt.ArrayLike) -> list[FloatArray]:
    """The input and each hidden layer of a fitted ReLU ``MLPClassifier`` (its ``coefs_``)."""
    if getattr(model, "activation", "relu") != "relu":
        raise ValueError("only ReLU MLPs are read layer by layer")
    activations = [np.asarray(x, np.float64)]
    for w, b in zip(model.coefs_[:-1], model.intercepts_[:-1], strict=True):
        activations.append(np.maximum(activations[-1] @ w + b, 0.0))
    return activations


def loss_gradient(model: Any) -> Gradient:
    """The cross-entropy's input gradient of a fitted scikit-learn model.

    Multinomial ``LogisticRegression`` (``(p - onehot(y)) W``),
    ``MLPClassifier`` with ReLU hidden layers and a softmax output (backprop
    through its ``coefs_``), and any model with its own ``input_gradient(x, y)``
    (:class:`atlasguard.models.cnn.DigitsCNN`, by autograd). Other models: pass
    your own gradient function.
    """
    own = getattr(model, "input_gradient", None)
    if callable(own):  # e.g. atlasguard.models.cnn.DigitsCNN (autograd)
        return lambda x, y: np.asarray(own(x, y), np.float64)
    coefs = getattr(model, "coefs_", None)
    if coefs is not None:
        if getattr(model, "activation", "relu") != "relu":
            raise ValueError("only ReLU MLPs have a built-in gradient")
        intercepts = model.intercepts_

        def mlp(x: FloatArray, y: npt.NDArray[np.int64]) -> FloatArray:
            activations = relu_activations(model, x)
            logits = activations[-1] @ coefs[-1] + intercepts[-1]
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            delta = p - np.eye(p.shape[1])[y]
            delta = delta @ coefs[-1].T
            for i in range(len(coefs) - 2, -1, -1):
                delta = delta * (activations[i + 1] > 0)
                delta = delta @ coefs[i].T
            return np.asarray(delta, np.float64)

        return mlp
    coef = getattr(model, "coef_", None)
    if coef is None or coef.shape[0] < 2:
        raise ValueError("no built-in gradient for this model; pass a gradient function")

    def logistic(x: FloatArray, y: npt.NDArray[np.int64]) -> FloatArray:
        p = model.predict_proba(x)
        return np.asarray((p - np.eye(p.shape[1])[y]) @ coef, np.float64)

    return logistic


def fgsm(
    gradient: Gradient,
    x: FloatArray,
    y: npt.NDArray[np.int64],
    *,
    epsilon: float,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> FloatArray:
    """The fast gradient sign method (Goodfellow et al., 2015): one L-inf step of ``epsilon``."""
    x = np.asarray(x, np.float64)
    return np.clip(x + epsilon * np.sign(gradient(x, y)), *bounds)


def pgd(
    gradient: Gradient,
    x: FloatArray,
    y: npt.NDArray[np.int64],
    *,
    epsilon: float,
    steps: int = 40,
    step_size: float | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    random_start: bool = True,
    random_state: int = 0,
    detector: Callable[[FloatArray], FloatArray] | None = None,
    weight: float = 0.0,
    stop: Callable[[FloatArray], npt.NDArray[np.int64]] | None = None,
) -> FloatArray:
    """Projected gradient descent in the L-inf ball (Madry et al., 2018), untargeted.

    With ``detector`` (``x -> d detector score / d x``) and ``weight`` > 0 it is
    the adaptive attack that knows the detector: each step climbs the model's
    loss and descends ``weight`` times the detector's score, each direction
    normalised, so the input moves away from its class while staying where the
    detector looks natural. With ``stop`` (the model's labels), a row stops
    moving once it is misclassified: the minimal, low-confidence adversarial
    inputs of DeepFool or C&W with no margin, which sit just past the boundary.
    """
    rng = np.random.default_rng(random_state)
    x0 = np.asarray(x, np.float64)
    alpha = step_size if step_size is not None else 2.5 * epsilon / steps
    adv = x0 + (rng.uniform(-epsilon, epsilon, x0.shape) if random_start else 0.0)
    adv = np.clip(adv, *bounds)
    if stop is not None:
        adv = x0.copy()  # from the input itself: the first crossing is the minimal one
    for _ in range(steps):
        g = gradient(adv, y)
        if detector is not None and weight > 0:
            d = detector(adv)
            g = _unit(g) - weight * _unit(d)
        moved = adv + alpha * np.sign(g)
        moved = np.clip(np.clip(moved, x0 - epsilon, x0 + epsilon), *bounds)
        if stop is not None:
            done = np.asarray(stop(adv)) != y
            moved[done] = adv[done]
        adv = moved
    return adv


def _unit(g: FloatArray) -> FloatArray:
    norm = np.linalg.norm(g.reshape(len(g), -1), axis=1).reshape(-1, *([1] * (g.ndim - 1)))
    return np.asarray(g / np.maximum(norm, 1e-12), np.float64)


# -- decision based: HopSkipJump ----------------------------------------------------------


@dataclass
class DecisionResult:
    """Where a decision-based attack got: the input, whether it is misclassified, queries."""

    x: FloatArray
    success: bool
    queries: int
    distance: float
    stopped: str = ""


class _Budget(Exception):
    pass


def hop_skip_jump(
    scores: Scores,
    x: FloatArray,
    *,
    label: int,
    max_queries: int = 5_000,
    iterations: int = 20,
    bounds: tuple[float, float] = (0.0, 1.0),
    target_distance: float | None = None,
    random_state: int = 0,
) -> DecisionResult:
    """HopSkipJump (Chen et al., 2020), untargeted, L2, from labels alone.

    Only the argmax of each answer is used, so it runs against a label-only
    deployment too. ``max_queries`` counts rows answered (a gradient estimate
    sends its probes as one batch of up to 200 rows). Starts from a random
    input the model labels differently, walks to the boundary by binary search,
    then alternates a gradient-direction estimate (sign queries around the
    boundary point), a geometric step and a new binary search. ``success`` is a
    misclassified input within ``target_distance`` (L2) of ``x`` (any distance
    when ``None``).
    """
    rng = np.random.default_rng(random_state)
    x0 = np.asarray(x, np.float64).ravel()
    d = x0.size
    lo, hi = bounds
    used = 0
    stopped = ""

    def adversarial(batch: FloatArray) -> npt.NDArray[np.bool_]:
        nonlocal used
        if used + len(batch) > max_queries:
            raise _Budget
        answer = np.asarray(scores(np.clip(batch, lo, hi).reshape(len(batch), *np.shape(x))))
        used += len(batch)  # rows answered: a refused query is not one the attack got
        return np.asarray(np.argmax(answer.reshape(len(batch), -1), axis=1) != label)

    def one(point: FloatArray) -> bool:
        return bool(adversarial(point[None])[0])

    def boundary(adv: FloatArray, tol: float) -> FloatArray:
        low, high = 0.0, 1.0  # blend: x0 at 0, adv at 1
        while high - low > tol:
            mid = (low + high) / 2
            if one((1 - mid) * x0 + mid * adv):
                high = mid
            else:
                low = mid
        return np.asarray((1 - high) * x0 + high * adv, np.float64)

    best = x0
    try:
        start = None
        for _ in range(100):
            trial = rng.uniform(lo, hi, d)
            if one(trial):
                start = trial
                break
        if start is None:
            return DecisionResult(x0, False, used, 0.0, "no adversarial starting point")
        theta = 1.0 / (np.sqrt(d) * d)
        best = boundary(start, 1e-3)
        for t in range(1, iterations + 1):
            dist = float(np.linalg.norm(best - x0))
            delta = max(np.sqrt(d) * theta * dist, 1e-4)
            samples = int(min(100 * np.sqrt(t), 200))
            u = rng.standard_normal((samples, d))
            u /= np.linalg.norm(u, axis=1, keepdims=True)
            signs = np.where(adversarial(best[None] + delta * u), 1.0, -1.0)
            if signs.std() > 0:
                signs = signs - signs.mean()
            direction = (signs[:, None] * u).mean(axis=0)
            direction /= max(float(np.linalg.norm(direction)), 1e-12)
            step = dist / np.sqrt(t)
            while step > 1e-6:
                candidate = np.clip(best + step * direction, lo, hi)
                if one(candidate):
                    break
                step /= 2
            else:
                continue
            best = boundary(candidate, 1e-3)
            if target_distance is not None and np.linalg.norm(best - x0) <= target_distance:
                break
    except _Budget:
        stopped = ""
    except Exception as exc:  # the defence refused
        stopped = f"{type(exc).__name__}: {exc}"
    distance = float(np.linalg.norm(best - x0))
    reached = distance <= target_distance if target_distance is not None else True
    success = bool(distance > 0 and reached)
    return DecisionResult(best.reshape(np.shape(x)), success, used, distance, stopped)


# -- extraction from whatever the scores reveal ---------------------------------------------


class _LogitSurrogate:
    """A linear model of the target's log-scores: ``predict`` is the argmax of its fit."""

    def __init__(self, ridge: Any, classes: int) -> None:
        self.ridge = ridge
        self.classes = classes

    def predict(self, x: FloatArray) -> npt.NDArray[np.int64]:
        return np.asarray(np.argmax(self.ridge.predict(x), axis=1), np.int64)


def knockoff_extraction(
    scores: Scores,
    pool: FloatArray,
    *,
    budget: int,
    classes: int = 10,
    floor: float = 1e-4,
    random_state: int = 0,
) -> ExtractionResult:
    """Knockoff-style extraction (Orekondy et al., 2019) that uses all the answers reveal.

    Queries ``budget`` inputs drawn from ``pool`` (the attacker's own natural
    data), one per query, and fits a linear regression to the centred log of each
    answer (``floor`` for zeros). Full scores of a linear model give its logits
    exactly (Tramer et al.'s equation solving); rounded, top-k or noisy scores
    give less; labels (one-hot) give a least-squares classifier. So the same
    attack measures what each output policy leaks.
    """
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(random_state)
    xs: list[FloatArray] = []
    ys: list[FloatArray] = []
    stopped = ""
    for row in np.asarray(pool, np.float64)[rng.choice(len(pool), budget, replace=True)]:
        try:
            answer = np.asarray(scores(row[None]), np.float64).reshape(-1)
        except Exception as exc:
            stopped = f"{type(exc).__name__}: {exc}"
            break
        if answer.size != classes:  # a label alone: one-hot
            answer = np.eye(classes)[int(answer.reshape(-1)[0])]
        xs.append(row)
        ys.append(answer)
    if not xs:
        return ExtractionResult(None, 0, stopped)
    z = np.log(np.clip(np.array(ys), floor, None))
    z -= z.mean(axis=1, keepdims=True)
    ridge = Ridge(alpha=1e-3).fit(np.array(xs), z)
    return ExtractionResult(_LogitSurrogate(ridge, classes), len(xs), stopped, np.array(xs))


def nes(
    scores: Scores,
    x: FloatArray,
    *,
    label: int,
    epsilon: float = 0.2,
    sigma: float = 0.1,
    samples: int = 10,
    step: float = 0.02,
    max_queries: int = 2_000,
    bounds: tuple[float, float] = (0.0, 1.0),
    random_state: int = 0,
) -> SimbaResult:
    """NES (Ilyas et al., 2018): a score-based attack that estimates the gradient from
    antithetic Gaussian probes of scale ``sigma`` around the current input, one query
    each, then takes a signed step, projected to the L-inf ball of ``epsilon``. With a
    large ``sigma`` its probes are far from near-copies of one another."""
    rng = np.random.default_rng(random_state)
    x0 = np.asarray(x, dtype=np.float64).ravel()
    adv = x0.copy()
    queries = 0
    try:
        while queries + 2 * samples <= max_queries:
            u = rng.standard_normal((samples, x0.size))
            probes = np.clip(np.concatenate([adv + sigma * u, adv - sigma * u]), *bounds)
            answered = []
            for probe in probes:
                answered.append(scores(probe[None]))
                queries += 1  # counted as answered: a refusal ends the attack here
            answers = np.concatenate(answered)
            if np.any(np.argmax(answers, axis=1) != label):  # a probe already evades
                hit = probes[int(np.argmax(np.argmax(answers, axis=1) != label))]
                return SimbaResult(hit.reshape(np.shape(x)), True, queries)
            loss = np.log(np.clip(answers[:, label], 1e-12, None))
            grad = ((loss[:samples] - loss[samples:])[:, None] * u).mean(axis=0)
            adv = np.clip(np.clip(adv - step * np.sign(grad), x0 - epsilon, x0 + epsilon), *bounds)
    except Exception as exc:  # the defence refused
        return SimbaResult(adv.reshape(np.shape(x)), False, queries, f"{type(exc).__name__}: {exc}")
    return SimbaResult(adv.reshape(np.shape(x)), False, queries)
