"""The load gate: a model that fails the scan or its signature is not served."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from atlasguard.gateway.demo import init_project
from atlasguard.gateway.service import Gateway
from atlasguard.policy import load_policy


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
        assert "failed the scan" in gateway.refused["digits"]
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
    from atlasguard.artifacts.keys import create_keyring, load_private_key
    from atlasguard.artifacts.signing import sign_model

    ring = create_keyring(root / "keys/kek.json")
    model = root / "models/digits/model.onnx"
    encrypt_path(model, model.with_suffix(".enc"), ring)
    model.with_suffix(".enc").replace(model)
    (root / "models/digits/model.sig").unlink()
    sign_model(root / "models/digits", load_private_key(root / "keys/private.pem"))


def test_an_encrypted_signed_model_is_decrypted_checked_and_served(root: Path) -> None:
    import numpy as np
    from sklearn.datasets import load_digits

    _encrypt_in_place(root)
    config = root / "atlasguard.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace('keyring = ""', 'keyring = "keys/kek.json"'),
        encoding="utf-8",
    )
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
    gateway = Gateway.from_policy(load_policy(root / "atlasguard.toml"))
    try:
        assert "encrypted" in gateway.refused["digits"]
    finally:
        gateway.close()
