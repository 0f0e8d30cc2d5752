"""Ensembles (AML.M0006) and multi-sensor consensus (AML.M0009), in process and in the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from atlasguard.models.attacks import hop_skip_jump, loss_gradient, pgd
from atlasguard.models.data import digits_splits
from atlasguard.models.efficacy_inputs import _second_camera
from atlasguard.runtime.detectors import DisagreementDetector
from atlasguard.runtime.ensemble import Consensus, Ensemble, member_scores

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def members() -> dict[str, Any]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    d = digits_splits()
    fitted = {
        "lr": LogisticRegression(max_iter=2000, random_state=0).fit(d.x_fit, d.y_fit),
        "forest": RandomForestClassifier(100, random_state=0).fit(d.x_fit, d.y_fit),
        "knn": KNeighborsClassifier(5).fit(d.x_fit, d.y_fit),
    }
    return {"d": d, **fitted}


def _predict(model: Any, name: str = "input") -> Any:
    return lambda inputs: {"probabilities": model.predict_proba(inputs[name]).astype(np.float32)}


def test_soft_and_hard_votes_and_disagreement() -> None:
    a = lambda x: {"probabilities": np.array([[0.6, 0.4], [0.9, 0.1]])}  # noqa: E731
    b = lambda x: {"probabilities": np.array([[0.1, 0.9], [0.8, 0.2]])}  # noqa: E731
    c = lambda x: {"label": np.array([0, 0])}  # a label-only member counts as one-hot  # noqa: E731
    soft = Ensemble([a, b, c])({"input": np.zeros((2, 1))})
    np.testing.assert_allclose(soft["probabilities"][0], [(0.6 + 0.1 + 1) / 3, (0.4 + 0.9) / 3])
    assert soft["label"].tolist() == [0, 0]
    assert soft["disagreement"][0] > soft["disagreement"][1]  # they split on row 0 only
    hard = Ensemble([a, b, b], voting="hard")({"input": np.zeros((2, 1))})
    assert hard["label"].tolist() == [1, 0]
    with pytest.raises(ValueError, match="at least two"):
        Ensemble([a])
    with pytest.raises(ValueError, match="no scores or labels"):
        member_scores({"text": np.array(["x"])})


def test_a_transfer_attack_moves_the_ensemble_less_than_its_source(
    members: dict[str, Any],
) -> None:
    d, lr = members["d"], members["lr"]
    ensemble = Ensemble([_predict(members[m]) for m in ("lr", "forest", "knn")])
    adv = pgd(loss_gradient(lr), d.x_eval, d.y_eval, epsilon=0.2, steps=20)
    on_source = (lr.predict(adv) != d.y_eval).mean()
    on_ensemble = (ensemble({"input": adv})["label"] != d.y_eval).mean()
    assert on_source > 0.5 and on_ensemble < on_source - 0.2
    clean = (ensemble({"input": d.x_eval})["label"] == d.y_eval).mean()
    assert clean >= 0.95
    # disagreement is a detection signal: higher on the transferred inputs
    detector = DisagreementDetector([members[m].predict_proba for m in ("lr", "forest", "knn")])
    detector.fit(d.x_fit).calibrate(d.x_tune, fpr=0.05)
    assert detector.predict(adv).mean() > 3 * detector.predict(d.x_eval).mean()


def test_consensus_withholds_the_decision_when_one_sensor_is_attacked(
    members: dict[str, Any],
) -> None:
    from sklearn.neural_network import MLPClassifier

    d, camera = members["d"], members["lr"]
    other = MLPClassifier((32,), max_iter=2000, random_state=0)
    other.fit(_second_camera(d.x_fit, 0), d.y_fit)
    consensus = Consensus(
        [(_predict(camera, "a"), ("a",)), (_predict(other, "b"), ("b",))], agree=2
    )
    seen_b = _second_camera(d.x_eval, 1)
    clean = consensus({"a": d.x_eval, "b": seen_b})
    decided_right = (clean["label"] == d.y_eval).mean()
    assert decided_right >= (camera.predict(d.x_eval) == d.y_eval).mean() - 0.02
    # the attacker controls the first sensor only: PGD on its model
    attacked = pgd(loss_gradient(camera), d.x_eval, d.y_eval, epsilon=0.2)
    fooled = camera.predict(attacked) != d.y_eval
    out = consensus({"a": attacked, "b": seen_b})
    caught = (out["label"] == -1) | (out["label"] == d.y_eval)
    assert fooled.mean() > 0.8 and caught[fooled].mean() >= 0.9
    assert ((out["label"] == -1) == (out["agreement"] < 2)).all()
    kept = Consensus(consensus.members, agree=2, withhold=False)({"a": attacked, "b": seen_b})
    assert (kept["label"] >= 0).all()  # not withheld: the vote's winner, agreement says how weak


def test_hop_skip_jump_finds_a_close_adversarial_from_labels_alone(
    members: dict[str, Any],
) -> None:
    d, lr = members["d"], members["lr"]
    labels_only = lambda x: np.eye(10)[lr.predict(x)]  # noqa: E731
    x, y = d.x_eval[0], int(d.y_eval[0])
    result = hop_skip_jump(labels_only, x, label=y, max_queries=4000)
    assert result.queries <= 4000
    assert lr.predict(result.x[None])[0] != y
    assert result.distance < 0.6 * np.linalg.norm(np.full(64, 0.5) - x)  # well inside the box
    refused = hop_skip_jump(_refuses_after(5, labels_only), x, label=y)
    assert refused.stopped.startswith("PermissionError") and refused.queries == 5


def _refuses_after(n: int, scores: Any) -> Any:
    count = [0]

    def answer(x: np.ndarray) -> np.ndarray:
        count[0] += 1
        if count[0] > n:
            raise PermissionError("suspended")
        return np.asarray(scores(x))

    return answer


def test_the_gateway_serves_an_ensemble_and_a_consensus_from_the_policy(
    tmp_path: Path, members: dict[str, Any]
) -> None:
    from atlasguard.gateway.demo import export_onnx
    from atlasguard.gateway.service import Gateway
    from atlasguard.policy import load_policy_text

    pytest.importorskip("onnxruntime")
    from sklearn.neural_network import MLPClassifier

    d = members["d"]
    mlp = MLPClassifier((32,), max_iter=2000, random_state=0).fit(d.x_fit, d.y_fit)
    for name, model in (("lr", members["lr"]), ("mlp", mlp)):
        (tmp_path / name).mkdir()
        export_onnx(model, tmp_path / name / "model.onnx")
    tensor = '[{ name = "input", datatype = "FP32", shape = [-1, 64] }]'
    text = f"""
