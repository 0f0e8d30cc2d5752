"""Hardening on digits, shortened: adversarial training buys robustness a plain model does
not have, and the ONNX it writes answers as the network does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from atlasguard._cli.main import run  # noqa: E402
from atlasguard.models import hardening  # noqa: E402
from atlasguard.models.data import digits_splits  # noqa: E402

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits():
    return digits_splits()


def _fit(net, d, settings: hardening.HardeningSettings):
    """``net`` hardened on ``fit``, stopped on ``tune``."""
    return hardening.harden(
        net, d.x_fit, d.y_fit, d.x_tune, d.y_tune, settings=settings, shape=SHAPE
    )


def _train(method: str, d, epochs: int = 12):
    settings = hardening.HardeningSettings(method=method, epsilon=0.2, epochs=epochs, steps=3)
    return _fit(hardening.small_cnn(8, width=16), d, settings)


def test_adversarial_training_is_more_robust_than_plain_training(digits) -> None:
    plain, _ = _train("standard", digits)
    hard, report = _train("pgd", digits)
    before = hardening.robustness(plain, digits.x_eval, digits.y_eval, shape=SHAPE, epsilons=(0.2,))
    after = hardening.robustness(hard, digits.x_eval, digits.y_eval, shape=SHAPE, epsilons=(0.2,))
    assert after["pgd40@0.2"] > before["pgd40@0.2"] + 0.2
    assert after["clean"] >= 0.85
    assert report.best_epoch in [e for e, _, _ in report.history]
    best = next(r for e, _, r in report.history if e == report.best_epoch)
    assert report.validation_robust == best


def test_onnx_export_answers_like_the_network(digits, tmp_path: Path) -> None:
    net, _ = _train("trades", digits, epochs=3)
    path = tmp_path / "hard.onnx"
    hardening.export_onnx(net, path, SHAPE)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rows = digits.x_eval[:50].astype(np.float32)
    (probabilities,) = session.run(None, {"input": rows})
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(rows).reshape(-1, *SHAPE)), dim=1).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def test_cli_writes_model_and_report(digits, tmp_path: Path) -> None:
    data = tmp_path / "train.npz"
    np.savez(data, x=digits.x_fit, y=digits.y_fit)
    model, report = tmp_path / "m.onnx", tmp_path / "r.json"
    code = run(
        [
            "harden",
            str(data),
            "-o",
            str(model),
            "--method",
            "pgd",
            "--epochs",
            "3",
            "--epsilon",
            "0.1",
            "--report",
            str(report),
        ]
    )
    assert code == 0 and model.stat().st_size > 0
    body = json.loads(report.read_text())
    assert set(body["robustness"]) == {"clean", "fgsm@0.05", "pgd40@0.05", "fgsm@0.1", "pgd40@0.1"}
    assert body["test_rows"] == round(len(digits.x_fit) * 0.15 + 0.5) or body["test_rows"] > 100


def test_cli_refuses_unlabelled_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((20, 4)))
    assert run(["harden", str(data), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "needs labels" in capsys.readouterr().err


def test_a_network_with_batch_norm_is_averaged_and_trained(digits) -> None:
    """Weight averaging takes a batch norm's float statistics and copies its counter (an
    integer tensor cannot be averaged in place)."""
    from torch import nn

    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 64, 10),
    )
    settings = hardening.HardeningSettings(method="pgd", epochs=2, steps=1)
    trained, report = _fit(net, digits, settings)
    norm = trained[1]
    batches = -(-len(digits.x_fit) // settings.batch_size)
    # copied, not averaged: two training forwards (clean and PGD) per batch, two epochs
    assert int(norm.num_batches_tracked) == 2 * 2 * batches
    assert torch.isfinite(norm.running_var).all() and float(norm.running_var.min()) > 0
    assert report.validation_clean > 0.5


def test_the_one_cycle_schedule_ends_near_zero(digits) -> None:
    """The learning rate rises to its peak and is annealed: the last steps barely move the
    weights, so the epoch kept is a settled one."""
    seen: list[float] = []
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    settings = hardening.HardeningSettings(method="standard", epochs=3)
    try:
        torch.optim.Adam.step = spy  # type: ignore[method-assign]
        _, report = _fit(hardening.small_cnn(8, width=8), digits, settings)
    finally:
        torch.optim.Adam.step = original  # type: ignore[method-assign]
    assert max(seen) == pytest.approx(settings.learning_rate, rel=0.05)
    assert seen[0] < settings.learning_rate / 10 and seen[-1] < settings.learning_rate / 1000
    assert report.epochs_run == 3


def test_cli_trains_on_columns_in_different_units(tmp_path: Path) -> None:
    """Wine's columns run from 0.1 to 1,680: the MLP's standardizing layer lets it learn
    (without it, this model answered one class: 0.33), and the ONNX model written takes
    the raw rows."""
    import csv

    from sklearn.datasets import load_wine

    wine = load_wine()
    data = tmp_path / "wine.csv"
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*wine.feature_names, "label"])
        writer.writerows(
            [*row, int(label)] for row, label in zip(wine.data, wine.target, strict=True)
        )
    model, report = tmp_path / "wine.onnx", tmp_path / "r.json"
    args = ["harden", str(data), "--labels", "label", "-o", str(model), "--report", str(report)]
    assert run([*args, "--method", "standard", "--epochs", "15", "--epsilon", "0.05"]) == 0
    assert json.loads(report.read_text())["robustness"]["clean"] >= 0.85
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {"input": wine.data.astype(np.float32)})
    assert float((probabilities.argmax(axis=1) == wine.target).mean()) >= 0.85
