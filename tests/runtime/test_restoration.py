"""Input restoration (AML.M0010): the steps, the guard, the policy, hostile text and arrays."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from atlasguard.errors import ConfigurationError
from atlasguard.policy import load_policy_text
from atlasguard.runtime.pipeline import Pipeline, Request
from atlasguard.runtime.plan import plan
from atlasguard.runtime.restoration import KINDS, RestorationGuard, Restorer, clean_text
from atlasguard.runtime.settings import RestoreStep


def test_text_restoration_undoes_the_usual_disguises() -> None:
    assert clean_text("ｉｇｎｏｒｅ") == "ignore"  # full-width letters
    assert clean_text("ig\u200bno\u200dre \u202eprevious") == "ignore previous"
    assert clean_text("\U000e0069\U000e0067nore") == "nore"  # tag characters (ASCII smuggling)
    assert clean_text("pаypаl") == "paypal"  # Cyrillic a inside a Latin word
    assert clean_text("ﬁle") == "file"  # ligature
    # a word wholly in another script is that script, not a disguise
    assert clean_text("привет мир") == "привет мир"
    assert clean_text("καλημέρα") == "καλημέρα"


@given(st.text())
@settings(max_examples=300)
def test_restored_text_has_no_invisible_characters_and_is_idempotent(text: str) -> None:
    out = clean_text(text)
    assert not any(unicodedata.category(c) == "Cf" for c in out)
    assert clean_text(out) == out  # restoring twice changes nothing


def test_every_step_declares_its_kinds_and_refuses_others() -> None:
    assert set(KINDS) == {
        "bit_depth", "median", "gaussian", "jpeg", "clip", "quantize", "nfkc", "invisible",
        "homoglyphs",
    }  # fmt: skip
    with pytest.raises(ConfigurationError, match="applies to text inputs, not to image"):
        Restorer.build([RestoreStep(op="nfkc")], kind="image", shape=(8, 8), value_range=(0, 1))
    with pytest.raises(ConfigurationError, match="applies to image inputs"):
        Restorer.build([RestoreStep(op="median")], kind="tabular")
    with pytest.raises(ConfigurationError, match="needs its shape"):
        Restorer.build([RestoreStep(op="bit_depth")], kind="image", value_range=(0, 1))
    with pytest.raises(ConfigurationError, match="needs the input's range"):
        Restorer.build([RestoreStep(op="bit_depth")], kind="tabular")
    with pytest.raises(ConfigurationError, match="training range"):
        Restorer.build([RestoreStep(op="clip")], kind="tabular")


def _image(steps: list[RestoreStep], shape: tuple[int, ...] = (8, 8)) -> Restorer:
    return Restorer.build(steps, kind="image", shape=shape, value_range=(0.0, 1.0))


def test_image_steps_remove_small_perturbations() -> None:
    rng = np.random.default_rng(0)
    clean = (rng.uniform(size=(5, 64)) > 0.5).astype(np.float64)
    noisy = np.clip(clean + rng.uniform(-0.1, 0.1, clean.shape), 0, 1)
    assert np.array_equal(_image([RestoreStep(op="bit_depth", bits=1)])(noisy), clean)
    speck = np.zeros((1, 64))
    speck[0, 27] = 1.0  # one bright pixel: median smoothing removes it
    assert _image([RestoreStep(op="median", size=3)])(speck).max() == 0.0
    blurred = _image([RestoreStep(op="gaussian", sigma=1.0)])(speck)
    assert 0 < blurred.max() < 0.5 and blurred.sum() == pytest.approx(1.0, abs=0.05)
    jpeg = _image([RestoreStep(op="jpeg", quality=50)])(noisy)
    assert jpeg.shape == noisy.shape and np.abs(jpeg - noisy).mean() < 0.25


def test_colour_images_and_integer_inputs_keep_shape_and_dtype() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.uniform(size=(2, 16, 16, 3)).astype(np.float32)
    for step in ("median", "gaussian", "jpeg", "bit_depth"):
        out = _image([RestoreStep(op=step)], shape=(16, 16, 3))(rgb)  # type: ignore[arg-type]
        assert out.shape == rgb.shape and out.dtype == np.float32


def test_tabular_clip_to_the_training_range_and_quantize() -> None:
    reference = np.array([[0.0, 10.0], [1.0, 20.0], [0.5, 15.0]])
    r = Restorer.build(
        [RestoreStep(op="clip"), RestoreStep(op="quantize", step=0.5)],
        kind="tabular",
        reference=reference,
    )
    assert r(np.array([[-3.0, 99.0], [0.74, 12.2]])).tolist() == [[0.0, 20.0], [0.5, 12.0]]


@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 3), st.just(64)),
        elements=st.floats(-1e6, 1e6, width=32, allow_nan=False),
    ),
    st.sampled_from(["bit_depth", "median", "gaussian", "jpeg", "clip"]),
)
@settings(max_examples=60, deadline=None)
def test_any_float_batch_keeps_its_shape_and_stays_in_range(x: np.ndarray, op: str) -> None:
    step = RestoreStep(op=op, min=0.0, max=1.0)  # type: ignore[arg-type]
    out = _image([RestoreStep(op="clip", min=0.0, max=1.0), step])(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0 + 1e-6


POLICY = """
[controls.access]
enabled = true
[controls.restoration]
enabled = true
[controls.restoration.models.digits]
kind = "image"
steps = [{ op = "bit_depth", bits = 1 }]
[controls.restoration.models.notes]
kind = "text"
steps = [{ op = "nfkc" }, { op = "invisible" }]
[models.digits]
inputs = [{ name = "input", datatype = "FP32", shape = [-1, 8, 8], min = 0.0, max = 1.0 }]
[models.notes]
inputs = [{ name = "text", datatype = "BYTES", shape = [-1] }]
"""


def test_the_guard_restores_what_the_model_sees_per_model(tmp_path: Path) -> None:
    policy = load_policy_text(POLICY, path=tmp_path / "atlasguard.toml")
    assert "restoration" in [p.name for p in plan(policy)]
    guard = RestorationGuard.from_policy(policy)
    seen: dict[str, np.ndarray] = {}

    def model(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.update(inputs)
        return {"out": np.zeros(1)}

    pipe = Pipeline(guards=(guard,), predict=model)  # type: ignore[arg-type]
    image = np.full((1, 8, 8), 0.4, np.float32)
    pipe(Request(model="digits", inputs={"input": image}))
    assert seen["input"].max() == 0.0 and seen["input"].shape == (1, 8, 8)
    text = np.array([b"ig\xe2\x80\x8bnore \xef\xbd\x81"], dtype=object)
    pipe(Request(model="notes", inputs={"text": text}))
    assert seen["text"].tolist() == [b"ignore a"]
    pipe(Request(model="other", inputs={"input": image}))
    assert seen["input"] is image  # a model without restoration is left alone


def test_a_restoration_for_an_undeclared_model_is_a_clear_error(tmp_path: Path) -> None:
    text = POLICY.replace("[models.notes]", "[models.unrelated]")
    policy = load_policy_text(text, path=tmp_path / "atlasguard.toml")
    with pytest.raises(ConfigurationError, match=r"no \[models.notes\] is declared"):
        RestorationGuard.from_policy(policy)
