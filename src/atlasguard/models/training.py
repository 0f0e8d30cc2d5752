"""Measured efficacy of the training-time defences (issue 14): ``atlasguard bench training``.

On scikit-learn's digits. Every poisoned set is built from the ``fit`` part of
:mod:`atlasguard.models.data`; the detectors were designed and their settings
chosen on ``tune`` and ``eval`` (see ``bench/training/README.md``), so nothing
here is judged on the data it was tuned on. No row tells a detector the poison
rate, the trigger or the target.

Rows (``task``, ``defence``, ``precision``, ``recall``, ``flagged``, ``true``,
``attack_success`` of the backdoor on a model trained on the poisoned set,
``reference`` and ``seconds``):

* BadNets (a 3x3 patch in the corner), 10%, all-to-one: atlasguard's
  :class:`~atlasguard.data.poison.PoisonDetector` next to spectral signatures
  done per the paper (Tran et al.: per class, centred, the top singular vector
  of the last hidden layer, removing 1.5 times the *known* poison count) and
  confident learning alone;
* the same all-to-all (y -> y + 1), and triggers no issue shows: blended random
  patterns, patches away from the corner, other sizes, rates and targets;
* 10% flipped labels: the label-error check (cleanlab, which atlasguard calls);
* clean data: what each detector flags when nothing is wrong;
* drift: how often the drift tests alarm on windows of 50, 100 and 200 rows
  of ``eval``, clean (false alarms) and under noise, pixel knockout, rotation
  and a class-prior shift, against ``tune`` as the reference;
* backdoor search (with torch): Neural Cleanse on 10 backdoored and 10 clean
  CNNs, different seeds, triggers and targets;
* hardening (with torch): standard training, PGD adversarial training, TRADES
  and defensive distillation of one small CNN, trained on ``fit``, early-stopped
  on ``tune``, and attacked on ``eval`` by FGSM and PGD-40 (random start).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Training", "backdoor_success", "clean_accuracy", "render_table", "run"]

COLUMNS = ("precision", "recall", "flagged", "true", "attack_success", "seconds")


@dataclass
class Training:
    rows: list[dict[str, Any]]
    hardening: list[dict[str, Any]] = field(default_factory=list)
    strip: list[dict[str, Any]] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    backdoor: list[dict[str, Any]] = field(default_factory=list)
    command: str = "atlasguard bench training"

    def to_json(self) -> str:
        body = {
            "command": self.command,
            "rows": self.rows,
            "hardening": self.hardening,
            "strip": self.strip,
            "drift": self.drift,
            "backdoor": self.backdoor,
        }
        return json.dumps(body, indent=1)


def render_table(result: Training) -> str:
    lines = [
        "| task | defence | precision | recall | flagged | poisoned | backdoor success "
        "| seconds | reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result.rows:
        cells = [
            "" if r[k] is None else f"{r[k]:.2f}" if isinstance(r[k], float) else str(r[k])
            for k in COLUMNS
        ]
        lines.append("| " + " | ".join([r["task"], r["defence"], *cells, r["reference"]]) + " |")
    if result.strip:
        lines += [
            "",
            "| STRIP guard (runtime) on | triggered inputs detected | clean inputs refused "
            "| calibrated to | reference |",
            "|---|---|---|---|---|",
        ]
        for r in result.strip:
            lines.append(
                f"| {r['trigger']} | {r['detection']:.3f} | {r['false_rejection']:.3f} "
                f"| {r['fpr']} | {r['reference']} |"
            )
    if result.drift:
        windows = sorted({r["window"] for r in result.drift})
        lines += [
            "",
            "| drift (alarm rate per window, alpha 0.05) | "
            + " | ".join(f"window {w}" for w in windows)
            + " |",
            "|---|" + "---|" * len(windows),
        ]
        for shift in dict.fromkeys(r["shift"] for r in result.drift):
            cells = [
                f"{r['alarm_rate']:.2f}"
                for w in windows
                for r in result.drift
                if r["shift"] == shift and r["window"] == w
            ]
            lines.append(f"| {shift} | " + " | ".join(cells) + " |")
    if result.backdoor:
        lines += [
            "",
            "| model (small CNN) | backdoor planted | flagged | label found | anomaly index "
            "| seconds |",
            "|---|---|---|---|---|---|",
        ]
        for r in result.backdoor:
            lines.append(
                f"| {r['model']} | {r['planted']} | {r['flagged']} | {r['label']} "
                f"| {r['anomaly_index']:.2f} | {r['seconds']:.0f} |"
            )
        bad = [r for r in result.backdoor if r["planted"] != "-"]
        good = [r for r in result.backdoor if r["planted"] == "-"]
        found = sum(r["flagged"] and str(r["label"]) == r["planted"] for r in bad)
        lines.append(
            f"\nbackdoored models found with the right label: {found}/{len(bad)}; clean models "
            f"flagged: {sum(r['flagged'] for r in good)}/{len(good)} (issue 14: >= 9/10, <= 1/10)"
        )
    if result.hardening:
        lines += [
            "",
            "| hardening (small CNN, digits) | clean accuracy | PGD-40 eps 0.2 | FGSM eps 0.2 "
            "| PGD-40 eps 0.1 | seconds | best epoch | reference |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for h in result.hardening:
            r = h["robustness"]
            lines.append(
                f"| {h['method']} | {r['clean']:.3f} | {r['pgd40@0.2']:.3f} | {r['fgsm@0.2']:.3f} "
                f"| {r['pgd40@0.1']:.3f} | {h['seconds']:.0f} | {h['best_epoch']} "
                f"| {h['reference']} |"
            )
    lines.append(f"\ncommand: {result.command}")
    return "\n".join(lines)


def _score(flagged: npt.NDArray[np.intp], truth: npt.NDArray[np.intp]) -> tuple[float, float]:
    hits = len(np.intersect1d(flagged, truth))
    precision = hits / len(flagged) if len(flagged) else (1.0 if len(truth) == 0 else 0.0)
    recall = hits / len(truth) if len(truth) else 1.0
    return precision, recall


def _victim(x: np.ndarray, y: np.ndarray) -> Any:
    """The model a victim trains on the data it was given: a small MLP."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    with warnings.catch_warnings():  # 500 epochs fit digits; the last bit of loss is moot
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPClassifier(hidden_layer_sizes=(64,), max_iter=500, random_state=0).fit(x, y)