[controls.access]
enabled = true
[controls.scan]
enabled = true
[controls.ensemble]
enabled = true
[controls.consensus]
enabled = true
[models.lr]
path = "lr/model.onnx"
inputs = {tensor}
expose = false
[models.mlp]
path = "mlp/model.onnx"
inputs = {tensor}
[models.vote]
backend = "ensemble"
members = ["lr", "mlp"]
inputs = {tensor}
[models.both]
backend = "consensus"
members = ["lr", "mlp"]
agree = 2
inputs = {tensor}
[models.broken]
backend = "ensemble"
members = ["lr", "nowhere"]
inputs = {tensor}
"""
    policy = load_policy_text(text, path=tmp_path / "atlasguard.toml")
    from atlasguard.runtime.plan import plan

    parts = {p.name: p for p in plan(policy)}
    assert parts["ensemble"].mitigates == {"AML.M0006"} and "vote" in parts["ensemble"].summary
    assert parts["consensus"].mitigates == {"AML.M0009"}
    gateway = Gateway.from_policy(policy)
    try:
        assert set(gateway.models) == {"mlp", "vote", "both"}  # lr is a member only
        assert "nowhere" in gateway.refused["broken"]
        key = gateway.deployment.identity.create_key("u").secret
        gateway.deployment.identity.grant("u", "*")
        batch = {"input": d.x_eval[:50].astype(np.float32)}
        vote = gateway.models["vote"].protected(batch, credential=key).outputs
        assert set(vote) == {"label", "probabilities", "disagreement"}
        assert (vote["label"] == d.y_eval[:50]).mean() >= 0.9
        both = gateway.models["both"].protected(batch, credential=key).outputs
        assert set(both["agreement"].tolist()) <= {1, 2}
        assert ((both["label"] == -1) == (both["agreement"] < 2)).all()
        assert [o.name for o in gateway.models["vote"].backend.outputs] == list(vote)
    finally:
        gateway.close()
    off = load_policy_text(
        text.replace("[controls.ensemble]\nenabled = true\n", ""), path=tmp_path / "off.toml"
    )
    gateway = Gateway.from_policy(off)
    try:
        assert "[controls.ensemble] enabled = true" in gateway.refused["vote"]
        assert "both" in gateway.models
    finally:
        gateway.close()
