"""The load gate: a model that fails the scan or its signature is not served."""

from __future__ import annotations

import json
import pickle
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits

pytest.importorskip("onnxruntime")

from starlette.testclient import TestClient

from atlasguard.gateway.app import create_app
from atlasguard.gateway.demo import init_project
from atlasguard.gateway.service import Gateway
from atlasguard.identity.store import IdentityStore
from atlasguard.policy import Policy, load_policy
from atlasguard.runtime.deployment import Deployment
from atlasguard.runtime.pipeline import Denied
from tests.gateway.jwtdemo import TestIdp


def _identity(policy: Policy) -> IdentityStore:
    """The deployment's identity store, as another process (the CLI) would open it."""
    return Deployment.open(policy).identity


def _infer(client: TestClient, credential: str) -> Any:
    return client.post(
        "/v2/models/digits/infer",
        content=_one_digit(),
        headers={"Authorization": f"Bearer {credential}"},
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    init_project(tmp_path / "demo", demo=True)
    return tmp_path / "demo"


def test_the_signed_demo_model_is_served(root: Path) -> None:
    gateway = Gateway.from_policy(load_policy(root / "atlasguard.toml"))
    try:
        assert set(gateway.models) == {"digits"}
        assert gateway.refused == {}
    finally:
        gateway.close()


def test_a_tampered_model_is_not_served(root: Path) -> None:
    model = root / "models/digits/model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0x01
    model.write_bytes(bytes(data))
    gateway = Gateway.from_policy(load_policy(root / "atlasguard.toml"))
    try:
        assert gateway.models == {}
        assert "model.onnx" in gateway.refused["digits"]
    finally:
        gateway.close()


def test_a_model_that_fails_the_scan_is_not_served(root: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, ("true",))

    config = root / "atlasguard.toml"
    # signatures not required: the scanner alone must stop it
    config.write_text(
        config.read_text(encoding="utf-8").replace("require = true", "require = false"),
        encoding="utf-8",
    )
    (root / "models/digits/model.onnx").write_bytes(pickle.dumps(Evil()))
    gateway = Gateway.from_policy(load_policy(config))
    try:
        assert gateway.models == {}
        assert "findings at or above high" in gateway.refused["digits"]
        assert ".system" in gateway.refused["digits"]  # posix.system on Linux
    finally:
        gateway.close()


def test_access_control_cannot_be_turned_off(root: Path) -> None:
    config = root / "atlasguard.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "[controls.access]\nenabled = true", "[controls.access]\nenabled = false"
        ),
        encoding="utf-8",
    )
    from atlasguard.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="never serves without access control"):
        Gateway.from_policy(load_policy(config))


def _encrypt_in_place(root: Path) -> None:
    from atlasguard.artifacts.encryption import encrypt_path
    from atlasguard.artifacts.keys import load_keyring, load_private_key
    from atlasguard.artifacts.signing import sign_model

    ring = load_keyring(root / "keys/kek.json")  # the demo's own keyring
    model = root / "models/digits/model.onnx"
    encrypt_path(model, model.with_suffix(".enc"), ring)
    model.with_suffix(".enc").replace(model)
    (root / "models/digits/model.sig").unlink()
    sign_model(root / "models/digits", load_private_key(root / "keys/private.pem"))


def test_an_encrypted_signed_model_is_decrypted_checked_and_served(root: Path) -> None:
    _encrypt_in_place(root)
    config = root / "atlasguard.toml"
    assert 'keyring = "keys/kek.json"' in config.read_text(encoding="utf-8")
    gateway = Gateway.from_policy(load_policy(config))
    try:
        assert gateway.refused == {}
        x, y = load_digits(return_X_y=True)
        backend = gateway.models["digits"].backend
        labels = backend.predict({"input": (x[-50:] / 16.0).astype(np.float32)})["label"]
        assert (labels == y[-50:]).mean() > 0.9
    finally:
        gateway.close()


def test_an_encrypted_model_without_its_keyring_is_not_served(root: Path) -> None:
    _encrypt_in_place(root)
    config = root / "atlasguard.toml"
    config.write_text(
        config.read_text(encoding="utf-8")
        .replace('keyring = "keys/kek.json"', 'keyring = ""')
        .replace("encrypt = true", "encrypt = false"),
        encoding="utf-8",
    )
    gateway = Gateway.from_policy(load_policy(root / "atlasguard.toml"))
    try:
        assert "encrypted" in gateway.refused["digits"]
    finally:
        gateway.close()


def _one_digit() -> bytes:
    x = load_digits().data[:1] / 16.0
    return json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": x.ravel().tolist()}
            ]
        }
    ).encode()


def test_jwt_tokens_reach_a_model_through_a_grant(root: Path) -> None:
    idp = TestIdp(root)
    policy = load_policy(idp.config)
    token = idp.token("erin")
    with TestClient(create_app(Gateway.from_policy(policy))) as client:
        assert _infer(client, token).status_code == 403
        _identity(policy).grant("jwt:erin", "digits", "user")
        time.sleep(5.1)  # grants are re-read after the identity cache's refresh
        answer = _infer(client, token)
        assert answer.status_code == 200
        assert answer.json()["outputs"][0]["shape"] == [1]


