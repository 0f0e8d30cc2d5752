"""Backdoor search and fairness, shortened: a planted trigger is found on its label, a clean
model is not flagged; the CLI on an ONNX model (black box) and on a table with groups."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from atlasguard._cli.main import run  # noqa: E402
from atlasguard.models import poisoning  # noqa: E402
from atlasguard.models.cnn import train_cnn  # noqa: E402
from atlasguard.models.data import digits_splits  # noqa: E402
from atlasguard.models.hardening import export_onnx  # noqa: E402
from atlasguard.models.validation import neural_cleanse  # noqa: E402


@pytest.fixture(scope="module")
def models():
    d = digits_splits()
    attack = poisoning.badnets(d.x_fit, d.y_fit, rate=0.1, target=6, size=3, row=5, col=0)
    return (
        d,
        train_cnn(attack.x, attack.y, epochs=20, random_state=3),
        train_cnn(d.x_fit, d.y_fit, epochs=20, random_state=4),
    )


def _as_files(model, d, folder: Path) -> tuple[Path, Path]:
    """``model`` as ONNX, and ``tune`` as the held-out data, as a user hands them over."""
    path, data = folder / "model.onnx", folder / "val.npz"
    export_onnx(model.net, path, (1, 8, 8))
    np.savez(data, x=d.x_tune, y=d.y_tune)
    return path, data


def test_the_planted_label_is_found_and_the_clean_model_passes(models) -> None:
    d, backdoored, clean = models
    found = neural_cleanse(backdoored.net, d.x_tune, shape=(1, 8, 8), classes=10, steps=300)
    assert found.flagged and found.label == 6
    quiet = neural_cleanse(clean.net, d.x_tune, shape=(1, 8, 8), classes=10, steps=300)
    assert not quiet.flagged and quiet.anomaly_index < found.anomaly_index
    # both figures must hold: the planted label's mask is under half the median label's
    assert found.ratio < found.ratio_threshold and found.anomaly_index > found.threshold
    assert quiet.ratio > found.ratio


def test_cli_validate_an_onnx_model_black_box(models, tmp_path: Path, capsys) -> None:
    d, backdoored, _ = models
    path, data = _as_files(backdoored, d, tmp_path)
    code = run(["validate", str(path), "--data", str(data), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["backdoor"]["flagged"] and report["backdoor"]["label"] == 6
    assert report["accuracy"] > 0.9


def test_cli_fairness_across_a_group_column(models, tmp_path: Path, capsys) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    group = rng.integers(0, 2, 400)
    x = rng.normal(size=(400, 3)) + group[:, None] * 0.8  # the groups differ in the inputs
    y = (x[:, 0] + rng.normal(0, 0.5, 400) > 0.4).astype(int)
    model = LogisticRegression().fit(x, y)
    path = tmp_path / "lr.onnx"
    path.write_bytes(
        to_onnx(model, x[:1].astype(np.float32), options={"zipmap": False}).SerializeToString()
    )
    data = tmp_path / "people.csv"
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "group", "label"])
        w.writerows([*row, g, t] for row, g, t in zip(x.round(4), group, y, strict=True))
    code = run(
        [
            "validate",
            str(path),
            "--data",
            str(data),
            "--sensitive",
            "group",
            "--no-backdoor",
            "--format",
            "json",
            "--max-parity",
            "0.1",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and not report["fairness"]["passed"]
    assert report["fairness"]["demographic_parity_difference"] > 0.1
    assert (
        run(
            [
                "validate",
                str(path),
                "--data",
                str(data),
                "--sensitive",
                "group",
                "--no-backdoor",
                "--max-parity",
                "1",
                "--max-odds",
                "1",
            ]
        )
        == 0
    )


def test_cli_robustness_of_an_onnx_model_with_a_threshold(models, tmp_path: Path, capsys) -> None:
    d, _, clean = models
    path, data = _as_files(clean, d, tmp_path)
    args = ["validate", str(path), "--data", str(data), "--no-backdoor", "--format", "json"]
    args += ["--epsilon", "0.05", "--epsilon", "0.2", "--robust-rows", "60"]
    code = run([*args, "--min-robust", "0.0"])
    report = json.loads(capsys.readouterr().out)
    measured = report["robustness"]["accuracy"]
    assert code == 0 and report["robustness"]["rows"] == 60
    assert set(measured) == {"clean", "fgsm@0.05", "pgd40@0.05", "fgsm@0.2", "pgd40@0.2"}
    assert measured["clean"] >= measured["pgd40@0.05"] >= measured["pgd40@0.2"]
    assert measured["pgd40@0.2"] < 0.5  # a plainly trained CNN breaks at 0.2
    assert run([*args, "--min-robust", "0.9"]) == 1  # the same model fails a stated floor
    assert not json.loads(capsys.readouterr().out)["robustness"]["passed"]
