"""Black-box robustness (finite differences through ONNX Runtime) against the white-box
measure (autograd) on the same networks: the two agree, on a plain and a hardened CNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from atlasguard.models import hardening  # noqa: E402
from atlasguard.models.blackbox import blackbox_robustness  # noqa: E402
from atlasguard.models.data import digits_splits  # noqa: E402
from atlasguard.models.onnx_scores import onnx_scores  # noqa: E402
from atlasguard.models.training import harden_digits  # noqa: E402

SHAPE = (1, 8, 8)


@pytest.mark.parametrize("method", ["standard", "pgd"])
def test_finite_differences_find_what_autograd_finds(method: str, tmp_path: Path) -> None:
    d = digits_splits()
    settings = hardening.HardeningSettings(method=method, epsilon=0.2, epochs=6, steps=3)
    net, _ = harden_digits(d, settings, width=16)
    path = tmp_path / "m.onnx"
    hardening.export_onnx(net, path, SHAPE)
    rows, labels = d.x_eval[:120], d.y_eval[:120]
    white = hardening.robustness(net, rows, labels, shape=SHAPE, epsilons=(0.1, 0.2))
    black = blackbox_robustness(
        onnx_scores(path), rows, labels, epsilons=(0.1, 0.2), steps=20, max_rows=120
    )
    assert black["clean"] == pytest.approx(white["clean"], abs=0.01)
    for key in ("fgsm@0.1", "fgsm@0.2"):
        assert abs(black[key] - white[key]) <= 0.06, (key, black, white)
    # PGD-20 through finite differences is no weaker than a tenth above autograd's PGD-40
    for eps in ("0.1", "0.2"):
        assert black[f"pgd20@{eps}"] <= white[f"pgd40@{eps}"] + 0.1, (eps, black, white)
    assert black["pgd20@0.2"] <= black["fgsm@0.2"] + 0.02


def test_a_model_that_ignores_its_input_is_not_fooled() -> None:
    def constant(x: np.ndarray) -> np.ndarray:
        return np.tile([0.9, 0.1], (len(x), 1))

    out = blackbox_robustness(constant, np.random.default_rng(0).random((20, 4)), np.zeros(20))
    assert out == {
        "clean": 1.0,
        "fgsm@0.1": 1.0,
        "pgd40@0.1": 1.0,
        "fgsm@0.2": 1.0,
        "pgd40@0.2": 1.0,
    }