def clean_accuracy(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Accuracy on clean ``x_test`` of the victim's MLP trained on ``x``, ``y``."""
    return float(np.mean(_victim(x, y).predict(x_test) == y_test))


def backdoor_success(poisoned: Any, x_other: np.ndarray, y_other: np.ndarray) -> float | None:
    """The trigger's success on held-out rows, for an MLP trained on the poisoned set."""
    from atlasguard.models.poisoning import apply_trigger

    if poisoned.trigger is None:
        return None
    model = _victim(poisoned.x, poisoned.y)
    stamped = apply_trigger(x_other, poisoned.trigger, poisoned.alpha)
    classes = int(poisoned.y.max()) + 1
    target = (
        np.full(len(y_other), poisoned.target)
        if poisoned.target is not None
        else (y_other + 1) % classes
    )
    keep = y_other != target
    return float(np.mean(model.predict(stamped[keep]) == target[keep]))


def spectral_signatures(
    x: np.ndarray, y: np.ndarray, expected: dict[int, int], random_state: int = 0
) -> npt.NDArray[np.intp]:
    """Tran et al. (2018) told the poison count of each class (``expected[label]``): per
    class, centre the last hidden layer, score each row by its squared projection on the
    top singular vector, remove the top 1.5 x that count."""
    from atlasguard.data.poison import _surrogate, mlp_hidden

    hidden = mlp_hidden(_surrogate(x, y, random_state))(x)
    removed: list[np.ndarray] = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        centred = hidden[members] - hidden[members].mean(axis=0)
        top = np.linalg.svd(centred, full_matrices=False)[2][0]
        score = (centred @ top) ** 2
        count = round(1.5 * expected.get(int(label), 0))
        removed.append(members[np.argsort(score)[::-1][:count]])
    return np.sort(np.concatenate(removed)).astype(np.intp)


def _cleanlab_anchor(x: np.ndarray, y: np.ndarray) -> npt.NDArray[np.intp]:
    """The issue's reference setting, as a user of cleanlab would write it."""
    import warnings

    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probabilities = cross_val_predict(
            LogisticRegression(max_iter=2000), x, y, cv=5, method="predict_proba"
        )
    return np.asarray(find_label_issues(y, probabilities), np.intp).nonzero()[0].astype(np.intp)


def run(*, quick: bool = False, progress: Callable[[str], None] | None = None) -> Training:
    from atlasguard.data.labels import label_issues
    from atlasguard.data.poison import PoisonDetector
    from atlasguard.models import poisoning
    from atlasguard.models.data import digits_splits

    d = digits_splits()
    x, y = d.x_fit, d.y_fit
    rows: list[dict[str, Any]] = []

    def add(task: str, defence: str, flagged: np.ndarray, truth: np.ndarray, **extra: Any) -> None:
        precision, recall = _score(flagged, truth)
        row = {
            "task": task,
            "defence": defence,
            "precision": round(precision, 3),
            "recall": round(recall, 3),
            "flagged": len(flagged),
            "true": len(truth),
            "attack_success": extra.get("attack_success"),
            "seconds": round(extra.get("seconds", 0.0), 1),
            "reference": extra.get("reference", ""),
        }
        rows.append(row)
        if progress is not None:
            progress(json.dumps(row))

    def detect(
        name: str, attack: Any, reference: str = "", baselines: bool = False, after: bool = False
    ) -> None:
        success = backdoor_success(attack, d.x_tune, d.y_tune)
        start = time.perf_counter()
        found = PoisonDetector(random_state=0).fit(attack.x, attack.y).rows_
        seconds = time.perf_counter() - start
        if after:  # what is left of the backdoor once the flagged rows are removed
            from dataclasses import replace

            keep = np.setdiff1d(np.arange(len(attack.y)), found)
            left = backdoor_success(
                replace(attack, x=attack.x[keep], y=attack.y[keep]), d.x_tune, d.y_tune
            )
            reference = f"{reference}; backdoor success after removing the flagged rows: {left:.2f}"
        add(
            name,
            "atlasguard poison (no rate given)",
            found,
            attack.rows,
            attack_success=success,
            seconds=seconds,
            reference=reference,
        )
        if not baselines:
            return
        start = time.perf_counter()
        labels, counts = np.unique(attack.y[attack.rows], return_counts=True)
        expected = {int(a): int(b) for a, b in zip(labels, counts, strict=True)}
        spectral = spectral_signatures(attack.x, attack.y, expected)
        add(
            name,
            "spectral signatures per the paper (count and target given)",
            spectral,
            attack.rows,
            seconds=time.perf_counter() - start,
        )
        start = time.perf_counter()
        doubted = np.array([r for r, *_ in label_issues(attack.x, attack.y)], np.intp)
        add(
            name,
            "confident learning alone (cleanlab)",
            doubted,
            attack.rows,
            seconds=time.perf_counter() - start,
        )

    detect(
        "BadNets 3x3 corner, 10%, all-to-one (target 0)",
        poisoning.badnets(x, y, rate=0.1, target=0),
        reference="issue 14: ART ActivationDefence 0.31 / 0.90; spectral per the paper "
        "0.66 / 1.0; target >= 0.95 / 0.95",
        baselines=True,
    )
    detect(
        "BadNets 3x3 corner, 10%, all-to-all (y -> y+1)",
        poisoning.badnets(x, y, rate=0.1, mode="all-to-all"),
        reference="issue 14: report (found by the shared-offset step; see the docs)",
    )
    detect(
        "blended random pattern alpha 0.2, 5%, target 7",
        poisoning.blended(x, y, rate=0.05, target=7, alpha=0.2, random_state=11),
        reference="issue 14: confident learning alone 0.09 precision at 1% recall",
        baselines=not quick,
    )
    if not quick:
        detect(
            "BadNets 2x2 top-left, 2%, target 5",
            poisoning.badnets(x, y, rate=0.02, target=5, size=2, row=0, col=0),
        )
        detect(
            "BadNets 3x3 mid-image (row 3, col 2), 5%, target 8",
            poisoning.badnets(x, y, rate=0.05, target=8, row=3, col=2),
        )
        detect(
            "blended alpha 0.1, 15%, target 4",
            poisoning.blended(x, y, rate=0.15, target=4, alpha=0.1, random_state=12),
        )
        detect(
            "BadNets 4x4 at (0, 4), 3%, target 1",
            poisoning.badnets(x, y, rate=0.03, target=1, size=4, row=0, col=4),
        )
        detect(
            "BadNets 3x3 at (5, 0), 8%, all-to-all",
            poisoning.badnets(x, y, rate=0.08, mode="all-to-all", row=5, col=0),
        )
        detect(
            "BadNets 4x4 at (0, 4), 5%, all-to-all",
            poisoning.badnets(x, y, rate=0.05, mode="all-to-all", size=4, row=0, col=4),
        )
        detect(
            "blended alpha 0.15, 10%, all-to-all",
            poisoning.blended(x, y, rate=0.1, mode="all-to-all", alpha=0.15, random_state=21),
        )
    if not quick:
        detect(
            "adaptive against STRIP: BadNets 3x3 corner 10% + as many stamped rows blended "
            "with clean ones and labelled as those (target 0)",
            poisoning.strip_adaptive(x, y, rate=0.1, target=0, cover=1.0),
            reference="truth: the stamped rows and the cover blends",
            after=True,
        )
    flips = poisoning.flip_labels(x, y, rate=0.1, random_state=0)
    start = time.perf_counter()
    doubted = np.array([r for r, *_ in label_issues(flips.x, flips.y)], np.intp)
    add(
        "10% flipped labels",
        "atlasguard label-error (cleanlab on out-of-fold LR)",
        doubted,
        flips.rows,
        seconds=time.perf_counter() - start,
        reference="issue 14: cleanlab 0.83 / 0.85 (the same library: atlasguard calls it)",
    )
    start = time.perf_counter()
    anchor = _cleanlab_anchor(flips.x, flips.y)
    add(
        "10% flipped labels",
        "anchor: cleanlab on a default LogisticRegression's 5-fold probabilities",
        anchor,
        flips.rows,
        seconds=time.perf_counter() - start,
    )
    start = time.perf_counter()
    found = PoisonDetector(random_state=0).fit(flips.x, flips.y).rows_
    add(
        "10% flipped labels",
        "atlasguard poison (should stay quiet)",
        found,
        np.empty(0, np.intp),
        seconds=time.perf_counter() - start,
    )
    start = time.perf_counter()
    found = PoisonDetector(random_state=0).fit(x, y).rows_
    add(
        "clean digits (nothing wrong)",
        "atlasguard poison",
        found,
        np.empty(0, np.intp),
        seconds=time.perf_counter() - start,
    )
    hardening = [] if quick else _hardening(d, progress)
    strip = _strip(d, quick, progress)
    drift = _drift(d, quick, progress)
    backdoor = [] if quick else backdoor_models(d, progress)
    return Training(rows, hardening, strip, drift, backdoor)


def backdoor_models(
    d: Any,
    progress: Callable[[str], None] | None,
    *,
    seed: int = 2026,
    count: int = 10,
    first_model_seed: int = 100,
    black_box: bool = False,
) -> list[dict[str, Any]]:
    """Neural Cleanse (white box; ``black_box``: through each model written as ONNX,
    as ``atlasguard validate`` searches, 400 steps) on ``count`` CNNs trained on ``fit``
    with a BadNets patch (random size 2-3, position and target, drawn with ``seed``: 2026
    for the bench, 7 for
    the tuning models of ``bench/training/backdoor_tuning.py``) and ``count`` trained on
    clean ``fit``, model ``i`` of each kind with training seed ``first_model_seed + i``
    (the tuning models start elsewhere, so no clean model is in both sets); the search
    runs on ``tune``."""
    try:
        import torch
    except ImportError:
        return []
    from atlasguard.models import poisoning
    from atlasguard.models.cnn import train_cnn
    from atlasguard.models.validation import neural_cleanse

    torch.set_num_threads(2)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        target, size = int(rng.integers(10)), int(rng.integers(2, 4))
        row, col = (int(v) for v in rng.integers(0, 8 - size + 1, size=2))
        attack = poisoning.badnets(
            d.x_fit, d.y_fit, rate=0.1, target=target, size=size, row=row, col=col, random_state=i
        )
        for planted, (x, y) in ((str(target), (attack.x, attack.y)), ("-", (d.x_fit, d.y_fit))):
            net = train_cnn(x, y, epochs=30, random_state=first_model_seed + i).net
            if black_box:
                report = _black_box_search(net, d.x_tune)
            else:
                report = neural_cleanse(net, d.x_tune, shape=(1, 8, 8), classes=10)
            entry = {
                "model": f"{'backdoored' if planted != '-' else 'clean'} #{i}",
                "planted": planted,
                "trigger": f"{size}x{size} at ({row}, {col})" if planted != "-" else "",
                "flagged": report.flagged,
                "label": report.label,
                "anomaly_index": report.anomaly_index,
                "ratio": report.ratio,
                "seconds": report.seconds,
            }
            out.append(entry)
            if progress is not None:
                progress(json.dumps(entry))
    return out


def _black_box_search(net: Any, x: np.ndarray) -> Any:
    """Neural Cleanse as ``atlasguard validate MODEL.onnx`` runs it: the network written as
    ONNX, asked through ONNX Runtime, gradients estimated."""
    import tempfile

    from atlasguard.models.hardening import export_onnx
    from atlasguard.models.onnx_scores import onnx_scores
    from atlasguard.models.validation import neural_cleanse

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(net, path, (1, 8, 8))
        return neural_cleanse(onnx_scores(path), x, shape=(64,), classes=10, steps=400)


def _rotate(x: np.ndarray, degrees: float) -> np.ndarray:
    from scipy import ndimage

    images = x.reshape(-1, 8, 8)
    turned = ndimage.rotate(images, degrees, axes=(1, 2), reshape=False, order=1)
    return np.asarray(np.clip(turned, 0, 1).reshape(len(x), -1), np.float64)


def _drift(d: Any, quick: bool, progress: Callable[[str], None] | None) -> list[dict[str, Any]]:
    """Power of the drift tests: the reference (inputs and the demo model's scores) is
    ``tune``; each window is drawn from ``eval``, clean (the false-alarm rate) or shifted."""
    from sklearn.linear_model import LogisticRegression

    from atlasguard.runtime.drift import DriftDetector

    model = LogisticRegression(max_iter=2000).fit(d.x_fit, d.y_fit)
    detector = DriftDetector(alpha=0.05, permutations=100)
    detector.fit(d.x_tune, model.predict_proba(d.x_tune))
    rng = np.random.default_rng(0)
    low_classes = np.flatnonzero(d.y_eval < 5)

    def knockout(x: np.ndarray, share: float = 0.2) -> np.ndarray:
        return np.where(rng.random(x.shape) < share, 0.0, x)

    shifts: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "none (false alarms on clean windows)": lambda x: x,
        "Gaussian noise sigma 0.1": lambda x: np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1),
        "pixel knockout 20%": knockout,
        "rotation 15 degrees": lambda x: _rotate(x, 15.0),
        "class prior: only digits 0-4": lambda x: x,
    }
    if not quick:
        shifts["Gaussian noise sigma 0.03"] = lambda x: np.clip(
            x + rng.normal(0, 0.03, x.shape), 0, 1
        )
        shifts["rotation 5 degrees"] = lambda x: _rotate(x, 5.0)
        shifts["pixel knockout 5%"] = lambda x: knockout(x, 0.05)

        def diluted(share: float) -> Callable[[np.ndarray], np.ndarray]:
            """A patient attacker: noise 0.1 on only ``share`` of each window's rows."""

            def shift(x: np.ndarray) -> np.ndarray:
                chosen = rng.random(len(x)) < share
                noisy = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
                return np.where(chosen[:, None], noisy, x)

            return shift

        for share in (0.05, 0.1, 0.25):
            shifts[f"adaptive: noise 0.1 on {share:.0%} of the rows only"] = diluted(share)
        varying = ~detector.categorical_

        def hidden(x: np.ndarray) -> np.ndarray:
            """One who also knows which pixels the detector tests as categories: noise 0.1
            on 25% of the rows, on the pixels the reference shows varying only."""
            chosen = rng.random(len(x)) < 0.25
            noisy = np.clip(x + rng.normal(0, 0.1, x.shape) * varying, 0, 1)
            return np.where(chosen[:, None], noisy, x)

        shifts["adaptive: noise 0.1 on 25% of the rows, varying pixels only"] = hidden
    count = 10 if quick else 40
    out = []
    for window in (50, 100, 200):
        for name, shift in shifts.items():
            alarms = 0
            for _ in range(count):
                pool = low_classes if name.startswith("class prior") else np.arange(len(d.x_eval))
                rows = shift(d.x_eval[rng.choice(pool, size=window, replace=False)])
                alarms += detector.test(rows, model.predict_proba(rows)).drifted
            row = {"shift": name, "window": window, "alarm_rate": alarms / count, "windows": count}
            out.append(row)
            if progress is not None:
                progress(json.dumps(row))
    return out


