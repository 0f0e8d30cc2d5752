"""The demo project the gateway benchmarks serve: quotas set too high to trigger, one request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def demo_project(tmp: Path) -> tuple[Path, list[str], bytes]:
    """``atlasguard init --demo`` under ``tmp``: (policy file, [admin key, user key], body).

    The body is one held-out digit as an Open Inference Protocol request.
    """
    root = tmp / "demo"
    init = subprocess.run(
        [sys.executable, "-m", "atlasguard", "init", str(root), "--demo"],
        capture_output=True,
        text=True,
        check=True,
    )
    keys = [
        ln.strip()
        for ln in (init.stdout + init.stderr).splitlines()
        if ln.strip().startswith("agk_")
    ]
    config = root / "atlasguard.toml"
    text = config.read_text(encoding="utf-8")
    for old, new in (
        ('rate = "10/second"', 'rate = "1000000/second"'),
        ("burst = 20", "burst = 1000000"),
        ('daily = "10000/day"', 'daily = "1000000000/day"'),
    ):
        assert old in text, f"the demo policy no longer says {old}"
        text = text.replace(old, new)
    config.write_text(text, encoding="utf-8")
    from sklearn.datasets import load_digits

    x = load_digits().data[:1] / 16.0
    body = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": x.ravel().tolist()}
            ]
        }
    ).encode()
    return config, keys, body
