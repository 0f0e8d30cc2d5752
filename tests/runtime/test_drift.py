"""Drift tests: quiet on held-out clean windows, loud on shifted ones, and an audit record
from the gateway guard when served traffic drifts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from atlasguard.models.data import digits_splits
from atlasguard.policy import load_policy_text
from atlasguard.runtime.deployment import Deployment
from atlasguard.runtime.drift import DriftDetector
from atlasguard.runtime.plan import plan

pytest.importorskip("sklearn")
pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def digits() -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    d = digits_splits()
    model = LogisticRegression(max_iter=2000).fit(d.x_fit, d.y_fit)
    return {"d": d, "model": model}


def _windows(x: np.ndarray, size: int, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [x[rng.choice(len(x), size=size, replace=False)] for _ in range(count)]


def test_clean_windows_rarely_alarm_and_noise_always_does(digits: dict[str, Any]) -> None:
    d, model = digits["d"], digits["model"]
    detector = DriftDetector(alpha=0.05, permutations=100)
    detector.fit(d.x_tune, model.predict_proba(d.x_tune))
    clean = _windows(d.x_eval, 100, 20, seed=1)
    alarms = [detector.test(w, model.predict_proba(w)).drifted for w in clean]
    assert sum(alarms) <= 3  # alpha 0.05 per window, 20 windows
    rng = np.random.default_rng(2)
    noisy = [np.clip(w + rng.normal(0, 0.15, w.shape), 0, 1) for w in clean[:5]]
    found = [detector.test(w, model.predict_proba(w)) for w in noisy]
    assert all(r.drifted for r in found)
    assert "drift over 100 rows" in found[0].reason()


def test_a_categorical_feature_uses_chi_squared() -> None:
    rng = np.random.default_rng(0)
    ref = np.column_stack([rng.integers(0, 3, 400), rng.normal(size=400)])
    now = np.column_stack([rng.choice(3, 200, p=[0.8, 0.1, 0.1]), rng.normal(size=200)])
    result = DriftDetector(permutations=50, names=("colour", "size")).fit(ref).test(now)
    assert result.drifted and result.features[0].feature == "colour"
    assert result.features[0].test == "chi-squared" and result.features[0].psi > 0.1


def test_values_the_reference_never_took_are_one_category_so_power_grows_with_the_window() -> None:
    """A feature the reference shows as categories (a pixel always 0): a shift that gives
    10% of the rows new values, each different, is seen in small and large windows alike
    (as categories of their own, new values lost power as the window grew)."""
    rng = np.random.default_rng(0)
    ref = np.column_stack([np.zeros(450), rng.normal(size=450)])
    detector = DriftDetector(permutations=20).fit(ref)
    for window in (50, 200, 400):
        now = np.column_stack([np.zeros(window), rng.normal(size=window)])
        chosen = rng.choice(window, size=window // 10, replace=False)  # 10% of the rows
        now[chosen, 0] = rng.uniform(0.01, 0.3, len(chosen))  # each value new
        result = detector.test(now)
        assert result.drifted, (window, result.p_values)
        assert (
            result.features[0].test == "chi-squared" and result.features[0].feature == "feature 0"
        )
    clean = np.column_stack([np.zeros(200), rng.normal(size=200)])
    assert not detector.test(clean).drifted


def test_bad_windows_are_refused() -> None:
    detector = DriftDetector().fit(np.zeros((20, 3)) + np.arange(20)[:, None])
    with pytest.raises(ValueError, match="3 features"):
        detector.test(np.zeros((10, 2)))


def test_the_guard_records_drift_in_the_audit_log(tmp_path: Path, digits: dict[str, Any]) -> None:
    d, model = digits["d"], digits["model"]
    np.save(tmp_path / "ref.npy", d.x_fit.astype(np.float32))
    np.save(tmp_path / "held.npy", d.x_tune.astype(np.float32))
    text = (
        "[controls.access]\nenabled = true\n[controls.drift]\nenabled = true\n"
        "window = 50\nevery = 50\nalpha = 0.01\npermutations = 50\n"
        '[models.digits]\nreference = "ref.npy"\ncalibration = "held.npy"\n'
        'inputs = [{ name = "input", datatype = "FP32", shape = [-1, 64] }]\n'
    )
    policy = load_policy_text(text, path=tmp_path / "atlasguard.toml")
    assert "drift" in [p.name for p in plan(policy)]

    def predict(inputs: Any) -> dict[str, np.ndarray]:
        p = model.predict_proba(inputs["input"]).astype(np.float32)
        return {"label": p.argmax(axis=1), "probabilities": p}

    rng = np.random.default_rng(3)
    with Deployment.open(policy) as deployment:
        key = deployment.identity.create_key("app").secret
        deployment.identity.grant("app", "digits")
        protected = deployment.protect(predict, name="digits")
        for row in d.x_eval[:50]:  # a clean window
            protected({"input": row[None].astype(np.float32)}, credential=key)
        shifted = np.clip(d.x_eval[50:100] + rng.normal(0, 0.2, (50, 64)), 0, 1)
        for row in shifted:
            out = protected({"input": row[None].astype(np.float32)}, credential=key)
            assert out.flags == ()  # drift never changes an answer
        guard = next(g for g in protected.pipeline.guards if g.name == "drift")
        guard.drain()  # type: ignore[attr-defined]
    with Deployment.open(policy) as deployment:
        rows = [r.to_dict() for _i, r in deployment.audit.records()]
    alarms = [r for r in rows if r["action"] == "drift.alarm"]
    assert len(alarms) == 1 and alarms[0]["model"] == "digits"
    assert "drift over 50 rows" in alarms[0]["details"]["why"]