def _strip(d: Any, quick: bool, progress: Callable[[str], None] | None) -> list[dict[str, Any]]:
    """The STRIP guard on an MLP trained on each poisoned ``fit``: clean inputs to blend
    with, and the threshold at 1%, from ``tune``; measured on triggered and clean ``eval``
    inputs (32 blends each)."""
    from atlasguard.data.poison import _surrogate
    from atlasguard.models import poisoning
    from atlasguard.runtime.detectors import StripDetector

    attacks = {
        "BadNets 3x3 corner, 10%, target 0": poisoning.badnets(
            d.x_fit, d.y_fit, rate=0.1, target=0
        ),
        "blended alpha 0.2, 5%, target 7": poisoning.blended(
            d.x_fit, d.y_fit, rate=0.05, target=7, alpha=0.2, random_state=11
        ),
    }
    if not quick:
        attacks["BadNets 2x2 top-left, 2%, target 5"] = poisoning.badnets(
            d.x_fit, d.y_fit, rate=0.02, target=5, size=2, row=0, col=0
        )
        attacks["adaptive against STRIP: BadNets corner 10% + 10% cover blends, target 0"] = (
            poisoning.strip_adaptive(d.x_fit, d.y_fit, rate=0.1, target=0, cover=1.0)
        )
    out = []
    for name, attack in attacks.items():
        model = _surrogate(attack.x, attack.y, 0)
        strip = StripDetector(model.predict_proba, samples=32).fit(d.x_tune)
        strip.calibrate(d.x_tune, fpr=0.01)
        others = d.x_eval[d.y_eval != attack.target]
        if attack.trigger is None:  # pragma: no cover - every attack here has one
            continue
        triggered = poisoning.apply_trigger(others, attack.trigger, attack.alpha)
        row = {
            "trigger": name,
            "detection": round(float(strip.predict(triggered).mean()), 3),
            "false_rejection": round(float(strip.predict(d.x_eval).mean()), 3),
            "fpr": 0.01,
            "reference": "an attacker who knows STRIP: a detection near 0 is the finding"
            if name.startswith("adaptive")
            else "issue 14: ART STRIP 3% at 1% false rejection; target >= 95%",
        }
        out.append(row)
        if progress is not None:
            progress(json.dumps(row))
    return out


