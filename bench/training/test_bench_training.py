"""``make bench``: the training-time defences on digits (``atlasguard bench training``)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ANCHORS = Path(os.environ.get("ATLASGUARD_ANCHORS_VENV", REPO / ".anchors-venv"))


def _art(result: Any) -> None:
    """Run ART as shipped (``art_anchor.py`` in the anchors venv) on the bench's BadNets set
    and digits split, and add its rows beside atlasguard's: the same data, the same run."""
    python = ANCHORS / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no anchors venv at {ANCHORS} (make anchors)")
    from atlasguard.models import hardening, poisoning
    from atlasguard.models.data import digits_splits

    d = digits_splits()
    attack = poisoning.badnets(d.x_fit, d.y_fit, rate=0.1, target=0)
    assert attack.trigger is not None
    others = d.x_eval[d.y_eval != 0]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        np.savez(
            work / "in.npz",
            x_poison=attack.x,
            y_poison=attack.y,
            rows=attack.rows,
            x_triggered=poisoning.apply_trigger(others, attack.trigger, attack.alpha),
            x_clean=d.x_eval,
            x_tune=d.x_tune,
            x_fit=d.x_fit,
            y_fit=d.y_fit,
        )
        done = subprocess.run(
            [str(python), str(HERE / "art_anchor.py"), str(work / "in.npz"), str(work)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0 and "No module named 'art'" in done.stderr:
            pytest.skip("ART is not in the anchors venv (make bench installs bench/anchors-ml.txt)")
        assert done.returncode == 0, done.stderr[-2000:]
        art = json.loads((work / "art.json").read_text())
        import torch

        net = hardening.small_cnn(8)
        weights = np.load(work / "art_pgd.npz")
        net.load_state_dict({k: torch.from_numpy(weights[k]) for k in weights.files})
    task = "BadNets 3x3 corner, 10%, all-to-one (target 0)"
    for name in ("ActivationDefence", "SpectralSignatureDefense"):
        row = art[name]
        result.rows.append(
            {
                "task": task,
                "defence": f"anchor: ART {name} as shipped (PyTorch MLP, its defaults)",
                **{k: row[k] for k in ("precision", "recall", "flagged", "true")},
                "attack_success": None,
                "seconds": round(row["seconds"], 1),
                "reference": "",
            }
        )
    result.strip.append(
        {
            "trigger": "BadNets 3x3 corner, 10%, target 0: anchor ART STRIP (20 blends)",
            "detection": art["STRIP"]["detection"],
            "false_rejection": art["STRIP"]["false_rejection"],
            "fpr": 0.01,
            "reference": "ART as shipped, calibrated on the same tune rows",
        }
    )
    trained = art["AdversarialTrainer"]
    result.hardening.append(
        {
            "method": "anchor: ART AdversarialTrainer (PGD-7, ratio 0.5, 40 epochs)",
            "robustness": hardening.robustness(net, d.x_eval, d.y_eval, shape=(1, 8, 8)),
            "seconds": round(trained["seconds"], 1),
            "best_epoch": trained["epochs"] - 1,
            "reference": "same CNN, same data, same attack",
        }
    )


@pytest.mark.bench
@pytest.mark.timeout(5400)
def test_training_defences() -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("cleanlab")
    from atlasguard.models.training import render_table, run

    result = run(progress=print)
    result.command = "make bench (bench/training/test_bench_training.py)"
    _art(result)
    print(render_table(result))
    out = HERE.parents[0] / "results" / "training.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.to_json())
    rows = {(r["task"], r["defence"]): r for r in result.rows}
    main = rows[
        "BadNets 3x3 corner, 10%, all-to-one (target 0)", "atlasguard poison (no rate given)"
    ]
    assert main["precision"] >= 0.95 and main["recall"] >= 0.95  # issue 14's target
    quiet = [r for r in result.rows if r["true"] == 0]
    assert quiet and all(r["flagged"] == 0 for r in quiet)
    ours = rows["10% flipped labels", "atlasguard label-error (cleanlab on out-of-fold LR)"]
    anchor = next(r for (t, d), r in rows.items() if t == "10% flipped labels" and "anchor" in d)
    # issue 14: at least cleanlab's figures; the two differ only in fold draws
    assert ours["recall"] >= anchor["recall"] - 0.03
    assert ours["precision"] >= anchor["precision"] - 0.03
    for name in ("ActivationDefence", "SpectralSignatureDefense"):
        art = next(r for r in result.rows if name in r["defence"])
        assert main["precision"] > art["precision"] and main["recall"] >= art["recall"]
    art_strip = next(r for r in result.strip if "anchor" in r["trigger"])
    assert result.strip[0]["detection"] > art_strip["detection"]
    strip = result.strip[0]  # BadNets corner: issue 14 asks >= 95% at 1% false rejection
    assert strip["detection"] >= 0.95 and strip["false_rejection"] <= 0.02
    clean_windows = [r for r in result.drift if r["shift"].startswith("none")]
    assert all(r["alarm_rate"] <= 0.05 for r in clean_windows)  # issue 14: false alarms <= 5%
    if result.backdoor:  # with torch; issue 14: >= 9/10 found on the right label, <= 1/10 clean
        bad = [r for r in result.backdoor if r["planted"] != "-"]
        assert sum(str(r["label"]) == r["planted"] for r in bad) >= 9
        assert sum(r["flagged"] for r in result.backdoor if r["planted"] == "-") <= 1
    if result.hardening:  # with torch
        by = {h["method"]: h for h in result.hardening}
        pgd = by["pgd"]
        anchor = next(h for k, h in by.items() if k.startswith("anchor"))
        # issue 14: >= 0.65 under PGD-40 at 0.2, clean >= 0.97, within 2x ART's time
        assert pgd["robustness"]["pgd40@0.2"] >= 0.65 and pgd["robustness"]["clean"] >= 0.97
        assert pgd["seconds"] <= 2 * anchor["seconds"]
        assert pgd["robustness"]["pgd40@0.2"] >= anchor["robustness"]["pgd40@0.2"]
