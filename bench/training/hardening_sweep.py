"""Where PGD adversarial training's robust accuracy is bound: settings on a design split.

    python bench/training/hardening_sweep.py [SUBSTRING ...]

(only the settings whose names contain a SUBSTRING, when given).

Trained on ``fit``, stopped on the first half of ``tune``, scored (PGD-40 at 0.2) on
the second half; ``eval`` is not touched. One line per setting, with its training time
and the epoch kept.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch

from atlasguard.models import hardening
from atlasguard.models.data import digits_splits

SETTINGS: dict[str, dict[str, Any]] = {
    "PGD-7, 40 epochs, one-cycle lr 1e-2 (default)": {"method": "pgd"},
    "the same, flat lr 1e-3 (the default before)": {
        "method": "pgd",
        "schedule": "constant",
        "learning_rate": 1e-3,
    },
    "one-cycle lr 5e-3": {"method": "pgd", "learning_rate": 5e-3},
    "one-cycle lr 3e-3": {"method": "pgd", "learning_rate": 3e-3},
    "train epsilon 1.5x": {"method": "pgd", "train_epsilon": 0.3},
    "train epsilon 1.0x": {"method": "pgd", "train_epsilon": 0.2},
    "50 epochs": {"method": "pgd", "epochs": 50},
    "batch 128, 60 epochs": {"method": "pgd", "batch_size": 128, "epochs": 60},
    "TRADES beta 6": {"method": "trades"},
    "standard": {"method": "standard"},
    "distillation": {"method": "distillation"},
}


def main() -> None:
    print("command: python bench/training/hardening_sweep.py " + " ".join(sys.argv[1:]))
    torch.set_num_threads(2)
    d = digits_splits()
    half = len(d.x_tune) // 2
    chosen = [n for n in SETTINGS if not sys.argv[1:] or any(a in n for a in sys.argv[1:])]
    for name in chosen:
        values = SETTINGS[name]
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
