"""``atlasguard bench efficacy --quick``: the small efficacy run of `make test`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("scipy")

KEYS = {
    "attack",
    "defence",
    "attack_success_without",
    "attack_success_with",
    "clean_cost",
    "detection_rate",
    "false_positive_rate",
    "queries_to_detection",
}


def test_bench_efficacy_quick_writes_rows_table_and_plot(tmp_path: Path, cli: Any) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "efficacy.json"
    result = cli("bench", "efficacy", "--quick", "--output", str(out))
    assert result.exit_code == 0, result.stderr
    assert "| attack | defence |" in result.stdout and "command: atlasguard bench efficacy" in (
        result.stdout
    )
    data = json.loads(out.read_text())
    assert all(set(r) == KEYS for r in data["rows"])
    rows = {(r["attack"], r["defence"]): r for r in data["rows"]}
    assert len(rows) == len(data["rows"])  # one row per attack and defence
    monitor = "query monitor (default [controls.monitor])"
    simba = rows["SimBA eps=0.2", monitor]
    assert simba["attack_success_with"] == 0.0 and simba["queries_to_detection"] <= 5
    benign = next(r for (name, _), r in rows.items() if name.startswith("benign clients"))
    assert benign["false_positive_rate"] == 0.0
    pgd = rows[
        "PGD-40 eps=0.2 white box on the logistic regression",
        "input detectors (default [controls.detectors]: mahalanobis)",
    ]
    assert pgd["detection_rate"] >= 0.9 and pgd["false_positive_rate"] <= 0.05
    defences = {defence for _, defence in rows}
    for part in ("input restoration", "soft-vote ensemble", "2-of-2 consensus", "output policy"):
        assert any(d.startswith(part) for d in defences), part
    assert data["cost_us"]["p50"] > 0
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
