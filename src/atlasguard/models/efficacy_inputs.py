"""Efficacy rows of the per-input defences: detectors, restoration, ensembles, consensus.

Part of ``atlasguard bench efficacy`` (:mod:`atlasguard.models.efficacy`), on the
same fixed digits splits: models and every defence are fit on ``fit``, settings
were chosen on ``tune`` (``bench/efficacy/tune_detectors.py``,
``bench/efficacy/restoration.py``), attacks and clean rates are measured on
``eval``. Each defence is the one its ``[controls.*]`` table builds with its
default settings, unless a row names another setting.

* Detectors (AML.M0015): PGD-40 at epsilon 0.1 and 0.2, white box on the served
  model (the demo's logistic regression, an MLP and a small CNN when PyTorch is
  installed), against the detectors of
  ``[controls.detectors]`` (Mahalanobis, fit on ``fit``, calibrated to 1% on
  held-out ``tune``), and at the 5% operating point; then the
  adaptive attack that knows the Mahalanobis detector (PGD that also descends
  its score). ``attack_success_with`` counts inputs that fool the model and are
  not detected; ``false_positive_rate`` is the share of clean ``eval`` digits
  detected, which is what refusing detections would cost (``clean_cost``).
* Restoration (AML.M0010): FGSM epsilon 0.1 against the demo's 2-bit
  restoration, and the adaptive attack that differentiates through it (BPDA:
  the gradient taken at the restored input).
* Ensemble (AML.M0006): PGD epsilon 0.2 crafted on the attacker's own surrogate
  (trained on ``tune``), transferred to each member and to their soft vote.
* Consensus (AML.M0009): one of two sensors under the attacker's control (PGD
  on its model); a wrong decision needs both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["consensus_rows", "detector_rows", "ensemble_rows", "restoration_rows"]

Say = Callable[[dict[str, Any]], None]


def _mlp(x: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier((64,), max_iter=2000, random_state=0).fit(x, y)


def _flagged(detectors: dict[str, Any], x: np.ndarray) -> np.ndarray:
    return np.asarray(np.any([d.predict(x) for d in detectors.values()], axis=0))


def detector_rows(d: Any, lr: Any, *, quick: bool, say: Say) -> list[dict[str, Any]]:
    """PGD against the default detectors, the 5% operating point, and the adaptive attack."""
    from atlasguard.models.attacks import loss_gradient, pgd
    from atlasguard.models.efficacy import _row
    from atlasguard.runtime.detectors import MahalanobisDetector, build_detectors
    from atlasguard.runtime.settings import DetectorSettings

    defaults = DetectorSettings()
    n = 150 if quick else len(d.x_eval)
    x, y = d.x_eval[:n], d.y_eval[:n]
    rows = []
    models = [("logistic regression", lr)]
    if not quick:
        models.append(("MLP", _mlp(d.x_fit, d.y_fit)))
        try:
            from atlasguard.models.cnn import train_cnn

            models.append(("small CNN", train_cnn(d.x_fit, d.y_fit)))
        except ModuleNotFoundError:  # no torch: the CNN's rows are left out
            pass
    for label, model in models:
        gradient = loss_gradient(model)
        for fpr in (defaults.fpr, 0.05):
            detectors = build_detectors(
                model.predict_proba,
                d.x_fit,
                squeezing=defaults.squeezing,
                squeeze_bits=defaults.squeeze_bits,
                mahalanobis=defaults.mahalanobis,
                shrinkage=defaults.shrinkage,
                knn=defaults.knn,
                fpr=fpr,
                image_shape=(8, 8),
                calibration=d.x_tune,
            )
            clean_rate = float(_flagged(detectors, x).mean())
            for eps in (0.1, 0.2):
                adv = pgd(gradient, x, y, epsilon=eps, steps=40)
                fooled = model.predict(adv) != y
                caught = _flagged(detectors, adv)
                setting = "default [controls.detectors]" if fpr == defaults.fpr else "fpr = 0.05"
                parts = " + ".join(detectors)
                rows.append(
                    _row(
                        f"PGD-40 eps={eps} white box on the {label}",
                        f"input detectors ({setting}: {parts})",
                        attack_success_without=float(fooled.mean()),
                        attack_success_with=float((fooled & ~caught).mean()),
                        clean_cost=clean_rate,
                        detection_rate=float(caught[fooled].mean()) if fooled.any() else None,
                        false_positive_rate=clean_rate,
                    )
                )
                say(rows[-1])
        # the adaptive attacker knows the Mahalanobis detector and descends its score too
        detectors = build_detectors(
            model.predict_proba, d.x_fit, fpr=defaults.fpr, calibration=d.x_tune
        )
        maha = detectors["mahalanobis"]
        assert isinstance(maha, MahalanobisDetector)
        best = None
        for weight in (0.5, 1.0, 2.0):  # the attacker's own tuning, on its targets
            adv = pgd(gradient, x, y, epsilon=0.2, steps=100, detector=maha.gradient, weight=weight)
            fooled = model.predict(adv) != y
            caught = _flagged(detectors, adv)
            won = float((fooled & ~caught).mean())
            if best is None or won > best[0]:
                best = (won, fooled, caught, weight)
        assert best is not None
        won, fooled, caught, weight = best
        rows.append(
            _row(
                f"PGD-100 eps=0.2 on the {label}, adaptive: also descends the Mahalanobis "
                f"score (weight {weight})",
                "input detectors (default [controls.detectors])",
                attack_success_without=float(
                    (model.predict(pgd(gradient, x, y, epsilon=0.2, steps=40)) != y).mean()
                ),
                attack_success_with=won,
                detection_rate=float(caught[fooled].mean()) if fooled.any() else None,
                false_positive_rate=float(_flagged(detectors, x).mean()),
            )
        )
        say(rows[-1])
    return rows


def restoration_rows(d: Any, lr: Any, *, quick: bool, say: Say) -> list[dict[str, Any]]:
    """FGSM against the demo's 2-bit restoration, plain and through BPDA."""
    from atlasguard.models.attacks import fgsm, loss_gradient
    from atlasguard.models.efficacy import _row
    from atlasguard.runtime.restoration import Restorer
    from atlasguard.runtime.settings import RestoreStep

    restore = Restorer.build(
        [RestoreStep(op="bit_depth", bits=2)], kind="image", shape=(8, 8), value_range=(0, 1)
    )
    x, y = d.x_eval, d.y_eval
    gradient = loss_gradient(lr)
    clean = float((lr.predict(x) == y).mean())
    clean_restored = float((lr.predict(restore(x)) == y).mean())
    adv = fgsm(gradient, x, y, epsilon=0.1)
    # BPDA: the attacker differentiates through the restoration as if it were the identity
    bpda = np.clip(x + 0.1 * np.sign(gradient(restore(x), y)), 0, 1)
    rows = []
    for name, attacked in (
        ("FGSM eps=0.1 white box", adv),
        ("FGSM eps=0.1, adaptive: BPDA through the restoration", bpda),
    ):
        without = float((lr.predict(attacked) != y).mean())
        with_ = float((lr.predict(restore(attacked)) != y).mean())
        rows.append(
            _row(
                name,
                "input restoration (demo: 2-bit depth)",
                attack_success_without=without,
                attack_success_with=with_,
                clean_cost=clean - clean_restored,
            )
        )
        say(rows[-1])
    return rows


