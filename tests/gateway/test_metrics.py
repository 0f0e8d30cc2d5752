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
from atlasguard.gateway.app import create_app
from atlasguard.gateway.demo import init_project
from atlasguard.gateway.metrics import Metrics
from atlasguard.gateway.service import Gateway
from atlasguard.policy import load_policy

pytest.importorskip("onnxruntime")


def _requests(text: str, action: str = "infer") -> dict[tuple[str, str], float]:
    return {
        (s.labels["model"], s.labels["decision"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "atlasguard_requests_total" and s.labels["action"] == action
    }


def test_two_apps_in_one_process_keep_their_own_metrics(tmp_path: Path) -> None:
    project = init_project(tmp_path / "demo", demo=True)
    gateway = Gateway.from_policy(load_policy(project.policy_path))
    first, second = create_app(gateway), create_app(gateway)  # no duplicate registration

    admin = {"Authorization": f"Bearer {project.admin_key}"}

    async def run() -> tuple[str, str]:
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url="http://a") as a,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url="http://b") as b,
        ):
            denied = await a.post("/v2/models/digits/infer", content=b"{}")
            assert denied.status_code == 401
            scraped = await a.get("/metrics", headers=admin)
            assert scraped.status_code == 200
            return scraped.text, (await b.get("/metrics", headers=admin)).text

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
    Metrics((), metrics_dir=None).started()  # single process: leaves everything alone
    assert len(list(tmp_path.iterdir())) == 4
    metrics = Metrics.__new__(Metrics)  # the real check of multiprocess mode needs the env
    metrics.metrics_dir = tmp_path
    metrics.started()
    # A dead worker's counters still count; only its live gauges go.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{gone}.db", f"gauge_livesum_{alive}.db", f"gauge_all_{gone}.db"]
    )


def test_metrics_need_an_admin_and_urls_never_make_series(tmp_path: Path) -> None:
    project = init_project(tmp_path / "demo", demo=True)
    gateway = Gateway.from_policy(load_policy(project.policy_path))
    app = create_app(gateway)
    admin = {"Authorization": f"Bearer {project.admin_key}"}
    user = {"Authorization": f"Bearer {project.demo_key}"}

    async def run() -> tuple[list[int], str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:
            for i in range(50):  # 50 made-up model names, anonymous and authenticated
                await client.post(f"/v2/models/probe-{i}/infer", content=b"{}")
                await client.get(f"/v2/models/probe-{i}", headers=user)
            statuses = [
                (await client.get("/metrics")).status_code,
                (await client.get("/metrics", headers=user)).status_code,
            ]
            return statuses, (await client.get("/metrics", headers=admin)).text

    try:
        statuses, text = asyncio.run(run())
    finally:
        gateway.close()
    assert statuses == [401, 403]
    models = {
        s.labels["model"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if "model" in s.labels
    }
    assert models <= {"digits", "-"}
    assert "probe" not in text
