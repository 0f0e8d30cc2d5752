"""``make bench``: run the scanner benchmark and hold atlasguard to issue 3's targets.

Set ``ATLASGUARD_BENCH_QUICK=1`` for the small performance inputs. While the
``atlasguard scan`` CLI does not exist, the anchors are still measured and the test
then skips, saying so: the harness never invents a figure for a tool it could not run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


def _load_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scan_run", HERE / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


run = _load_run()


def _fastest(perf: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """The fastest anchor run on ``kind`` that finished with a verdict (not an error)."""
    done = [
        r
        for r in perf
        if r["input"] == kind
        and r["tool"] != "atlasguard"
        and r["outcome"] in (run.FLAG, run.CLEAN)
    ]
    return min(done, key=lambda r: r["seconds"], default=None)


@pytest.mark.bench
def test_scan_benchmark(tmp_path: Path) -> None:
    quick = os.environ.get("ATLASGUARD_BENCH_QUICK") == "1"
    out = run.RESULTS / "scan.json"
    assert run.main(["--quick"] * quick + ["--out", str(out)]) == 0
    result = json.loads(out.read_text())

    samples = result["samples"]
    assert samples, "the corpus is empty"
    by_tool = {s["tool"]: s for s in result["summary"]}
    for name in run.ANCHOR_PACKAGES:
        summary = by_tool[name]
        assert summary["unavailable"] is None, summary["unavailable"]
        assert summary["malicious"] + summary["benign"] == len(samples)
        assert all(row[name] in (run.FLAG, run.CLEAN, run.ERROR, run.TIMEOUT) for row in samples)

    ours = by_tool["atlasguard"]
    perf = result["perf"]
    if ours["unavailable"]:
        assert all(row["atlasguard"] == run.NA for row in samples)
        assert all(r["outcome"] == run.NA for r in perf if r["tool"] == "atlasguard")
        pytest.skip(f"anchors measured; atlasguard not run: {ours['unavailable']}")

    assert ours["missed"] == [], f"malicious samples atlasguard missed: {ours['missed']}"
    assert ours["flagged_benign"] == [], f"benign samples flagged: {ours['flagged_benign']}"
    mine = {r["input"]: r for r in perf if r["tool"] == "atlasguard"}
    # The 1 GiB checkpoint's targets (issue 12 §4) are held in test_scan_speed (speed.py).
    for kind, speedup in (("ints", 3.0), ("tree", 1.0)):
        ref = _fastest(perf, kind)
        assert mine[kind]["outcome"] in (run.FLAG, run.CLEAN), mine[kind]
        if ref is not None:
            assert mine[kind]["seconds"] * speedup <= ref["seconds"], (
                f"{kind}: atlasguard {mine[kind]['seconds']} s, fastest anchor {ref['tool']} "
                f"{ref['seconds']} s, target {speedup:g}x faster"
            )
    assert mine["ints"]["peak_rss"] < 100 * 1024**2, mine["ints"]


def test_verdicts_follow_the_documented_rules() -> None:
    rc = run._rc_verdict({1}, {2})
    assert rc(run.Run(["x"], 1)) == run.FLAG
    assert rc(run.Run(["x"], 0)) == run.CLEAN
    assert rc(run.Run(["x"], 2)) == run.ERROR
    assert rc(run.Run(["x"], None, timed_out=True)) == run.TIMEOUT
    report = [
        {"path": "a", "findings": [{"rule": "r", "severity": "medium"}]},
        {"path": "b", "findings": [{"rule": "r", "severity": "critical"}]},
    ]
    assert run._atlasguard_verdict(run.Run(["x"], 1, json.dumps(report))) == run.FLAG
    assert run._atlasguard_verdict(run.Run(["x"], 0, json.dumps(report[:1]))) == run.CLEAN
    assert run._atlasguard_verdict(run.Run(["x"], 2, "Usage: ...")) == run.ERROR
    assert run._atlasguard_verdict(run.Run(["x"], 1, "")) == run.FLAG
    assert run._atlasguard_verdict(run.Run(["x"], 0, "")) == run.CLEAN


def test_measure_reports_a_child_peak(tmp_path: Path) -> None:
    measured = run._measured([sys.executable, "-c", "b = bytearray(60 * 1024 * 1024)"], 60)
    assert measured.rc == 0
    assert measured.peak_rss is not None and measured.peak_rss > 60 * 1024**2
    timed_out = run._measured([sys.executable, "-c", "import time; time.sleep(30)"], 1)
    assert timed_out.timed_out


@pytest.mark.bench
def test_parser_differentials_side_by_side() -> None:
    """Issue 12 §1: every differential sample flagged by atlasguard; the anchors printed."""
    spec = importlib.util.spec_from_file_location("bench_differentials", HERE / "differentials.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main([])
    assert set(results["atlasguard"].values()) == {"flag"}


@pytest.mark.bench
def test_dask_mirror_files_per_second() -> None:
    """Issue 12 §5: a generated mirror on 1 and 2 Dask workers; reports equal the local one."""
    pytest.importorskip("distributed")
    spec = importlib.util.spec_from_file_location("bench_dask_mirror", HERE / "dask_mirror.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rates = module.main([])  # asserts each cluster report equals the local report
    assert rates["2w"] > 1.2 * rates["1w"], rates  # a second worker process must pay off


@pytest.mark.bench
def test_scan_speed() -> None:
    """Issue 12 §4, side by side with picklescan: the table prints every target, met or not.

    Held here: the thorough scan within 25% of its ceiling on this machine (one
    core's SHA-256 of the file plus the CLI's start-up), ``--fast`` at least
    twice as fast as thorough on the 1 GiB checkpoint.
    """
    spec = importlib.util.spec_from_file_location("bench_speed", HERE / "speed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    got = module.main(["--rounds", "3"])
    thorough = got["atlasguard scan (thorough) seconds"]
    ceiling = got["sha256 in process seconds"] + got["atlasguard scan SMALL seconds"]
    assert thorough <= 1.25 * ceiling, got  # 1.16x on 2026-12-04
    assert got["atlasguard scan --fast seconds"] * 2 <= thorough, got


@pytest.mark.bench
def test_differential_properties_long() -> None:
    """The Hypothesis differentials of `make test`, with twenty times the examples."""
    import subprocess

    repo = HERE.parents[1]
    files = [
        "tests/artifacts/test_pickle_text.py",
        "tests/artifacts/test_zip_differential.py",
        "tests/artifacts/formats/test_numpy_dtypes.py",
    ]
    env = {**os.environ, "ATLASGUARD_LONG_DIFFERENTIALS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *files],
        cwd=repo,
        env=env,
        check=False,
    )
    assert done.returncode == 0
