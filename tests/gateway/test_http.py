"""The gateway over real HTTP: a Uvicorn server in a second process, the demo deployment."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, root: Path, keys: dict[str, str], port: int) -> None:
        self.root = root
        self.keys = keys
        self.url = f"http://127.0.0.1:{port}"
        self.config = root / "atlasguard.toml"


def _init_demo(root: Path) -> dict[str, str]:
    res = subprocess.run(
        [sys.executable, "-m", "atlasguard", "init", str(root), "--demo"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    keys = [
        line.strip()
        for line in res.stdout.splitlines() + res.stderr.splitlines()
        if line.strip().startswith("agk_")
    ]
    assert len(keys) >= 2, res.stdout + res.stderr
    return {"admin": keys[0], "demo": keys[1]}


def _start(
    root: Path, extra_env: dict[str, str] | None = None, workers: int = 1
) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = {**os.environ, **(extra_env or {})}
    # The server's log goes to a file: a pipe nobody reads would block it once full.
    with (root / "server.log").open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "atlasguard",
                "serve",
                "--config",
                str(root / "atlasguard.toml"),
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=1).status_code == 200:
                return proc, port
        except httpx.TransportError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    raise AssertionError(f"gateway did not start:\n{(root / 'server.log').read_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("demo")
    keys = _init_demo(root)
    proc, port = _start(root)
    try:
        yield Server(root, keys, port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _digits(n: int = 2) -> tuple[list[float], list[int]]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x[-n:] / 16.0).astype(np.float32).ravel().tolist(), y[-n:].tolist()


def _body(data: list[float], rows: int) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": [rows, 64], "datatype": "FP32", "data": data}]}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_health_and_metadata_need_no_model_knowledge(server: Server) -> None:
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{server.url}/v2/models/digits").status_code == 401
    meta = httpx.get(f"{server.url}/v2/models/digits", headers=_auth(server.keys["demo"]))
    assert meta.status_code == 200
    doc = meta.json()
    assert doc["name"] == "digits"
    assert doc["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert "path" not in json.dumps(doc) and "preprocess" not in json.dumps(doc)


def test_infer_with_a_granted_key(server: Server) -> None:
    data, labels = _digits(3)
    res = httpx.post(
        f"{server.url}/v2/models/digits/infer",
        json=_body(data, 3),
        headers=_auth(server.keys["demo"]),
    )
    assert res.status_code == 200, res.text
    outputs = {o["name"]: o for o in res.json()["outputs"]}
    assert outputs["label"]["datatype"] == "INT64"
    assert outputs["label"]["data"] == labels
    probs = np.array(outputs["probabilities"]["data"]).reshape(outputs["probabilities"]["shape"])
    assert probs.shape == (3, 10)
    assert np.allclose(probs, np.round(probs, 2))  # the default output policy rounds
    assert "RateLimit-Limit" in res.headers


def test_401_403_and_no_hint_of_which_models_exist(server: Server) -> None:
    data, _ = _digits(1)
    url = f"{server.url}/v2/models/%s/infer"
    assert httpx.post(url % "digits", json=_body(data, 1)).status_code == 401
    bad = httpx.post(url % "digits", json=_body(data, 1), headers=_auth("agk_nope"))
    assert bad.status_code == 401
    assert "WWW-Authenticate" in bad.headers
    # admin holds no grant on digits: 403, with the same answer for a model that does not exist
    real = httpx.post(url % "digits", json=_body(data, 1), headers=_auth(server.keys["admin"]))
    ghost = httpx.post(url % "ghost", json=_body(data, 1), headers=_auth(server.keys["admin"]))
    assert real.status_code == ghost.status_code == 403
    assert real.json() == ghost.json()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b'{"inputs": []}',
        b'{"inputs": [{"name": "input"}]}',
        json.dumps(_body([0.5] * 63, 1)).encode(),
        json.dumps(_body([2.0] * 64, 1)).encode(),
        json.dumps(
            {"inputs": [{"name": "input", "shape": [10**9, 64], "datatype": "FP32", "data": [0.0]}]}
        ).encode(),
    ],
)
def test_malformed_bodies_are_4xx_never_5xx(server: Server, body: bytes) -> None:
    res = httpx.post(
        f"{server.url}/v2/models/digits/infer",
        content=body,
        headers={**_auth(server.keys["demo"]), "Content-Type": "application/json"},
    )
    assert 400 <= res.status_code < 500, res.text
    assert res.json()["reason"] in ("malformed", "too-large", "invalid-input")


def test_admin_api_creates_grants_and_revokes_keys(server: Server) -> None:
    admin = _auth(server.keys["admin"])
    assert (
        httpx.get(f"{server.url}/v1/admin/keys", headers=_auth(server.keys["demo"])).status_code
        == 403
    )
    made = httpx.post(
        f"{server.url}/v1/admin/keys",
        headers=admin,
        json={"principal": "carol", "models": ["digits"], "rate": "2/minute"},
    )
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    data, _ = _digits(1)
    statuses = [
        httpx.post(
            f"{server.url}/v2/models/digits/infer", json=_body(data, 1), headers=_auth(key)
        ).status_code
        for _ in range(4)
    ]
    assert statuses[0] == 200 and 429 in statuses
    limited = httpx.post(
        f"{server.url}/v2/models/digits/infer", json=_body(data, 1), headers=_auth(key)
    )
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert limited.json()["reason"] == "rate"
    listed = httpx.get(f"{server.url}/v1/admin/keys", headers=admin).json()
    assert any(k["principal"] == "carol" for k in listed)
    assert key not in json.dumps(listed)
    gone = httpx.delete(f"{server.url}/v1/admin/keys/{made.json()['key_id']}", headers=admin)
    assert gone.status_code == 200
    time.sleep(5.5)  # revocation reaches every worker within the identity refresh (5 s)
    after = httpx.post(
        f"{server.url}/v2/models/digits/infer", json=_body(data, 1), headers=_auth(key)
    )
    assert after.status_code == 401


def test_admin_api_refuses_a_key_for_a_group_and_grants_nothing(server: Server) -> None:
    admin = _auth(server.keys["admin"])
    refused = httpx.post(
        f"{server.url}/v1/admin/keys",
        headers=admin,
        json={"principal": "group:ml", "models": ["digits"]},
    )
    assert refused.status_code == 400, refused.text
    from atlasguard.policy import load_policy
    from atlasguard.runtime.deployment import Deployment

    with Deployment.open(load_policy(server.config)) as deployment:
        assert deployment.identity.grants_of("group:ml") == []


def test_metrics_and_audit_trail(server: Server) -> None:
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    metrics = httpx.get(f"{server.url}/metrics", headers=_auth(server.keys["admin"])).text
    assert "atlasguard_requests_total" in metrics
    env = {**os.environ}
    cfg = str(server.config)
    cp = subprocess.run(
        [sys.executable, "-m", "atlasguard", "audit", "checkpoint", "--config", cfg],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert cp.returncode == 0, cp.stderr
    verify = subprocess.run(
        [sys.executable, "-m", "atlasguard", "audit", "verify", "--config", cfg],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    report = subprocess.run(
        [sys.executable, "-m", "atlasguard", "audit", "report", "--config", cfg, "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    usage = {r["principal"]: r for r in json.loads(report.stdout)}
    assert usage["demo"]["allowed"] >= 1
    assert usage["-"]["denied"] >= 1  # the unauthenticated attempts are recorded too
    # The audit log is the per-request record: by default no access-log line per request.
    log = (server.root / "server.log").read_text()
    assert "uvicorn.access" not in log and '"POST /v2/models' not in log
