from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from atlasguard.audit.checkpoint import CheckpointSigner
from atlasguard.audit.log import AuditLog
from atlasguard.db import connect
from atlasguard.identity.store import IdentityStore
from atlasguard.policy import ModelSpec, TensorSpec
from atlasguard.runtime.access import AccessGuard
from atlasguard.runtime.pipeline import Denied
from atlasguard.runtime.protect import Protected
from atlasguard.runtime.validate import ValidateGuard

SPEC = ModelSpec(inputs=(TensorSpec(name="x", shape=(-1, 3), min=0.0, max=1.0),), max_batch=4)


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Protected, IdentityStore, AuditLog, str]:
    engine = connect(f"sqlite:///{tmp_path / 'a.db'}")
    identity = IdentityStore.create(engine, refresh_seconds=0.0)
    signer = CheckpointSigner(ec.generate_private_key(ec.SECP256R1()))
    audit = AuditLog.create(engine, signer=signer)
    key = identity.create_key("alice").secret
    identity.grant("alice", "m", "user")
    calls: list[int] = []

    def predict(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(1)
        return {"label": inputs["x"].argmax(axis=1).astype(np.int64)}

    protected = Protected(
        name="m",
        predict=predict,  # type: ignore[arg-type]
        guards=(AccessGuard(identity), ValidateGuard({"m": SPEC})),
        audit=audit,
    )
    return protected, identity, audit, key


def test_every_call_leaves_one_record(
    parts: tuple[Protected, IdentityStore, AuditLog, str],
) -> None:
    protected, _identity, audit, key = parts
    out = protected({"x": [[0.1, 0.9, 0.0]]}, credential=key, client="127.0.0.1")
    assert out.outputs["label"].tolist() == [1]
    with pytest.raises(Denied) as no_key:
        protected({"x": [[0.1, 0.9, 0.0]]})
    assert no_key.value.status == 401
    with pytest.raises(Denied) as bad:
        protected({"x": [[0.1, 2.0, 0.0]]}, credential=key)
    assert bad.value.status == 422
    records = [r for _, r in audit.records()]
    assert [(r.principal, r.decision, r.reason) for r in records] == [
        ("alice", "allow", ""),
        ("-", "deny", "unauthenticated"),
        ("alice", "deny", "invalid-input"),
    ]
    assert records[0].output_summary == "label[1]=1"
    assert records[0].input_digest and records[0].input_digest.startswith("sha256:")
    assert records[0].details == {"client": "127.0.0.1"}


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
    assert info.value.status == 503
    assert info.value.reason == "audit-unavailable"
