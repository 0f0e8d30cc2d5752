"""``make bench``: the artifact-integrity benchmark (issue 4).

Runs ``bench/integrity/run.py`` at full size (10 x 200 MB and 1 x 2 GB), or at
``ATLASGUARD_BENCH_SCALE`` (e.g. ``0.05``) for a quick look. It checks that
every tool computed the same digests (a benchmark of wrong answers is
worthless) and prints the figures and target ratios; the targets themselves are
reported, not asserted, because they depend on the machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent


def _load_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_integrity_run", HERE / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.bench
def test_integrity_benchmark() -> None:
    run = _load_run()
    scale = os.environ.get("ATLASGUARD_BENCH_SCALE", "1")
    out = run.RESULTS / "integrity.json"
    assert run.main(["--size-scale", scale, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    for layout, roots in result["roots"].items():
        # Same serialization, same digests: atlasguard and model_signing agree.
        for method in ("sha256 files", "sha256 shards", "blake3 files"):
            theirs = roots.get(f"model_signing {method}")
            if theirs is not None:
                assert roots[f"atlasguard {method}"] == theirs, (layout, method)
    assert any(r["what"].startswith("encrypt") for r in result["rows"])