def test_a_token_group_reaches_a_model_with_its_grant_rate(root: Path) -> None:
    """Grants to a group the token names apply, with the group grant's own rate."""
    idp = TestIdp(root, groups_claim="groups")
    policy = load_policy(idp.config)
    _identity(policy).grant("group:analysts", "digits", "user", rate="2/minute")
    with TestClient(create_app(Gateway.from_policy(policy))) as client:
        assert _infer(client, idp.token("gail", groups=["sales"])).status_code == 403
        member = idp.token("gail", groups=["sales", "analysts"])
        for _ in range(2):
            assert _infer(client, member).status_code == 200
        limited = _infer(client, member)
        assert limited.status_code == 429  # the group grant's 2/minute, not the policy's 10/s
        assert limited.json()["reason"] == "rate"


def test_protect_in_process_applies_the_same_guards(root: Path) -> None:
    import atlasguard
    from atlasguard.gateway.backends import load_backend

    policy = load_policy(root / "atlasguard.toml")
    backend = load_backend("digits", policy.models["digits"], policy.base_dir)
    protected = atlasguard.protect(backend.predict, policy, name="digits")
    store = _identity(policy)
    key = store.create_key("frank").secret
    store.grant("frank", "digits", "user")
    with pytest.raises(Denied) as info:
        protected({"input": np.zeros((1, 64), np.float32)})
    assert info.value.reason == "unauthenticated"
    out = protected({"input": np.zeros((2, 64), np.float32)}, credential=key)
    assert out.outputs["label"].shape == (2,)
    with pytest.raises(Denied) as bad:
        protected({"input": np.full((1, 64), 5.0, np.float32)}, credential=key)
    assert bad.value.reason == "invalid-input"
    records = [r for _, r in protected.auditor.log.records()]  # type: ignore[union-attr]
    assert [r.decision for r in records][-3:] == ["deny", "allow", "deny"]


def test_the_gateway_serves_a_model_straight_from_the_registry(root: Path) -> None:
    policy = load_policy(root / "atlasguard.toml")
    registry = Deployment.open(policy).registry
    registry.identity.ensure_principal("ops", admin=True)
    registry.push("ops", "digits", root / "models/digits", "model")
    registry.promote("ops", "digits@1", "production")
    config = root / "atlasguard.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            'path = "models/digits/model.onnx"',
            'path = "registry:digits@production/model.onnx"',
        ),
        encoding="utf-8",
    )
    (root / "models/digits/model.onnx").unlink()  # only the registry has it now
    refused = Gateway.from_policy(load_policy(config))
    try:
        assert "digits" in refused.refused  # deny by default: the gateway holds no grant
    finally:
        refused.close()
    registry.grant("ops", "atlasguard-gateway", "digits", "reader")
    gateway = Gateway.from_policy(load_policy(config))
    try:
        assert gateway.refused == {}
        x, y = load_digits(return_X_y=True)
        labels = gateway.models["digits"].backend.predict(
            {"input": (x[-50:] / 16.0).astype(np.float32)}
        )["label"]
        assert (labels == y[-50:]).mean() > 0.9
        pulls = [r for _, r in gateway.deployment.audit.records() if r.action == "registry.pull"]
        assert pulls[-1].principal == "atlasguard-gateway"
    finally:
        gateway.close()


def test_closing_the_gateway_signs_the_audit_head(root: Path) -> None:
    """After a graceful shutdown, `audit verify` covers every record written."""
    from atlasguard.audit.log import open_audit_log

    policy = load_policy(root / "atlasguard.toml")
    store = _identity(policy)
    key = store.create_key("ivy").secret
    store.grant("ivy", "digits", "user")
    with TestClient(create_app(Gateway.from_policy(policy))) as client:
        assert _infer(client, key).status_code == 200
    log, verifier = open_audit_log(policy)
    assert verifier is not None
    report = log.verify(verifier)
    assert report.records >= 1
    assert report.unchecked_tail == 0


def test_admin_calls_are_recorded_as_they_ended(tmp_path: Path) -> None:
    """A revocation that fails is a refusal in the log, never an "allow"; one that works is."""
    project = init_project(tmp_path / "demo", demo=True)
    assert project.admin_key is not None and project.demo_key is not None
    policy = load_policy(project.policy_path)
    admin = {"Authorization": f"Bearer {project.admin_key}"}
    with TestClient(create_app(Gateway.from_policy(policy))) as client:
        missing = client.delete("/v1/admin/keys/0123456789abcdef", headers=admin)
        assert missing.status_code in (400, 404)
        demo_id = project.demo_key.split("_")[1]
        assert client.delete(f"/v1/admin/keys/{demo_id}", headers=admin).status_code == 200
        as_user = {"Authorization": f"Bearer {project.admin_key[:-4]}AAAA"}
        assert client.delete(f"/v1/admin/keys/{demo_id}", headers=as_user).status_code == 401
    log = Deployment.open(policy).audit
    revokes = [
        (r.decision, r.details.get("target", r.model))
        for _, r in log.records()
        if r.action == "admin.keys.revoke"
    ]
    assert revokes == [
        ("deny", "0123456789abcdef"),
        ("allow", demo_id),
        ("deny", demo_id),
    ]


def test_an_audit_log_that_cannot_be_written_is_a_503_and_no_answer(root: Path) -> None:
    policy = load_policy(root / "atlasguard.toml")
    key = _identity(policy).create_key("ann").secret
    _identity(policy).grant("ann", "digits", "user")
    with TestClient(create_app(Gateway.from_policy(policy))) as client:
        assert _infer(client, key).status_code == 200
        db = sqlite3.connect(root / "state" / "atlasguard.db")
        db.execute("ALTER TABLE audit_records RENAME TO audit_records_gone")
        db.commit()
        db.close()
        res = _infer(client, key)
        assert res.status_code == 503, res.text
        assert "outputs" not in res.json() and "Traceback" not in res.text
        assert res.json()["reason"] == "audit-unavailable"
