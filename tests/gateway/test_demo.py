from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from atlasguard.artifacts.findings import Severity
from atlasguard.artifacts.keys import load_public_key
from atlasguard.artifacts.scan import scan_path
from atlasguard.artifacts.signing import verify_model
from atlasguard.errors import AtlasguardError, UsageError
from atlasguard.gateway.backends import load_backend
from atlasguard.gateway.demo import (
    DEMO_MODEL,
    Project,
    curl_example,
    init_project,
    project_policy,
    train_digits,
)
from atlasguard.gateway.oip import parse_infer_request
from atlasguard.gateway.preprocess import Preprocessor
from atlasguard.policy import ModelSpec, PreprocessStep, TensorSpec, load_policy
from atlasguard.runtime.deployment import Deployment


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return init_project(tmp_path_factory.mktemp("proj") / "demo", demo=True)


def test_demo_policy_declares_digits(project: Project) -> None:
    policy = load_policy(project.policy_path)
    root = project.policy_path.parent
    assert policy.state_dir == (root / "state").resolve()
    assert policy.base_dir / policy.keys.signing_key == project.private_key
    assert policy.base_dir / policy.keys.public_key == project.public_key
    assert policy.settings("signing").require is True  # type: ignore[attr-defined]
    spec = policy.models[DEMO_MODEL]
    assert spec == ModelSpec(
        backend="onnx",
        path="models/digits/model.onnx",
        version="1",
        inputs=(TensorSpec(name="input", datatype="FP32", shape=(-1, 64), min=0.0, max=1.0),),
        outputs=("label", "probabilities"),
        preprocess=(PreprocessStep(op="clip", min=0.0, max=1.0),),
        max_batch=1024,
        reference="reference/digits.npy",
        calibration="reference/digits-held-out.npy",
    )
    assert (root / "state").is_dir()
    assert (root / ".gitignore").read_text().splitlines() == ["state/", "keys/"]


def test_demo_model_is_signed_and_scans_clean(project: Project) -> None:
    assert project.demo is not None
    model_dir = project.demo.path.parent
    assert project.demo.signature == model_dir / "model.sig"
    manifest = verify_model(model_dir, load_public_key(project.public_key))
    assert [r.name for r in manifest.resources] == ["model.onnx"]
    reports = scan_path(model_dir)
    assert any(r.format == "onnx" for r in reports)
    assert not [f for r in reports for f in r.findings if f.severity >= Severity.LOW]


def test_demo_model_predicts_held_out_digits(project: Project) -> None:
    policy = load_policy(project.policy_path)
    spec = policy.models[DEMO_MODEL]
    backend = load_backend(DEMO_MODEL, spec, policy.base_dir)
    trained = train_digits()  # same random_state: the same held-out digits
    pre = Preprocessor.from_spec(spec.preprocess)
    out = backend.predict(pre({"input": trained.x_test.astype(np.float32)}))
    accuracy = float((out["label"] == trained.y_test).mean())
    assert accuracy > 0.9
    assert project.demo is not None
    assert project.demo.unrestored_accuracy == pytest.approx(trained.accuracy)
    # what init reports is what the served pipeline gives: through the demo's restoration
    from atlasguard.gateway.demo import demo_restoration

    restored = backend.predict(
        pre({"input": demo_restoration()(trained.x_test).astype(np.float32)})
    )
    assert project.demo.accuracy == pytest.approx(
        float((restored["label"] == trained.y_test).mean())
    )
    sample = np.asarray(project.demo.sample, np.float32)[None]
    answer = backend.predict(pre({"input": demo_restoration()(sample).astype(np.float32)}))
    assert int(answer["label"][0]) == project.demo.sample_label  # the example is answered rightly


def test_demo_principals(project: Project) -> None:
    assert project.admin_key and project.demo_key
    store = Deployment.open(load_policy(project.policy_path)).identity
    admin = store.authenticate(project.admin_key)
    demo = store.authenticate(project.demo_key)
    assert (admin.name, admin.is_admin) == ("admin", True)
    assert (demo.name, demo.is_admin) == ("demo", False)
    assert [g.role for g in store.authorize(demo, "digits")] == ["user"]
    assert store.authorize(demo, "other") == []
    assert project.admin_key not in repr(project)


def test_curl_example_posts_a_valid_digit(project: Project) -> None:
    assert project.demo is not None and project.demo_key
    words = shlex.split(curl_example(project.demo_key, project.demo.sample))
    assert words[words.index("-X") + 1] == "POST"
    assert "http://127.0.0.1:8000/v2/models/digits/infer" in words
    assert f"Authorization: Bearer {project.demo_key}" in words
    raw = words[words.index("-d") + 1].encode()
    spec = load_policy(project.policy_path).models[DEMO_MODEL]
    req = parse_infer_request(raw, spec, max_body_bytes=1 << 20)
    assert req.inputs["input"].shape == (1, 64)
    assert len(json.loads(raw)["inputs"][0]["data"]) == 64
    backend = load_backend(DEMO_MODEL, spec, project.policy_path.parent)
    assert int(backend.predict(req.inputs)["label"][0]) == project.demo.sample_label


def test_init_refuses_an_existing_project(project: Project) -> None:
    with pytest.raises(UsageError, match="exists") as info:
        init_project(project.policy_path.parent, demo=True)
    assert info.value.exit_code == 2


def test_plain_init(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.pyc")
    project = init_project(tmp_path)
    policy = load_policy(project.policy_path)
    assert policy.models == {}
    assert policy.settings("signing").require is False  # type: ignore[attr-defined]
    assert project.demo is None and project.admin_key is None
    assert project.private_key.stat().st_mode & 0o077 == 0
    assert (tmp_path / ".gitignore").read_text() == "*.pyc\nstate/\nkeys/\n"


def test_leftover_keys_are_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "private.pem").write_text("old")
    with pytest.raises(AtlasguardError, match="refusing to overwrite"):
        init_project(tmp_path)
    assert (tmp_path / "keys" / "private.pem").read_text() == "old"
    assert not (tmp_path / "atlasguard.toml").exists()


def test_project_policy_text() -> None:
    text = project_policy(demo=False)
    assert 'state_dir = "state"' in text and 'signing_key = "keys/private.pem"' in text
    assert "[models." not in text
    assert "[models.digits]" in project_policy(demo=True)
