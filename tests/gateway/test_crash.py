"""A gateway killed with SIGKILL under load loses no audit record it acknowledged."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx

from atlasguard.audit.log import open_audit_log
from atlasguard.gateway.demo import init_project
from atlasguard.policy import load_policy
from tests.gateway.test_http import _start


def test_sigkill_loses_no_acknowledged_record(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    project = init_project(root, demo=True)
    config = root / "atlasguard.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace('rate = "10/second"', 'rate = "100000/second"')
    text = text.replace("burst = 20", "burst = 100000")
    config.write_text(text, encoding="utf-8")
    from sklearn.datasets import load_digits

    x = load_digits().data[:1] / 16.0
    body = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": x.ravel().tolist()}
            ]
        }
    )
    proc, port = _start(root)
    acknowledged = [0]
    stop = threading.Event()
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                try:
                    res = http.post(
                        f"http://127.0.0.1:{port}/v2/models/digits/infer",
                        content=body,
                        headers={
                            "Authorization": f"Bearer {project.demo_key}",
                            "Content-Type": "application/json",
                        },
                    )
                except httpx.HTTPError:
                    return  # the server is gone
                if res.status_code == 200:
                    with lock:
                        acknowledged[0] += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    proc.send_signal(signal.SIGKILL)  # no shutdown, no flush
    proc.wait(timeout=30)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert acknowledged[0] > 0
    log, _ = open_audit_log(load_policy(config))
    allowed = sum(1 for _, r in log.records(principal="demo") if r.decision == "allow")
    assert allowed >= acknowledged[0]