def ensemble_rows(d: Any, lr: Any, *, quick: bool, say: Say) -> list[dict[str, Any]]:
    """A transfer attack from the attacker's surrogate: each member and the soft vote."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from atlasguard.models.attacks import loss_gradient, pgd
    from atlasguard.models.efficacy import _row
    from atlasguard.runtime.detectors import DisagreementDetector
    from atlasguard.runtime.ensemble import Ensemble

    members = {
        "logistic regression": lr,
        "MLP": _mlp(d.x_fit, d.y_fit),
        "random forest": RandomForestClassifier(200, random_state=0).fit(d.x_fit, d.y_fit),
    }
    surrogate = LogisticRegression(C=0.5, max_iter=2000, random_state=1).fit(d.x_tune, d.y_tune)
    x, y = d.x_eval, d.y_eval
    adv = pgd(loss_gradient(surrogate), x, y, epsilon=0.2, steps=40)
    vote = Ensemble([_scores_of(m, "input") for m in members.values()])
    on_member = {k: float((m.predict(adv) != y).mean()) for k, m in members.items()}
    accuracy = {k: float((m.predict(x) == y).mean()) for k, m in members.items()}
    best = max(accuracy, key=lambda k: accuracy[k])
    on_vote = float((vote({"input": adv})["label"] != y).mean())
    vote_accuracy = float((vote({"input": x})["label"] == y).mean())
    disagreement = DisagreementDetector([m.predict_proba for m in members.values()])
    disagreement.fit(d.x_fit).calibrate(d.x_tune, fpr=0.01)
    fooled = vote({"input": adv})["label"] != y
    flagged = disagreement.predict(adv)
    rows = [
        _row(
            "PGD eps=0.2 on the attacker's surrogate, transferred "
            f"(on each member: {', '.join(f'{k} {v:.2f}' for k, v in on_member.items())})",
            f"soft-vote ensemble vs its best single member ({best})",
            attack_success_without=on_member[best],
            attack_success_with=on_vote,
            clean_cost=accuracy[best] - vote_accuracy,
            detection_rate=float(flagged[fooled].mean()) if fooled.any() else None,
            false_positive_rate=float(disagreement.predict(x).mean()),
        )
    ]
    say(rows[-1])
    return rows


def _scores_of(model: Any, name: str) -> Callable[[Any], Any]:
    return lambda inputs: {"probabilities": model.predict_proba(inputs[name])}


def _second_camera(x: np.ndarray, seed: int) -> np.ndarray:
    """The same digit seen by a second sensor: one pixel to the right, its own noise."""
    images = x.reshape(-1, 8, 8)
    shifted = np.zeros_like(images)
    shifted[:, :, 1:] = images[:, :, :-1]
    noise = np.random.default_rng(seed).normal(0, 0.05, x.shape)
    return np.clip(shifted.reshape(len(x), -1) + noise, 0, 1)


def consensus_rows(d: Any, lr: Any, *, quick: bool, say: Say) -> list[dict[str, Any]]:
    """Two sensors of one scene, 2-of-2 agreement; the attacker controls one sensor."""
    from atlasguard.models.attacks import loss_gradient, pgd
    from atlasguard.models.efficacy import _row
    from atlasguard.runtime.ensemble import Consensus

    other = _mlp(_second_camera(d.x_fit, 0), d.y_fit)
    consensus = Consensus(
        [
            (_scores_of(lr, "a"), ("a",)),
            (_scores_of(other, "b"), ("b",)),
        ],
        agree=2,
    )
    x, y = d.x_eval, d.y_eval
    seen_b = _second_camera(x, 1)
    single = float((lr.predict(x) == y).mean())
    clean_labels = np.asarray(consensus({"a": x, "b": seen_b})["label"], np.int64)
    decided_right = float((clean_labels == y).mean())
    rows = []
    for eps in (0.1, 0.2):
        attacked = pgd(loss_gradient(lr), x, y, epsilon=eps, steps=40)
        fooled = lr.predict(attacked) != y
        out = np.asarray(consensus({"a": attacked, "b": seen_b})["label"], np.int64)
        caught = (out == -1) | (out == y)
        rows.append(
            _row(
                f"PGD-40 eps={eps} on one of two sensors (the camera's model)",
                "2-of-2 consensus with a second sensor (MLP), decision withheld on disagreement",
                attack_success_without=float(fooled.mean()),
                attack_success_with=float(((out >= 0) & (out != y)).mean()),
                clean_cost=single - decided_right,
                detection_rate=float(caught[fooled].mean()) if fooled.any() else None,
                false_positive_rate=float((clean_labels == -1).mean()),
            )
        )
        say(rows[-1])
    return rows
