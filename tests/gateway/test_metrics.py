"""``/metrics``: one registry per app, never the process-wide default; multiprocess mode guarded."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from atlasguard.errors import ConfigurationError
from atlasguard.gateway.app import _mark_dead_workers, create_app
from atlasguard.gateway.demo import init_project
from atlasguard.gateway.service import Gateway
from atlasguard.policy import load_policy

pytest.importorskip("onnxruntime")


def _requests(text: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["model"], s.labels["decision"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "atlasguard_requests_total"
    }


def test_two_apps_in_one_process_keep_their_own_metrics(tmp_path: Path) -> None:
    project = init_project(tmp_path / "demo", demo=True)
    gateway = Gateway.from_policy(load_policy(project.policy_path))
    first, second = create_app(gateway), create_app(gateway)  # no duplicate registration

    async def run() -> tuple[str, str]:
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url="http://a") as a,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url="http://b") as b,
        ):
            denied = await a.post("/v2/models/digits/infer", content=b"{}")
            assert denied.status_code == 401
            return (await a.get("/metrics")).text, (await b.get("/metrics")).text

    try:
        one, two = asyncio.run(run())
    finally:
        gateway.close()
    assert _requests(one) == {("digits", "deny"): 1.0}
    assert _requests(two) == {}
    assert not [n for n in REGISTRY._names_to_collectors if n.startswith("atlasguard")]


def test_multiprocess_metrics_need_the_environment_first(tmp_path: Path) -> None:
    project = init_project(tmp_path / "demo", demo=True)
    gateway = Gateway.from_policy(load_policy(project.policy_path))
    # This process imported prometheus_client without PROMETHEUS_MULTIPROC_DIR.
    try:
        with pytest.raises(ConfigurationError, match="PROMETHEUS_MULTIPROC_DIR"):
            create_app(gateway, metrics_dir=tmp_path)
    finally:
        gateway.close()


def test_a_starting_worker_drops_the_live_gauges_of_dead_ones(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    gone, alive = proc.pid, os.getppid()
    names = [
        f"counter_{gone}.db",
        f"gauge_livesum_{gone}.db",
        f"gauge_livesum_{alive}.db",
        f"gauge_all_{gone}.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    _mark_dead_workers(tmp_path)
    # A dead worker's counters still count; only its live gauges go.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{gone}.db", f"gauge_livesum_{alive}.db", f"gauge_all_{gone}.db"]
    )