HARDENING_REFERENCES = {
    "standard": "issue 14: standard training 0.02",
    "pgd": "issue 14: ART AdversarialTrainer 0.55 (23 s); Madry PGD training 0.59 (40 s); "
    "target >= 0.65 at clean >= 0.97",
    "trades": "",
    "distillation": "known to fail against adaptive attacks (Carlini & Wagner, 2016)",
}


def harden_digits(d: Any, settings: Any, *, width: int = 32) -> tuple[Any, Any]:
    """``hardening.small_cnn(8, width)`` hardened as ``settings`` say on digits' ``fit``,
    stopped on ``tune`` (``eval`` is left for attacks); the network and its report."""
    from atlasguard.models import hardening

    return hardening.harden(
        hardening.small_cnn(8, width=width),
        d.x_fit,
        d.y_fit,
        d.x_tune,
        d.y_tune,
        settings=settings,
        shape=(1, 8, 8),
    )


def _hardening(d: Any, progress: Callable[[str], None] | None) -> list[dict[str, Any]]:
    """Each method on the same small CNN: trained on ``fit``, stopped on ``tune``, measured
    on ``eval``."""
    try:
        import torch
    except ImportError:
        return []
    from atlasguard.models import hardening

    torch.set_num_threads(2)
    out = []
    for method in ("standard", "pgd", "trades", "distillation"):
        net, report = harden_digits(d, hardening.HardeningSettings(method=method))
        robust = hardening.robustness(net, d.x_eval, d.y_eval, shape=(1, 8, 8))
        row = {
            "method": method,
            "robustness": robust,
            "seconds": report.seconds,
            "best_epoch": report.best_epoch,
            "reference": HARDENING_REFERENCES[method],
        }
        out.append(row)
        if progress is not None:
            progress(json.dumps(row))
    return out
