from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from atlasguard.artifacts.keys import create_keyring
from atlasguard.artifacts.signing import sign_model
from atlasguard.db.schema import registry_versions
from atlasguard.errors import (
    ConfigurationError,
    IntegrityError,
    UnsafeArtifactError,
    UsageError,
    VerificationError,
)
from atlasguard.policy import load_policy_text
from atlasguard.registry.access import AccessDeniedError
from atlasguard.registry.service import Registry, UnknownObjectError
from atlasguard.runtime.deployment import Deployment
from tests.corpus import build_corpus
from tests.dbfixtures import database
from tests.registry.conftest import make_registry


def _model(root: Path, text: str = "weights") -> Path:
    d = root / "model"
    d.mkdir(parents=True, exist_ok=True)
    (d / "weights.bin").write_bytes(text.encode() * 100)
    (d / "sub").mkdir(exist_ok=True)
    (d / "sub" / "config.json").write_text('{"layers": 2}')
    return d


def _blob_files(reg: Registry) -> list[Path]:
    root = reg.store.root  # type: ignore[attr-defined]
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_push_pull_versions_aliases_and_lineage(registry: Registry, tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("x,y\n1,2\n")
    d1 = registry.push("ops", "train", data, "dataset", description="training set")
    m = _model(tmp_path)
    v1 = registry.push("ops", "digits", m, "model", framework="onnx", lineage=["train@1"])
    assert (d1.number, v1.number, v1.lineage, v1.layout) == (1, 1, ("train@1",), "dir")
    # Same content again: the same immutable version, no new one.
    assert registry.push("ops", "digits", m, "model") == v1
    (m / "weights.bin").write_bytes(b"retrained")
    v2 = registry.push("ops", "digits", m, "model")
    assert v2.number == 2 and v2.digest != v1.digest
    registry.promote("ops", "digits@1", "production")
    obj, shown = registry.show("ops", "digits@production")
    assert (obj.owner, obj.framework, shown.number) == ("ops", "onnx", 1)
    assert registry.show("ops", f"digits@sha256:{v2.digest}")[1].number == 2
    assert registry.show("ops", "digits")[1].number == 2  # latest
    out = registry.pull("ops", "digits@production", tmp_path / "pulled")
    assert (out / "weights.bin").read_bytes() == b"weights" * 100
    assert (out / "sub" / "config.json").read_text() == '{"layers": 2}'
    assert [v.number for v in registry.versions("ops", "digits")] == [1, 2]
    with pytest.raises(UsageError, match="already exists"):
        registry.pull("ops", "digits", out)
    with pytest.raises(UnknownObjectError):
        registry.show("ops", "digits@9")
    last = list(registry.audit.records())[-1][1]
    assert (last.action, last.decision, last.reason) == ("registry.show", "deny", "not-found")
    with pytest.raises(UnknownObjectError):
        registry.show("ops", "digits@staging")
    with pytest.raises(UsageError, match="is a model"):
        registry.push("ops", "digits", data, "dataset")


def test_denial_does_not_reveal_existence(registry: Registry) -> None:
    with pytest.raises(AccessDeniedError) as missing:
        registry.show("eve", "nothing-here")
    registry.identity.grant("eve", "nothing-here", "reader")
    with pytest.raises(UnknownObjectError):
        registry.show("eve", "nothing-here")
    assert "nothing-here" in str(missing.value)


def test_only_an_admin_grants_admin(registry: Registry, tmp_path: Path) -> None:
    registry.identity.grant("mgr", "*", "manager")
    with pytest.raises(AccessDeniedError, match="admin role"):
        registry.grant("mgr", "mallory", "*", "admin")
    registry.grant("ops", "mallory", "x*", "admin")
    assert [g.role for g in registry.identity.grants_of("mallory")] == ["admin"]
    assert registry.revoke("mgr", "mallory", "x*", "reader") == 0


@pytest.fixture(scope="module")
def corpus_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    root = tmp_path_factory.mktemp("corpus")
    with database("sqlite", root) as engine:
        reg = make_registry(engine, root)
        reg.identity.ensure_principal("ops", admin=True)
        yield reg, root
        reg.audit.close()


def test_every_malicious_corpus_sample_is_refused(
    corpus_registry: tuple[Registry, Path],
) -> None:
    reg, root = corpus_registry
    canary = root / "canary" / "CANARY"
    samples = build_corpus(root / "corpus", canary, kinds=("malicious",))
    assert samples
    for i, sample in enumerate(samples):
        with pytest.raises(UnsafeArtifactError, match="refused") as refused:
            reg.push("ops", f"bad-{i}", sample.path, "model")
        assert sample.path.name in str(refused.value) or sample.path.is_dir()
    assert not canary.exists()
    assert reg.list("ops") == []
    assert _blob_files(reg) == []
    denials = [r for _, r in reg.audit.records() if r.reason == "unsafe"]
    assert len(denials) == len(samples)


def test_tampered_blob_is_refused_on_pull(registry: Registry, tmp_path: Path) -> None:
    registry.push("ops", "digits", _model(tmp_path), "model")
    for blob in _blob_files(registry):
        if blob.read_bytes().startswith(b"weights"):
            blob.write_bytes(b"backdoor" + blob.read_bytes()[8:])
    with pytest.raises(IntegrityError, match="failed verification"):
        registry.pull("ops", "digits", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".atlasguard")] == []
    last = list(registry.audit.records())[-1][1]
    assert (last.action, last.decision, last.reason) == ("registry.pull", "deny", "integrity")


