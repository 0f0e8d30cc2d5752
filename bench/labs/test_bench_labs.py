"""``make bench``: every lab in full, with its figures, and the two-minute target (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
COMMAND = "make bench (bench/labs/test_bench_labs.py); one lab: atlasguard labs run NAME"


@pytest.mark.bench
@pytest.mark.timeout(1800)
def test_every_lab_in_full() -> None:
    pytest.importorskip("sklearn")
    from atlasguard.labs import LABS, render

    out = []
    for lab in LABS.values():
        result = lab.run(False)
        print("\n" + render(lab, result))
        out.append({"lab": lab.name, **result.to_dict()})
    print("\n| lab | figure | unprotected | protected | seconds |")
    print("|---|---|---|---|---|")
    for row in out:
        for f in row["figures"]:
            print(
                f"| {row['lab']} | {f['what']} | {f['without']:.3g} | {f['with']:.3g} "
                f"| {row['seconds']} |"
            )
    print(f"\ncommand: {COMMAND}")
    path = HERE.parents[0] / "results" / "labs.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"command": COMMAND, "labs": out}, indent=1))
    slow = [(r["lab"], r["seconds"]) for r in out if r["seconds"] > 120]
    assert not slow, f"issue 15: each lab under two minutes on CPU: {slow}"
