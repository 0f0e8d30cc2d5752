"""Output obfuscation (AML.M0002) against a model-extraction attack, measured.

Victim: a scikit-learn LogisticRegression on the bundled digits data. Attacker: the
same query budget under each output policy, two surrogates trained on what came
back:

* ``soft``: a LogisticRegression trained on the returned scores as soft labels
  (each query weighted by each class's score; label-only answers are one-hot);
* ``logit``: the equation-solving attack on a log-linear model: a ridge regression
  from input to log-scores, which exact scores make almost exact.

Fidelity is the surrogate's agreement with the victim on held-out digits neither
saw. The label-flip rate is how often a policy changes the victim's argmax.

    .venv/bin/python bench/gateway/output_extraction.py [--budget 200] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split

from atlasguard.runtime.obfuscation import OutputPolicy

RESULTS = Path(__file__).resolve().parents[1] / "results"
POLICIES = (
    "full",
    "round",
    "top_k",
    "top_k+round",
    "noise@0.01",
    "noise@0.02",
    "noise@0.05",
    "noise@0.1",
    "label",
)


def _policy(spec: str) -> OutputPolicy:
    name, _, scale = spec.partition("@")
    return OutputPolicy.parse(name, top_k=3, decimals=2, noise_scale=float(scale or 0.02))


def _soft_surrogate(x: np.ndarray, scores: np.ndarray, classes: int) -> LogisticRegression:
    if scores.ndim == 1:  # label only
        onehot = np.zeros((len(scores), classes))
        onehot[np.arange(len(scores)), scores] = 1.0
        scores = onehot
    rows = np.repeat(x, classes, axis=0)
    labels = np.tile(np.arange(classes), len(x))
    weights = scores.reshape(-1).astype(np.float64)
    keep = weights > 0
    model = LogisticRegression(max_iter=2000)
    return model.fit(rows[keep], labels[keep], sample_weight=weights[keep])


def _logit_surrogate(x: np.ndarray, scores: np.ndarray, classes: int) -> Ridge:
    if scores.ndim == 1:
        onehot = np.full((len(scores), classes), 1e-4)
        onehot[np.arange(len(scores)), scores] = 1.0
        scores = onehot
    target = np.log(np.clip(scores.astype(np.float64), 1e-4, 1.0))
    return Ridge(alpha=1e-3).fit(x, target)


def run(budget: int, seeds: int) -> dict[str, Any]:
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    x_victim, x_rest, y_victim, y_rest = train_test_split(
        x, y, train_size=0.5, random_state=0, stratify=y
    )
    x_pool, x_test, _, y_test = train_test_split(x_rest, y_rest, train_size=0.5, random_state=0)
    victim = LogisticRegression(max_iter=2000).fit(x_victim, y_victim)
    classes = len(victim.classes_)
    truth = victim.predict(x_test)
    clean_test = victim.predict_proba(x_test).astype(np.float32)
    rows: dict[str, dict[str, float]] = {}
    for spec in POLICIES:
        policy = _policy(spec)
        flips, soft_fid, logit_fid = [], [], []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            answered = policy.apply(clean_test, rng)
            labels = answered if answered.ndim == 1 else answered.argmax(axis=1)
            flips.append(float(np.mean(labels != clean_test.argmax(axis=1))))
            pick = np.random.default_rng(1000 + seed).choice(len(x_pool), budget, replace=False)
            queries = x_pool[pick]
            returned = policy.apply(victim.predict_proba(queries).astype(np.float32), rng)
            soft = _soft_surrogate(queries, returned, classes)
            soft_fid.append(float(np.mean(soft.predict(x_test) == truth)))
            logit = _logit_surrogate(queries, returned, classes)
            logit_fid.append(float(np.mean(logit.predict(x_test).argmax(axis=1) == truth)))
        rows[spec] = {
            "label_flip_rate": float(np.mean(flips)),
            "fidelity_soft": float(np.mean(soft_fid)),
            "fidelity_logit": float(np.mean(logit_fid)),
        }
    return {
        "budget": budget,
        "seeds": seeds,
        "held_out": len(x_test),
        "victim_accuracy": float(victim.score(x_test, y_test)),
        "policies": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "output-extraction.json")
    args = parser.parse_args(argv)
    result = run(args.budget, args.seeds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"victim accuracy {result['victim_accuracy']:.3f}; budget {args.budget} queries; "
        f"{args.seeds} seeds; {result['held_out']} held-out digits"
    )
    print(f"{'policy':<14} {'label flips':>11} {'fidelity soft':>14} {'fidelity logit':>15}")
    for spec, row in result["policies"].items():
        print(
            f"{spec:<14} {row['label_flip_rate']:>11.2%} {row['fidelity_soft']:>14.2%} "
            f"{row['fidelity_logit']:>15.2%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
