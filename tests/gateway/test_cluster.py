"""Two gateways, as on two machines: separate `atlasguard serve` processes on one PostgreSQL
and one Redis. Racing clients are admitted exactly to a key's quota across both, and
the two write one audit log, with dense indexes, that `atlasguard audit verify` accepts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from atlasguard.db import connect
from tests.dbfixtures import PG_ADMIN
from tests.gateway.test_http import _init_demo, _start

pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")
pytestmark = pytest.mark.services

QUOTA, ATTEMPTS = 50, 120


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atlasguard", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """The demo moved onto a fresh PostgreSQL database and the Redis; two gateways on it."""
    name = f"ag_cluster_{uuid.uuid4().hex[:12]}"
    admin = connect(PG_ADMIN).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        root = tmp_path / "demo"
        _init_demo(root)
        config = root / "atlasguard.toml"
        policy = config.read_text(encoding="utf-8")
        policy = re.sub(
            r'(?m)^database_url = ""$',
            f'database_url = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"',
            policy,
        )
        policy = re.sub(r'(?m)^redis_url = ""$', 'redis_url = "redis://127.0.0.1:6379/0"', policy)
        config.write_text(policy, encoding="utf-8")
        urls = []
        for _ in range(2):
            proc, port = _start(root)
            procs.append(proc)
            urls.append(f"http://127.0.0.1:{port}")
        yield config, urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def test_two_gateways_admit_exactly_the_quota_and_share_one_verified_log(
    cluster: tuple[Path, list[str]],
) -> None:
    config, urls = cluster
    made = _cli(
        config,
        "keys",
        "create",
        "--principal",
        "racer",
        "--models",
        "digits",
        "--rate",
        "100000/second",
        "--quota",
        f"{QUOTA}/day",
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    from sklearn.datasets import load_digits

    row = (load_digits().data[:1] / 16.0).ravel().tolist()
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": row}]}
    statuses: list[int] = []
    lock = threading.Lock()

    def client(url: str) -> None:
        # A new key reaches a gateway at once (a miss re-reads its row): no wait needed.
        with httpx.Client(base_url=url, timeout=30) as http:
            mine = [
                http.post(
                    "/v2/models/digits/infer",
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                ).status_code
                for _ in range(ATTEMPTS // 8)
            ]
        with lock:
            statuses.extend(mine)

    threads = [threading.Thread(target=client, args=(urls[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(statuses)) == [200, 429]
    assert statuses.count(200) == QUOTA
    assert statuses.count(429) == ATTEMPTS - QUOTA

    signed = _cli(config, "audit", "checkpoint")  # while both gateways still write
    assert signed.returncode == 0, signed.stderr
    verified = _cli(config, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    report = _cli(config, "audit", "report", "--json")
    assert report.returncode == 0, report.stderr
    usage = {r["principal"]: r for r in json.loads(report.stdout)}
    assert usage["racer"]["allowed"] == QUOTA
    assert usage["racer"]["denied"] == ATTEMPTS - QUOTA
    eng = connect(
        re.search(r'database_url = "([^"]+)"', config.read_text(encoding="utf-8"))[1]  # type: ignore[index]
    )
    try:
        with eng.connect() as conn:
            count, low, high = conn.execute(
                text("SELECT COUNT(*), MIN(idx), MAX(idx) FROM audit_records")
            ).one()
    finally:
        eng.dispose()
    assert (low, high) == (0, count - 1)  # dense: one log, no gap, no duplicate
