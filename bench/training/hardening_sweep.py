"""Where PGD adversarial training's robust accuracy is bound: settings on a design split.

    python bench/training/hardening_sweep.py

Trained on ``fit``, stopped on the first half of ``tune``, scored (PGD-40 at 0.2) on
the second half; ``eval`` is not touched. One line per setting, with its training time
and the epoch kept.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from atlasguard.models import hardening
from atlasguard.models.data import digits_splits

SETTINGS: dict[str, dict[str, Any]] = {
    "PGD-7, 40 epochs (default)": {"method": "pgd"},
    "TRADES beta 6": {"method": "trades"},
    "train epsilon 1.5x": {"method": "pgd", "train_epsilon": 0.3},
    "train epsilon 1.0x": {"method": "pgd", "train_epsilon": 0.2},
    "PGD-10": {"method": "pgd", "steps": 10},
    "lr 2e-3, batch 128": {"method": "pgd", "learning_rate": 2e-3, "batch_size": 128},
    "lr 2e-3, batch 128, 70 epochs": {
        "method": "pgd",
        "learning_rate": 2e-3,
        "batch_size": 128,
        "epochs": 70,
    },
    "PGD-2, 120 epochs": {"method": "pgd", "steps": 2, "epochs": 120},
    "PGD-3, 90 epochs": {"method": "pgd", "steps": 3, "epochs": 90},
    "PGD-7, 80 epochs": {"method": "pgd", "epochs": 80},
}


def main() -> None:
    print("command: python bench/training/hardening_sweep.py")
    torch.set_num_threads(2)
    d = digits_splits()
    half = len(d.x_tune) // 2
    for name, values in SETTINGS.items():
        settings = hardening.HardeningSettings(**values)
        net, report = hardening.harden(
            hardening.small_cnn(8),
            d.x_fit,
            d.y_fit,
            d.x_tune[:half],
            d.y_tune[:half],
            settings=settings,
            shape=(1, 8, 8),
        )
        scored = hardening.robustness(
            net, d.x_tune[half:], d.y_tune[half:], shape=(1, 8, 8), epsilons=(0.2,)
        )
        row = {
            "setting": name,
            "seconds": round(report.seconds, 1),
            "best_epoch": report.best_epoch,
        }
        print(json.dumps(row | scored), flush=True)


if __name__ == "__main__":
    main()