def test_missing_blob_is_refused(registry: Registry, tmp_path: Path) -> None:
    registry.push("ops", "digits", _model(tmp_path), "model")
    _blob_files(registry)[0].unlink()
    with pytest.raises(IntegrityError, match="missing"):
        registry.pull("ops", "digits", tmp_path / "out")


def test_encrypted_at_rest(tmp_path: Path) -> None:
    ring = create_keyring(tmp_path / "keys" / "kek.json")
    with database("sqlite", tmp_path) as engine:
        reg = make_registry(engine, tmp_path, keyring=ring)
        reg.identity.ensure_principal("ops", admin=True)
        v = reg.push("ops", "digits", _model(tmp_path), "model")
        assert v.encrypted
        assert all(b"weights" not in b.read_bytes() for b in _blob_files(reg))
        out = reg.pull("ops", "digits", tmp_path / "out")
        assert (out / "weights.bin").read_bytes() == b"weights" * 100
        big = max(_blob_files(reg), key=lambda p: p.stat().st_size)
        data = bytearray(big.read_bytes())
        data[-20] ^= 1
        big.write_bytes(bytes(data))
        with pytest.raises(IntegrityError):
            reg.pull("ops", "digits", tmp_path / "out2")
        assert not (tmp_path / "out2").exists()
        reg.audit.close()


