"""``make bench``: the runtime defences on digits (bench/efficacy/runtime_defences.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.bench
def test_runtime_defences_efficacy() -> None:
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("bench_runtime", HERE / "runtime_defences.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = HERE.parents[0] / "results" / "efficacy-runtime.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = module.main(["--output", str(out)])
    rows = {(r["attack"], r["defence"]): r for r in result}
    monitor = "query monitor (default [controls.monitor])"
    simba = rows["SimBA eps=0.2", monitor]
    assert simba["detection_rate"] >= 0.9 and simba["queries_to_detection"] <= 5  # issue 13
    assert rows["random-input extraction, 1500 answers", monitor]["detection_rate"] == 1.0
    benign = next(r for (name, _), r in rows.items() if name.startswith("benign"))
    assert benign["false_positive_rate"] <= 0.05
    # issue 13: PGD eps=0.2 detected at >= 90% where the detectors run at 5% FPR
    pgd = rows[
        "PGD-40 eps=0.2 white box on the logistic regression",
        "input detectors (fpr = 0.05: mahalanobis)",
    ]
    assert pgd["detection_rate"] >= 0.9 and pgd["false_positive_rate"] <= 0.08
    # issue 13: a one-sensor attack on a two-view consensus is flagged or outvoted
    consensus = next(r for (name, _), r in rows.items() if name.startswith("PGD-40 eps=0.2 on one"))
    assert consensus["detection_rate"] >= 0.95 and consensus["clean_cost"] <= 0.01


@pytest.mark.bench
def test_input_restoration_measured() -> None:
    """Issue 13's restoration target is measured (and, on digits, not met): the run must
    complete and choose its setting on the tuning split."""
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("bench_restoration", HERE / "restoration.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main()
    assert result["tune"]["rows"][result["chosen"]]["clean_cost_points"] <= 2.0


@pytest.mark.bench
def test_detector_defaults_are_the_ones_chosen_on_the_tuning_split() -> None:
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("bench_tune_det", HERE / "tune_detectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main()["shipped"]
