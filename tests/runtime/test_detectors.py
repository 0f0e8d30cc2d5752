"""Per-input detectors (AML.M0015): the estimator contract, calibration, the guard.

Data: scikit-learn's digits split three ways (:mod:`atlasguard.models.data`):
models and detectors are fit and calibrated on ``fit``; false-positive rates and
attacks are measured on ``eval``; settings were chosen on ``tune``
(``bench/efficacy/tune_detectors.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from atlasguard.errors import ConfigurationError
from atlasguard.models.attacks import fgsm, loss_gradient, pgd
from atlasguard.models.data import digits_splits
from atlasguard.policy import load_policy_text
from atlasguard.runtime.deployment import Deployment
from atlasguard.runtime.detectors import (
    DetectorGuard,
    DisagreementDetector,
    KnnDetector,
    MahalanobisDetector,
    SqueezingDetector,
    StripDetector,
    build_detectors,
    cross_calibrate,
)
from atlasguard.runtime.pipeline import Denied
from atlasguard.runtime.plan import plan

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits() -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    d = digits_splits()
    model = LogisticRegression(max_iter=2000, random_state=0).fit(d.x_fit, d.y_fit)
    mlp = MLPClassifier((32,), max_iter=2000, random_state=0).fit(d.x_fit, d.y_fit)
    return {"d": d, "model": model, "mlp": mlp}


def _contract_cases(digits: dict[str, Any]) -> list[Any]:
    model, mlp = digits["model"], digits["mlp"]
    return [
        SqueezingDetector(model.predict_proba, bits=2, median=2, shape=(8, 8)),
        MahalanobisDetector(shrinkage=0.05),
        MahalanobisDetector(labels=model.predict, embed=model.predict_proba),
        KnnDetector(k=3),
        DisagreementDetector([model.predict_proba, mlp.predict_proba]),
        StripDetector(model.predict_proba, samples=8),
    ]


@pytest.mark.parametrize("index", range(6))
def test_every_detector_follows_the_estimator_contract(index: int, digits: dict[str, Any]) -> None:
    detector = _contract_cases(digits)[index]
    assert not [a for a in vars(detector) if a.endswith("_")]  # no work in __init__
    with pytest.raises(ValueError, match="not calibrated"):
        detector.predict(digits["d"].x_tune[:3])
    assert detector.fit(digits["d"].x_fit) is detector
    x = digits["d"].x_tune[:50]
    scores = detector.score_samples(x)
    assert scores.shape == (50,) and np.isfinite(scores).all()
    assert detector.calibrate(digits["d"].x_tune, fpr=0.05) is detector
    assert isinstance(detector.threshold_, float)
    flags = detector.predict(x)
    assert flags.dtype == bool and flags.shape == (50,)
    # calibrated on tune: about 5% of tune is above the threshold, by construction
    assert detector.predict(digits["d"].x_tune).mean() <= 0.05 + 1e-9


def test_cross_calibration_holds_the_rate_on_held_out_digits(digits: dict[str, Any]) -> None:
    d = digits["d"]
    for detector in (MahalanobisDetector(), KnnDetector(k=1)):
        cross_calibrate(detector, d.x_fit, fpr=0.05)
        rate = detector.predict(d.x_eval).mean()  # never seen by fit or calibration
        assert rate <= 0.10, (type(detector).__name__, rate)


def test_the_default_detectors_catch_pgd_at_eps_0_2(digits: dict[str, Any]) -> None:
    d, model = digits["d"], digits["model"]
    detectors = build_detectors(model.predict_proba, d.x_fit, fpr=0.05, image_shape=(8, 8))
    adv = pgd(loss_gradient(model), d.x_eval, d.y_eval, epsilon=0.2, steps=20)
    evading = model.predict(adv) != d.y_eval
    flagged = np.any([det.predict(adv) for det in detectors.values()], axis=0)
    clean = np.any([det.predict(d.x_eval) for det in detectors.values()], axis=0)
    assert evading.mean() > 0.8  # the attack works on the bare model
    assert flagged[evading].mean() >= 0.9
    assert clean.mean() <= 0.10


def test_an_adaptive_attack_that_knows_the_detector_gets_past_it(
    digits: dict[str, Any],
) -> None:
    # The honest limit of an input-space detector: PGD that also descends the
    # Mahalanobis score stays inside the clean inputs' ellipse and evades.
    d, model = digits["d"], digits["model"]
    maha = cross_calibrate(MahalanobisDetector(), d.x_fit, fpr=0.05)
    x, y = d.x_eval[:150], d.y_eval[:150]
    g = loss_gradient(model)
    plain = pgd(g, x, y, epsilon=0.2, steps=40)
    adaptive = pgd(g, x, y, epsilon=0.2, steps=100, detector=maha.gradient, weight=1.0)
    evades = lambda a: ((model.predict(a) != y) & ~maha.predict(a)).mean()  # noqa: E731
    assert evades(adaptive) > evades(plain) + 0.3


def test_gradients_match_finite_differences(digits: dict[str, Any]) -> None:
    d = digits["d"]
    rng = np.random.default_rng(0)
    x = d.x_eval[:3] + rng.normal(0, 0.05, (3, 64))
    y = d.y_eval[:3]
    maha = MahalanobisDetector().fit(d.x_fit)
    knn = KnnDetector(k=3).fit(d.x_fit)
    for name in ("model", "mlp"):
        model = digits[name]
        g = loss_gradient(model)(x, y)

        def loss(z: np.ndarray, model: Any = model) -> float:
            p = model.predict_proba(z)
            return float(-np.log(p[np.arange(len(z)), y]).sum())

        _check_gradient(loss, g, x)
    _check_gradient(lambda z: float(maha.score_samples(z).sum()), maha.gradient(x), x)
    _check_gradient(lambda z: float(knn.score_samples(z).sum()), knn.gradient(x), x)


def _check_gradient(f: Any, grad: np.ndarray, x: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    for _ in range(3):
        direction = rng.normal(size=x.shape)
        h = 1e-5
        numeric = (f(x + h * direction) - f(x - h * direction)) / (2 * h)
        assert numeric == pytest.approx(float((grad * direction).sum()), rel=1e-3, abs=1e-6)


def test_fgsm_moves_every_pixel_by_epsilon_within_bounds(digits: dict[str, Any]) -> None:
    d, model = digits["d"], digits["model"]
    adv = fgsm(loss_gradient(model), d.x_eval[:20], d.y_eval[:20], epsilon=0.1)
    assert np.abs(adv - d.x_eval[:20]).max() <= 0.1 + 1e-12
    assert adv.min() >= 0 and adv.max() <= 1
    assert (model.predict(adv) != d.y_eval[:20]).mean() > (
        model.predict(d.x_eval[:20]) != d.y_eval[:20]
    ).mean()


MODEL = (
    '[models.digits]\nreference = "ref.npy"\n'
    'inputs = [{ name = "input", datatype = "FP32", shape = [-1, 64], min = 0.0, max = 1.0 }]\n'
)


def _policy(tmp_path: Path, action: str, digits: dict[str, Any]) -> Any:
    np.save(tmp_path / "ref.npy", digits["d"].x_fit.astype(np.float32))
    text = (
        "[controls.access]\nenabled = true\n[controls.detectors]\nenabled = true\n"
        f'action = "{action}"\nfpr = 0.05\n' + MODEL
    )
    return load_policy_text(text, path=tmp_path / "atlasguard.toml")


def _predict(model: Any) -> Any:
    def predict(inputs: Any) -> dict[str, np.ndarray]:
        p = model.predict_proba(inputs["input"]).astype(np.float32)
        return {"label": p.argmax(axis=1), "probabilities": p}

    return predict


@pytest.mark.parametrize("action", ["block", "label", "flag", "log"])
def test_the_guard_acts_in_the_deployment_and_audits(
    action: str, tmp_path: Path, digits: dict[str, Any]
) -> None:
    d, model = digits["d"], digits["model"]
    policy = _policy(tmp_path, action, digits)
    assert "detectors" in [p.name for p in plan(policy)]
    adv = pgd(loss_gradient(model), d.x_eval[:40], d.y_eval[:40], epsilon=0.2)
    with Deployment.open(policy) as deployment:
        key = deployment.identity.create_key("eve").secret
        deployment.identity.grant("eve", "digits")
        protected = deployment.protect(_predict(model), name="digits")
        clean = protected({"input": d.x_eval[40:41].astype(np.float32)}, credential=key)
        assert clean.flags == () and clean.outputs["probabilities"].dtype == np.float32
        outcomes = []
        for row in adv.astype(np.float32):
            try:
                outcomes.append(protected({"input": row[None]}, credential=key))
            except Denied as denied:
                assert denied.reason == "detected"
                outcomes.append(None)
    if action == "block":
        assert sum(o is None for o in outcomes) >= 30
    elif action == "label":
        labelled = [o for o in outcomes if o is not None and o.outputs["probabilities"].ndim == 1]
        assert len(labelled) >= 30 and None not in outcomes
        assert all(o.flags == ("adversarial-input",) for o in labelled)
    elif action == "flag":
        assert sum(o is not None and o.flags == ("adversarial-input",) for o in outcomes) >= 30
    else:
        assert None not in outcomes and all(o.flags == () for o in outcomes)
    with Deployment.open(policy) as deployment:
        rows = [r.to_dict() for _i, r in deployment.audit.records()]
    infer = [r for r in rows if r["action"] == "infer" and r["principal"] == "eve"]
    assert len(infer) == 41  # one record per request, the detection in it
    if action == "block":
        assert sum(r["reason"] == "detected" for r in infer) >= 30
    else:
        noted = [r for r in infer if "detected: mahalanobis" in r["details"].get("notes", "")]
        assert len(noted) >= 30 and all(r["decision"] == "allow" for r in noted)
    assert not [r for r in rows if r["action"] == "detector.alarm"]  # no record of its own


def test_a_listed_model_without_a_reference_is_a_clear_error(tmp_path: Path) -> None:
    text = (
        "[controls.access]\nenabled = true\n[controls.detectors]\nenabled = true\n"
        'models = ["digits"]\n'
        '[models.digits]\ninputs = [{ name = "input", datatype = "FP32", shape = [-1, 64] }]\n'
    )
    policy = load_policy_text(text, path=tmp_path / "atlasguard.toml")
    with pytest.raises(ConfigurationError, match="needs a reference"):
        DetectorGuard.for_model(policy, "digits", lambda x: x)


def test_the_cnn_gradient_matches_finite_differences(digits: dict[str, Any]) -> None:
    pytest.importorskip("torch")
    from atlasguard.models.cnn import train_cnn

    d = digits["d"]
    cnn = train_cnn(d.x_fit, d.y_fit, epochs=5)
    assert (cnn.predict(d.x_eval) == d.y_eval).mean() > 0.8
    x, y = d.x_eval[:2], d.y_eval[:2]

    def loss(z: np.ndarray) -> float:
        p = np.clip(cnn.predict_proba(z), 1e-12, 1)
        return float(-np.log(p[np.arange(len(z)), y]).sum())

    grad = loss_gradient(cnn)(x, y)
    rng = np.random.default_rng(1)
    direction = rng.normal(size=x.shape)
    h = 1e-3  # float32 inside the network: a coarser step
    numeric = (loss(x + h * direction) - loss(x - h * direction)) / (2 * h)
    assert numeric == pytest.approx(float((grad * direction).sum()), rel=0.05, abs=1e-3)


def test_a_reference_of_another_width_or_a_variable_input_is_refused(
    tmp_path: Path, digits: dict[str, Any]
) -> None:
    np.save(tmp_path / "ref.npy", digits["d"].x_fit[:, :32].astype(np.float32))
    text = (
        "[controls.access]\nenabled = true\n[controls.detectors]\nenabled = true\n"
        '[models.digits]\nreference = "ref.npy"\n'
        'inputs = [{ name = "input", datatype = "FP32", shape = [-1, 64] }]\n'
    )
    policy = load_policy_text(text, path=tmp_path / "atlasguard.toml")
    with pytest.raises(ConfigurationError, match="fixed shape matching its reference") as err:
        DetectorGuard.for_model(policy, "digits", _predict(digits["model"]))
    assert str(tmp_path) not in str(err.value).replace(str(tmp_path / "atlasguard.toml"), "")


def test_a_row_that_cannot_be_scored_counts_as_detected(digits: dict[str, Any]) -> None:
    maha = MahalanobisDetector().fit(digits["d"].x_fit).calibrate(digits["d"].x_tune, fpr=0.05)
    row = digits["d"].x_eval[:1].copy()
    row[0, 3] = np.nan
    assert maha.predict(row).tolist() == [True]


def test_strip_finds_backdoor_triggered_inputs(digits: dict[str, Any]) -> None:
    """STRIP on a model trained with a corner trigger: calibrated on clean digits, it flags
    triggered ones and few clean ones (bench training has the full figure)."""
    from sklearn.neural_network import MLPClassifier

    from atlasguard.models.poisoning import apply_trigger, badnets

    d = digits["d"]
    attack = badnets(d.x_fit, d.y_fit, rate=0.1, target=0, random_state=2)
    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=500, random_state=0)
    model.fit(attack.x, attack.y)
    half = len(d.x_tune) // 2
    strip = StripDetector(model.predict_proba, samples=16).fit(d.x_tune[:half])
    strip.calibrate(d.x_tune[half:], fpr=0.02)
    others = d.x_eval[d.y_eval != 0]
    triggered = apply_trigger(others, attack.trigger)
    assert strip.predict(triggered).mean() >= 0.9
    assert strip.predict(d.x_eval).mean() <= 0.06
