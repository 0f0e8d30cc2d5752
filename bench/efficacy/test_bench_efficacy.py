"""``make bench``: the query monitor's efficacy on digits (bench/efficacy/monitor.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.bench
def test_query_monitor_efficacy() -> None:
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("bench_monitor", HERE / "monitor.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = HERE.parents[0] / "results" / "efficacy-monitor.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = {r["attack"]: r for r in module.main(["--output", str(out)])}
    simba = rows["SimBA eps=0.2"]
    assert simba["detection_rate"] >= 0.9 and simba["queries_to_detection"] <= 5  # issue 13
    assert rows["random-input extraction, 1500 answers"]["detection_rate"] == 1.0
    benign = next(r for name, r in rows.items() if name.startswith("benign"))
    assert benign["false_positive_rate"] <= 0.05


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
