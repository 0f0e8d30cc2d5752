"""Black-box robustness (finite differences through ONNX Runtime) next to the white-box
measure (autograd) on the same small CNNs: a plain one and a PGD-trained one.

    python bench/training/blackbox_agreement.py [--rows 200]

Trained on ``fit`` (6 epochs), stopped on ``tune``, both measures on the first rows of
``eval``: clean, FGSM and PGD-40 at epsilon 0.1 and 0.2.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from atlasguard.models import hardening
from atlasguard.models.blackbox import blackbox_robustness
from atlasguard.models.data import digits_splits
from atlasguard.models.onnx_scores import onnx_scores
from atlasguard.models.training import harden_digits

SHAPE = (1, 8, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    rows = parser.parse_args().rows
    print(f"command: python bench/training/blackbox_agreement.py --rows {rows}")
    torch.set_num_threads(2)
    d = digits_splits()
    x, y = d.x_eval[:rows], d.y_eval[:rows]
    for method in ("standard", "pgd"):
        settings = hardening.HardeningSettings(method=method, epsilon=0.2, epochs=6, steps=3)
        net, _ = harden_digits(d, settings, width=16)
        path = Path(tempfile.mkdtemp()) / "model.onnx"
        hardening.export_onnx(net, path, SHAPE)
        white = hardening.robustness(net, x, y, shape=SHAPE, epsilons=(0.1, 0.2))
        start = time.perf_counter()
        black = blackbox_robustness(
            onnx_scores(path), x, y, epsilons=(0.1, 0.2), steps=40, max_rows=rows
        )
        seconds = time.perf_counter() - start
        print(f"{method:<9} autograd           {white}")
        print(f"{method:<9} finite differences {black} ({seconds:.1f} s)")


if __name__ == "__main__":
    main()
