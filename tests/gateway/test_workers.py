"""Four Uvicorn workers sharing one quota through the machine's Redis: no over-admission."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from atlasguard.gateway.demo import init_project
from atlasguard.identity.store import open_identity_store
from atlasguard.policy import load_policy
from tests.gateway.test_http import _start

REDIS_URL = "redis://127.0.0.1:6379/0"
LIMIT = 20


@pytest.mark.services
def test_four_workers_admit_exactly_the_quota(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    init_project(root, demo=True)
    prefix = f"atlasguard:test:{uuid.uuid4().hex}"
    config = root / "atlasguard.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace('redis_url = ""', f'redis_url = "{REDIS_URL}"')
    text = text.replace('key_prefix = "atlasguard:quota"', f'key_prefix = "{prefix}"')
    config.write_text(text, encoding="utf-8")
    store = open_identity_store(load_policy(config))
    store.grant("racer", "digits", "user", rate="100000/second", quota=f"{LIMIT}/day")
    key = store.create_key("racer").secret

    from sklearn.datasets import load_digits

    x = load_digits().data[:1] / 16.0
    body = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": x.ravel().tolist()}
            ]
        }
    )
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
        client_redis = redis.Redis.from_url(REDIS_URL)
        for k in client_redis.scan_iter(f"{prefix}*"):
            client_redis.delete(k)
    assert len(statuses) == 80
    assert statuses.count(200) == LIMIT, statuses
    assert set(statuses) == {200, 429}
