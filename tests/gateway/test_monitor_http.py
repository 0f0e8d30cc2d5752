"""The demo gateway's default policy, over HTTP: a black-box attack is suspended (403),
an ordinary client with a few hundred real digits is not."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from atlasguard.gateway.app import create_app
from atlasguard.gateway.demo import Project, init_project, train_digits
from atlasguard.gateway.service import Gateway
from atlasguard.models.attacks import simba
from atlasguard.policy import load_policy

pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return init_project(tmp_path_factory.mktemp("mon") / "demo", demo=True)


def _scores(client: TestClient, key: str, *, patient: bool = False) -> Any:
    def scores(x: np.ndarray) -> np.ndarray:
        body = {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "data": np.asarray(x, np.float32).ravel().tolist(),
                }
            ]
        }
        while True:
            answer = client.post(
                "/v2/models/digits/infer",
                content=json.dumps(body),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            if not (patient and answer.status_code == 429):
                break
            time.sleep(0.1)  # the demo's rate limit: honoured, as a patient client does
        if answer.status_code != 200:
            raise RuntimeError(f"{answer.status_code} {answer.text}")
        out = {o["name"]: o for o in answer.json()["outputs"]}["probabilities"]
        if out["datatype"] == "INT64":  # a detector withheld the scores: the label, one-hot
            return np.eye(10)[np.asarray(out["data"], int)]
        return np.asarray(out["data"], float).reshape(out["shape"])

    return scores


def test_simba_over_http_is_suspended_and_a_benign_client_is_not(project: Project) -> None:
    assert project.demo_key is not None and project.admin_key is not None
    trained = train_digits()
    gateway = Gateway.from_policy(load_policy(project.policy_path))
    try:
        with TestClient(create_app(gateway)) as client:
            result = simba(
                _scores(client, project.demo_key),
                trained.x_test[5],
                label=int(trained.y_test[5]),
                epsilon=0.2,
                max_queries=200,
            )
            assert not result.success and result.queries <= 5
            assert result.stopped.startswith("RuntimeError: 403")
            assert '"reason":"suspended"' in result.stopped
            # an ordinary client: another principal, 80 real held-out digits, one by one,
            # honouring the demo's rate limit (10/second, burst 20)
            user = gateway.deployment.admin.create_key("test", "alice", models=["digits"])
            assert user is not None
            benign = _scores(client, user.secret, patient=True)
            for row in trained.x_test[:80]:
                benign(row[None])
    finally:
        gateway.close()
