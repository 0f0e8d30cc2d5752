"""The demo gateway's default policy, over HTTP: an adversarial digit is answered with
its label only and flagged; a real digit gets its scores."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from atlasguard.gateway.app import create_app
from atlasguard.gateway.demo import init_project, train_digits
from atlasguard.gateway.service import Gateway
from atlasguard.models.attacks import loss_gradient, pgd
from atlasguard.policy import load_policy

pytest.importorskip("sklearn")


def _infer(client: TestClient, key: str, x: np.ndarray) -> Any:
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": x.tolist()}]}
    return client.post(
        "/v2/models/digits/infer",
        content=json.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )


def test_pgd_digits_are_flagged_and_degraded_real_ones_are_not(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    project = init_project(tmp_path_factory.mktemp("det") / "demo", demo=True)
    trained = train_digits()  # the demo's model, white box
    x, y = trained.x_test[:12], trained.y_test[:12]
    adversarial = pgd(loss_gradient(trained.model), x, y, epsilon=0.2)
    assert (trained.model.predict(adversarial) != y).mean() > 0.8
    gateway = Gateway.from_policy(load_policy(project.policy_path))
    try:
        with TestClient(create_app(gateway)) as client:
            keys = [
                gateway.deployment.admin.create_key("test", f"user{i}", models=["digits"])
                for i in range(2)
            ]
            assert all(k is not None for k in keys)
            flagged = 0
            for row in adversarial:  # 12 different digits: no near-copies for the monitor
                answer = _infer(client, keys[0].secret, row.astype(np.float32))  # type: ignore[union-attr]
                assert answer.status_code == 200
                doc = answer.json()
                out = {o["name"]: o for o in doc["outputs"]}["probabilities"]
                if doc.get("parameters", {}).get("atlasguard_flags") == ["adversarial-input"]:
                    flagged += 1
                    assert out["datatype"] == "INT64" and out["shape"] == [1]
            assert flagged >= 10
            answer = _infer(client, keys[1].secret, trained.x_test[20].astype(np.float32))  # type: ignore[union-attr]
            doc = answer.json()
            assert "parameters" not in doc
            assert {o["name"]: o for o in doc["outputs"]}["probabilities"]["shape"] == [1, 10]
    finally:
        gateway.close()
    from atlasguard.runtime.deployment import Deployment

    with Deployment.open(load_policy(project.policy_path)) as deployment:
        rows = [r.to_dict() for _i, r in deployment.audit.records()]
    noted = [
        r
        for r in rows
        if r["action"] == "infer" and r["principal"] == "user0" and "notes" in r["details"]
    ]
    assert len(noted) == flagged  # each detection in its request's own record
    assert all(n["details"]["notes"].startswith("detected: mahalanobis") for n in noted)
