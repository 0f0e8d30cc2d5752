from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from atlasguard.audit.checkpoint import CheckpointSigner
from atlasguard.audit.log import AuditLog
from atlasguard.db import connect
from atlasguard.identity.store import IdentityStore
from atlasguard.policy import ModelSpec, TensorSpec, load_policy_text
from atlasguard.runtime.access import Access
from atlasguard.runtime.auditor import Auditor
from atlasguard.runtime.pipeline import Denied
from atlasguard.runtime.protect import ModelError, Protected, protect

SPEC = ModelSpec(inputs=(TensorSpec(name="x", shape=(-1, 3), min=0.0, max=1.0),), max_batch=4)


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Protected, IdentityStore, AuditLog, str]:
    engine = connect(f"sqlite:///{tmp_path / 'a.db'}")
    identity = IdentityStore.create(engine, refresh_seconds=0.0)
    signer = CheckpointSigner(ec.generate_private_key(ec.SECP256R1()))
    audit = AuditLog.create(engine, signer=signer)
    key = identity.create_key("alice").secret
    identity.grant("alice", "m", "user")

    def predict(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if inputs["x"][0, 0] == 0.5:
            raise RuntimeError("the model broke")
        return {"label": inputs["x"].argmax(axis=1).astype(np.int64)}

    protected = Protected(
        name="m",
        spec=SPEC,
        predict=predict,  # type: ignore[arg-type]
        guards=(),
        access=Access(identity),
        auditor=Auditor(audit),
    )
    return protected, identity, audit, key


def test_every_call_leaves_one_record(
    parts: tuple[Protected, IdentityStore, AuditLog, str],
) -> None:
    protected, identity, audit, key = parts
    bob = identity.create_key("bob").secret
    out = protected({"x": [[0.1, 0.9, 0.0]]}, credential=key)
    assert out.outputs["label"].tolist() == [1]
    refusals = [
        ({"x": [[0.1, 0.9, 0.0]]}, None, "unauthenticated"),
        ({"x": [[0.1, 0.9, 0.0]]}, bob, "forbidden"),
        ({"x": [[0.1, 2.0, 0.0]]}, key, "invalid-input"),
    ]
    for inputs, credential, reason in refusals:
        with pytest.raises(Denied) as info:
            protected(inputs, credential=credential)
        assert info.value.reason == reason
    with pytest.raises(ModelError) as failed:
        protected({"x": [[0.5, 0.0, 0.0]]}, credential=key)
    assert isinstance(failed.value.__cause__, RuntimeError)
    records = [r for _, r in audit.records()]
    assert [(r.principal, r.decision, r.reason) for r in records] == [
        ("alice", "allow", ""),
        ("-", "deny", "unauthenticated"),
        ("bob", "deny", "forbidden"),
        ("alice", "deny", "invalid-input"),
        ("alice", "error", "model-error"),
    ]
    assert records[0].output_summary == "label[1]=1"
    assert all(r.input_digest and r.input_digest.startswith("sha256:") for r in records)
    assert records[1].input_digest == records[0].input_digest  # same inputs, same digest


def test_validation_refuses_wrong_names_shapes_batches(
    parts: tuple[Protected, IdentityStore, AuditLog, str],
) -> None:
    protected, _identity, _audit, key = parts
    for bad in (
        {"y": [[0.0, 0.0, 0.0]]},
        {"x": [[0.0, 0.0]]},
        {"x": [[0.0] * 3] * 5},
        {"x": [[float("nan"), 0.0, 0.0]]},
    ):
        with pytest.raises(Denied) as info:
            protected(bad, credential=key)
        assert info.value.reason == "invalid-input"


def test_a_request_the_audit_log_cannot_record_is_refused(
    parts: tuple[Protected, IdentityStore, AuditLog, str],
) -> None:
    protected, _identity, audit, key = parts
    with audit._engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_records"))
    with pytest.raises(Denied) as info:
        protected({"x": [[0.1, 0.9, 0.0]]}, credential=key)
    assert info.value.reason == "audit-unavailable"


def test_concurrent_callers_share_batches_and_every_record_lands(
    parts: tuple[Protected, IdentityStore, AuditLog, str],
) -> None:
    protected, _identity, audit, key = parts
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            for _ in range(25):
                protected({"x": [[0.1, 0.9, 0.0]]}, credential=key)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert audit.size() == 200
    audit.checkpoint()
    assert audit.verify(audit._signer.verifier()).records == 200  # type: ignore[union-attr]


def test_protect_opens_the_deployment_and_needs_access(tmp_path: Path) -> None:
    base = '[models.m]\ninputs = [{ name = "x", datatype = "FP32", shape = [-1, 3] }]\n'
    without = load_policy_text(base, path=tmp_path / "p.toml")
    from atlasguard.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="access"):
        protect(lambda x: {"y": x["x"]}, without, name="m")
    policy = load_policy_text(
        "[controls.access]\nenabled = true\n" + base, path=tmp_path / "p.toml"
    )
    with pytest.raises(ConfigurationError, match=r"models\.other"):
        protect(lambda x: {"y": x["x"]}, policy, name="other")
    protected = protect(lambda x: {"y": x["x"] * 2}, policy, name="m")
    key = protected.access.store.create_key("alice").secret  # type: ignore[union-attr]
    protected.access.store.grant("alice", "m")  # type: ignore[union-attr]
    out = protected({"x": np.ones((1, 3), np.float32)}, credential=key)
    assert out.outputs["y"].tolist() == [[2.0, 2.0, 2.0]]
    assert [r.principal for _, r in protected.auditor.log.records()] == ["alice"]  # type: ignore[union-attr]
