"""Uvicorn workers sharing state: one quota through Redis, one set of metrics on disk."""

from __future__ import annotations

import json
import stat
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from atlasguard.gateway.demo import init_project
from atlasguard.policy import load_policy
from atlasguard.runtime.deployment import Deployment
from tests.gateway.test_http import _start

REDIS_URL = "redis://127.0.0.1:6379/0"
LIMIT = 20


def _demo_with_redis(tmp_path: Path, quota: str) -> tuple[Path, str, str, str]:
    """The demo deployment counting in Redis under a fresh prefix.

    Returns (root, prefix, the racer's key, an admin key for /metrics).
    """
    root = tmp_path / "demo"
    init_project(root, demo=True)
    prefix = f"atlasguard:test:{uuid.uuid4().hex}"
    config = root / "atlasguard.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace('redis_url = ""', f'redis_url = "{REDIS_URL}"')
    assert 'key_prefix = ""' in text
    text = text.replace('key_prefix = ""', f'key_prefix = "{prefix}"')
    config.write_text(text, encoding="utf-8")
    store = Deployment.open(load_policy(config)).identity
    store.grant("racer", "digits", "user", rate="100000/second", quota=quota)
    admin = store.create_key("scraper", admin=True).secret
    return root, prefix, store.create_key("racer").secret, admin


def _infer_body() -> str:
    from sklearn.datasets import load_digits

    x = load_digits().data[:1] / 16.0
    return json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": x.ravel().tolist()}
            ]
        }
    )


def _forget(prefix: str) -> None:
    client_redis = redis.Redis.from_url(REDIS_URL)
    for k in client_redis.scan_iter(f"{prefix}*"):
        client_redis.delete(k)


@pytest.mark.services
def test_four_workers_admit_exactly_the_quota(tmp_path: Path) -> None:
    root, prefix, key, _admin = _demo_with_redis(tmp_path, f"{LIMIT}/day")
    body = _infer_body()
    proc, port = _start(root, workers=4)
    statuses: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            for _ in range(10):
                res = http.post(
                    f"http://127.0.0.1:{port}/v2/models/digits/infer",
                    content=body,
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                )
                with lock:
                    statuses.append(res.status_code)

    try:
        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        _forget(prefix)
    assert len(statuses) == 80
    assert statuses.count(200) == LIMIT, statuses
    assert set(statuses) == {200, 429}


def _allowed(metrics_text: str, model: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if (
                sample.name == "atlasguard_requests_total"
                and sample.labels.get("action") == "infer"
                and sample.labels.get("model") == model
                and sample.labels.get("decision") == "allow"
            ):
                return sample.value
    return 0.0


@pytest.mark.services
def test_one_scrape_counts_every_worker(tmp_path: Path) -> None:
    requests = 48
    root, prefix, key, admin = _demo_with_redis(tmp_path, "100000/day")
    body = _infer_body()
    scratch = tmp_path / "tmp"  # the server's TMPDIR: where its metrics directory goes
    scratch.mkdir()
    proc, port = _start(root, extra_env={"TMPDIR": str(scratch)}, workers=2)
    log = root / "server.log"
    statuses: list[int] = []
    scrapes: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(requests // 8):
            with httpx.Client(timeout=30) as http:  # a new connection each time
                res = http.post(
                    f"http://127.0.0.1:{port}/v2/models/digits/infer",
                    content=body,
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                )
            with lock:
                statuses.append(res.status_code)

    try:
        deadline = time.monotonic() + 60
        while log.read_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        [metrics_dir] = scratch.glob("atlasguard-metrics-*")
        assert stat.S_IMODE(metrics_dir.stat().st_mode) == 0o700
        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for _ in range(6):  # each on a new connection: whichever worker answers
            scraped = httpx.get(
                f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {admin}"}
            )
            scrapes.append(_allowed(scraped.text, "digits"))
        # Both workers served some of the requests (one file of counters per process).
        writers = {f.stem.rpartition("_")[2] for f in metrics_dir.glob("counter_*.db")}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        _forget(prefix)
    assert statuses == [200] * requests
    assert len(writers) == 2, writers
    assert scrapes == [requests] * 6
    assert not metrics_dir.exists()  # removed when the server stopped
