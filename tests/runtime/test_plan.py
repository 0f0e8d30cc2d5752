"""Coverage from what runs: each part the plan lists is built, and its setting changes behaviour.

A mitigation counts only through a part of :func:`atlasguard.runtime.plan.plan`; these
tests show each part acting on its setting, so no flag can claim a mitigation alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atlasguard.artifacts.keys import create_keyring
from atlasguard.errors import ConfigurationError
from atlasguard.policy import Policy, load_policy_text
from atlasguard.runtime.deployment import Deployment
from atlasguard.runtime.pipeline import Denied
from atlasguard.runtime.plan import plan

MODEL = '[models.m]\ninputs = [{ name = "x", datatype = "FP32", shape = [-1, 3] }]\n'
ACCESS = "[controls.access]\nenabled = true\n"


def _policy(tmp_path: Path, text: str) -> Policy:
    return load_policy_text(text, path=tmp_path / "atlasguard.toml")


def _scores(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"probabilities": np.full((len(x["x"]), 3), 1 / 3, np.float32)}


def _calls(tmp_path: Path, text: str, n: int = 3) -> list[str | np.ndarray]:
    """Outcomes of n calls through protect(): a refusal's reason, or the scores."""
    with Deployment.open(_policy(tmp_path, text)) as deployment:
        key = deployment.identity.create_key("alice").secret
        deployment.identity.grant("alice", "m")
        protected = deployment.protect(_scores, name="m")
        out: list[str | np.ndarray] = []
        for _ in range(n):
            try:
                out.append(
                    protected({"x": np.zeros((1, 3), np.float32)}, credential=key).outputs[
                        "probabilities"
                    ]
                )
            except Denied as denied:
                out.append(denied.reason)
        return out


def test_the_plan_and_the_deployment_agree(tmp_path: Path) -> None:
    policy = Policy.default()
    with Deployment.open(_policy(tmp_path, "")) as empty:
        assert empty.parts == () and empty.guards == ()
    assert [p.name for p in plan(policy)] == [
        "access",
        "quotas",
        "output",
        "registry",
        "registry-load-gate",
    ]


def test_quotas_act_only_when_enabled(tmp_path: Path) -> None:
    limited = ACCESS + MODEL + '[controls.quotas]\nenabled = true\nrate = ""\ndaily = "2/day"\n'
    assert _calls(tmp_path / "a", limited)[2] == "quota"
    off = limited.replace("enabled = true\nrate", "enabled = false\nrate")
    assert "quotas" not in [p.name for p in plan(_policy(tmp_path / "b", off))]
    assert all(not isinstance(r, str) for r in _calls(tmp_path / "b", off))


def test_the_output_policy_acts_only_when_enabled_and_not_full(tmp_path: Path) -> None:
    rounded = (
        ACCESS + MODEL + '[controls.output]\nenabled = true\ndefault = "round"\ndecimals = 1\n'
    )
    out = _calls(tmp_path / "a", rounded, 1)[0]
    assert isinstance(out, np.ndarray) and np.allclose(out, 0.3)
    full = rounded.replace('default = "round"', 'default = "full"')
    assert "output" not in [p.name for p in plan(_policy(tmp_path / "b", full))]
    out = _calls(tmp_path / "b", full, 1)[0]
    assert isinstance(out, np.ndarray) and abs(out[0, 0] - 1 / 3) < 1e-6


def test_access_cannot_be_off_for_a_served_model(tmp_path: Path) -> None:
    with Deployment.open(_policy(tmp_path, MODEL)) as deployment:
        assert "access" not in [p.name for p in deployment.parts]
        with pytest.raises(ConfigurationError, match="access"):
            deployment.protect(_scores, name="m")


def test_the_registry_and_its_encryption_exist_only_when_turned_on(tmp_path: Path) -> None:
    with Deployment.open(_policy(tmp_path / "a", "")) as off, pytest.raises(ConfigurationError):
        _ = off.registry
    create_keyring(tmp_path / "b" / "keys" / "kek.json")
    text = (
        '[keys]\nkeyring = "keys/kek.json"\n[controls.registry]\nenabled = true\nencrypt = true\n'
    )
    with Deployment.open(_policy(tmp_path / "b", text)) as on:
        assert {"registry", "registry-encryption"} <= {p.name for p in on.parts}
        registry = on.registry
        on.identity.ensure_principal("ops", admin=True)
        data = tmp_path / "b" / "d.csv"
        data.write_text("secret,data\n1,2\n")
        registry.push("ops", "d", data, "dataset")
        stored = [p.read_bytes() for p in registry.store.root.rglob("*") if p.is_file()]  # type: ignore[attr-defined]
        assert stored and all(b"secret,data" not in blob for blob in stored)  # sealed at rest
    plain = text.replace("encrypt = true", "encrypt = false")
    assert "registry-encryption" not in [p.name for p in plan(_policy(tmp_path / "c", plain))]


def test_signatures_count_only_when_required(tmp_path: Path) -> None:
    served = ACCESS + MODEL.replace("[models.m]\n", "[models.m]\npath = 'm.onnx'\n")
    gate = {p.name: p for p in plan(_policy(tmp_path, served))}["load-gate"]
    assert "AML.M0013" not in gate.mitigates and "AML.M0016" in gate.mitigates
    required = served + "[controls.signing]\nenabled = true\nrequire = true\n"
    gate = {p.name: p for p in plan(_policy(tmp_path, required))}["load-gate"]
    assert {"AML.M0013", "AML.M0014"} <= gate.mitigates
    # what the load gate does with the setting: tests/gateway/test_service.py (a tampered or
    # unsigned model is not served) and tests/artifacts/test_load_gate.py
