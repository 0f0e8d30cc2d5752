"""The Adversarial Robustness Toolbox as shipped, on the data the training bench hands it.

Runs in ``.anchors-venv`` (``make bench`` installs ``bench/anchors-ml.txt`` there);
atlasguard never imports ART. ``python art_anchor.py IN.npz OUT_DIR`` reads the
bench's arrays and writes ``OUT_DIR/art.json`` (and ``OUT_DIR/art_pgd.npz``,
the weights of ART's adversarially trained CNN, which the bench attacks with
the same PGD-40 it uses on atlasguard's models). Settings are ART's defaults
unless stated; the architectures are the ones the bench uses for atlasguard.

Arrays in IN.npz: ``x_poison``, ``y_poison``, ``rows`` (the poisoned rows) for
the poison detectors and STRIP; ``x_triggered`` (held-out inputs with the
trigger), ``x_clean`` (held-out clean inputs), ``x_tune`` (STRIP's clean
reference); ``x_fit``, ``y_fit`` for adversarial training.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def small_cnn(width: int = 32) -> nn.Module:
    """atlasguard.models.hardening.small_cnn(8), written out (this venv has no atlasguard)."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * width * 16, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def classifier(net: nn.Module, shape: tuple[int, ...]) -> object:
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=net,
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(net.parameters(), lr=1e-3),
        input_shape=shape,
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )


def score(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float | int]:
    hits = len(np.intersect1d(flagged, truth))
    return {
        "precision": round(hits / len(flagged), 3) if len(flagged) else 0.0,
        "recall": round(hits / len(truth), 3) if len(truth) else 1.0,
        "flagged": len(flagged),
        "true": len(truth),
    }


def main(source: Path, out: Path) -> None:
    from art.attacks.evasion import ProjectedGradientDescent
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense
    from art.defences.trainer import AdversarialTrainer
    from art.defences.transformer.poisoning import STRIP

    torch.set_num_threads(2)
    torch.manual_seed(0)
    np.random.seed(0)
    data = dict(np.load(source))
    x, y, rows = data["x_poison"].astype(np.float32), data["y_poison"], data["rows"]
    onehot = np.eye(10, dtype=np.float32)[y]
    results: dict[str, object] = {}

    # the poisoned set's model: a small MLP, as ART's PyTorch examples train one
    mlp = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    poisoned = classifier(mlp, (64,))
    poisoned.fit(x, onehot, batch_size=64, nb_epochs=60, verbose=False)  # type: ignore[attr-defined]

    start = time.perf_counter()
    _, is_clean = ActivationDefence(poisoned, x, onehot).detect_poison(
        nb_clusters=2, nb_dims=10, reduce="PCA"
    )
    flagged = np.flatnonzero(np.asarray(is_clean) == 0)
    results["ActivationDefence"] = {**score(flagged, rows), "seconds": time.perf_counter() - start}

    start = time.perf_counter()
    _, is_clean = SpectralSignatureDefense(poisoned, x, onehot).detect_poison()
    flagged = np.flatnonzero(np.asarray(is_clean) == 0)
    results["SpectralSignatureDefense"] = {
        **score(flagged, rows),
        "seconds": time.perf_counter() - start,
    }

    start = time.perf_counter()
    # STRIP takes entropies of what predict returns: the same MLP with its softmax
    probabilities = classifier(nn.Sequential(mlp, nn.Softmax(dim=1)), (64,))
    guarded = STRIP(probabilities)(num_samples=20, false_acceptance_rate=0.01)
    guarded.mitigate(data["x_tune"].astype(np.float32))  # type: ignore[attr-defined]

    def refused(inputs: np.ndarray) -> float:
        answers = guarded.predict(inputs.astype(np.float32))  # type: ignore[attr-defined]
        return float(np.mean(~np.any(answers, axis=1)))  # ART abstains with a row of zeros

    results["STRIP"] = {
        "detection": round(refused(data["x_triggered"]), 3),
        "false_rejection": round(refused(data["x_clean"]), 3),
        "seconds": time.perf_counter() - start,
    }

    # AdversarialTrainer: the bench's CNN, PGD at eps 0.2 (7 steps of 2.5 eps / 7, random
    # start), half of each batch adversarial (ratio 0.5), 40 epochs as atlasguard's default
    torch.manual_seed(0)
    net = small_cnn()
    model = classifier(net, (1, 8, 8))
    attack = ProjectedGradientDescent(
        model, eps=0.2, eps_step=2.5 * 0.2 / 7, max_iter=7, num_random_init=1, verbose=False
    )
    start = time.perf_counter()
    trainer = AdversarialTrainer(model, attack, ratio=0.5)
    x_fit = data["x_fit"].astype(np.float32).reshape(-1, 1, 8, 8)
    trainer.fit(x_fit, np.eye(10, dtype=np.float32)[data["y_fit"]], nb_epochs=40, batch_size=64)
    results["AdversarialTrainer"] = {"seconds": time.perf_counter() - start, "epochs": 40}
    weights = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    np.savez(out / "art_pgd.npz", **weights)
    (out / "art.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