def test_required_signature(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with database("sqlite", tmp_path) as engine:
        reg = make_registry(engine, tmp_path, signature_key=key.public_key())
        reg.identity.ensure_principal("ops", admin=True)
        model = _model(tmp_path)
        with pytest.raises(VerificationError, match="signature") as refused:
            reg.push("ops", "digits", model, "model")
        # the message names the file in what was pushed, not the registry's private copy
        assert "atlasguard-push-" not in str(refused.value)
        assert f"{model.name}/model.sig" in str(refused.value)
        sign_model(model, key)
        assert reg.push("ops", "digits", model, "model").number == 1
        reg.audit.close()


def test_every_read_is_audited_and_the_log_verifies(registry: Registry, tmp_path: Path) -> None:
    registry.push("ops", "digits", _model(tmp_path), "model")
    registry.identity.grant("ann", "digits", "reader")
    registry.list("ann")
    registry.show("ann", "digits")
    registry.pull("ann", "digits", tmp_path / "out")
    with pytest.raises(AccessDeniedError):
        registry.pull("bob", "digits", tmp_path / "out2")
    seen = [(r.principal, r.action, r.decision) for _, r in registry.audit.records()]
    assert ("ann", "registry.list", "allow") in seen
    assert ("ann", "registry.show", "allow") in seen
    assert ("ann", "registry.pull", "allow") in seen
    assert ("bob", "registry.pull", "deny") in seen
    registry.audit.checkpoint()
    signer = registry.audit._signer
    assert signer is not None
    report = registry.audit.verify(signer.verifier())
    assert report.records == len(seen) and report.unchecked_tail == 0


def test_stored_rows_are_immutable_values(registry: Registry, tmp_path: Path) -> None:
    v = registry.push("ops", "digits", _model(tmp_path), "model", metadata={"acc": "0.98"})
    with registry._engine.connect() as conn:
        row = conn.execute(select(registry_versions)).mappings().one()
    assert json.loads(row["meta"]) == {"acc": "0.98"}
    assert row["digest"] == v.digest and v.metadata == {"acc": "0.98"}


def test_open_registry_from_policy(tmp_path: Path) -> None:
    create_keyring(tmp_path / "keys" / "kek.json")
    text = (
        '[deployment]\nstate_dir = "state"\n[keys]\nkeyring = "keys/kek.json"\n'
        '[controls.scan]\nfail_on = "critical"\n[controls.registry]\nenabled = true\n'
    )
    policy = load_policy_text(text, path=tmp_path / "atlasguard.toml")
    with Deployment.open(policy) as deployment:
        reg = deployment.registry
        assert reg.keyring is None
        assert reg.store.root == (tmp_path / "state" / "registry").resolve()  # type: ignore[attr-defined]
        assert reg.load_gate.fail_on.label == "critical"
        assert reg.auditor is deployment.auditor  # one auditor per deployment


def test_keyring_inside_the_store_is_refused(tmp_path: Path) -> None:
    from atlasguard.registry.settings import RegistrySettings

    create_keyring(tmp_path / "state" / "registry" / "kek.json")
    policy = load_policy_text(
        '[deployment]\nstate_dir = "state"\n[keys]\nkeyring = "state/registry/kek.json"\n',
        path=tmp_path / "atlasguard.toml",
    )
    policy = type(policy)(
        deployment=policy.deployment,
        keys=policy.keys,
        controls={"registry": RegistrySettings(enabled=True, encrypt=True)},
        path=policy.path,
    )
    with pytest.raises(ConfigurationError, match="keep keys apart"):
        _ = Deployment.open(policy).registry


def test_symlink_inside_a_pushed_directory_is_refused(registry: Registry, tmp_path: Path) -> None:
    model = _model(tmp_path)
    (tmp_path / "secret").write_text("host file")
    (model / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(IntegrityError, match="symbolic link"):
        registry.push("ops", "digits", model, "model")
    last = list(registry.audit.records())[-1][1]
    assert (last.decision, last.reason) == ("deny", "manifest")
    assert _blob_files(registry) == []


def test_single_file_with_signature_beside_it(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"\x00" * 100)
    sign_model(weights, key)
    with database("sqlite", tmp_path) as engine:
        reg = make_registry(engine, tmp_path, signature_key=key.public_key())
        reg.identity.ensure_principal("ops", admin=True)
        assert reg.push("ops", "w", weights, "model").layout == "file"
        assert reg.pull("ops", "w", tmp_path / "w2.bin").read_bytes() == b"\x00" * 100
        reg.audit.close()


def test_a_write_refused_after_its_blobs_were_stored_leaves_nothing(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows could not be stored (a concurrent push, a full disk): no orphaned blob,
    and the log ends with the refusal, not with 'accepted'."""
    registry.push("ops", "keep", _model(tmp_path), "model")
    kept = set(_blob_files(registry))
    from atlasguard.registry.access import Decision

    def failing(
        self: Registry, principal: str, action: Any, obj: Any, name: str, *a: Any, **k: Any
    ) -> Any:
        self._record(principal, action, Decision(True, "accepted"), name)  # recorded, then
        raise UsageError("digits was changed by a concurrent push: try again")  # the rows fail

    monkeypatch.setattr(Registry, "_commit", failing)
    other = tmp_path / "other"
    other.mkdir()
    (other / "w.bin").write_bytes(b"other weights" * 100)
    with pytest.raises(UsageError, match="concurrent push"):
        registry.push("ops", "digits", other, "model")
    assert set(_blob_files(registry)) == kept  # the new blob is gone, the kept one stays
    last = list(registry.audit.records())[-1][1]
    assert (last.action, last.decision, last.reason) == ("registry.create", "deny", "not-stored")


def test_a_token_principal_can_create_an_object(registry: Registry, tmp_path: Path) -> None:
    registry.identity.grant("jwt:erin", "erin-*", "editor")
    version = registry.push("jwt:erin", "erin-model", _model(tmp_path), "model")
    assert version.number == 1 and registry.show("jwt:erin", "erin-model")[0].owner == "jwt:erin"
