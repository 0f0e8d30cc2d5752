from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from atlasguard.errors import ConfigurationError
from atlasguard.gateway.http import STATUS
from atlasguard.gateway.oip import InvalidInput
from atlasguard.gateway.preprocess import Preprocessor
from atlasguard.policy import PreprocessStep


def test_scale_clip_standardize_in_order() -> None:
    pre = Preprocessor.from_spec(
        (
            PreprocessStep(op="scale", factor=1 / 16),
            PreprocessStep(op="clip", min=0.0, max=1.0),
            PreprocessStep(op="standardize", mean=(0.5, 0.25), std=(0.5, 0.25)),
        )
    )
    x = np.array([[8.0, 32.0], [-4.0, 4.0]], dtype=np.float32)
    out = pre({"input": x})["input"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 3.0], [-1.0, 0.0]])
    assert x[0, 0] == 8.0  # the caller's array is left alone


def test_clip_with_one_bound() -> None:
    low = Preprocessor.from_spec((PreprocessStep(op="clip", min=0.0),))
    high = Preprocessor.from_spec((PreprocessStep(op="clip", max=1.0),))
    x = np.array([-2.0, 0.5, 3.0])
    assert low({"x": x})["x"].tolist() == [0.0, 0.5, 3.0]
    assert high({"x": x})["x"].tolist() == [-2.0, 0.5, 1.0]


def test_only_float_inputs_are_touched() -> None:
    pre = Preprocessor.from_spec((PreprocessStep(op="scale", factor=2.0),))
    ids = np.array([1, 2], dtype=np.int64)
    out = pre({"ids": ids, "x": np.array([1.0], dtype=np.float64)})
    assert out["ids"] is ids
    assert out["x"].tolist() == [2.0] and out["x"].dtype == np.float64


def test_empty_preprocessor_passes_through() -> None:
    pre = Preprocessor.from_spec(())
    x = np.ones(3, dtype=np.float32)
    assert not pre
    assert pre({"x": x})["x"] is x


def test_standardize_checks_feature_count() -> None:
    pre = Preprocessor.from_spec(
        (PreprocessStep(op="standardize", mean=(0.0,) * 3, std=(1.0,) * 3),)
    )
    with pytest.raises(
        InvalidInput, match="expects 3 features in the last dimension, got 4"
    ) as info:
        pre({"input": np.zeros((2, 4), dtype=np.float32)})
    assert STATUS[info.value.reason] == 422
    with pytest.raises(InvalidInput):
        pre({"input": np.float32(1.0) * np.ones((), dtype=np.float32)})


def test_overflow_is_refused_not_warned() -> None:
    pre = Preprocessor.from_spec((PreprocessStep(op="scale", factor=1e30),))
    with pytest.raises(InvalidInput, match="representable range") as info:
        pre({"x": np.array([1e30], dtype=np.float32)})
    assert STATUS[info.value.reason] == 422


@pytest.mark.parametrize(
    ("step", "fragment"),
    [
        (PreprocessStep(op="clip"), "give min, max or both"),
        (PreprocessStep(op="clip", min=2.0, max=1.0), "min 2.0 is above max 1.0"),
        (PreprocessStep(op="clip", min=float("nan")), "finite"),
        (PreprocessStep(op="scale", factor=float("inf")), "finite"),
        (PreprocessStep(op="standardize"), "non-empty"),
        (PreprocessStep(op="standardize", mean=(0.0, 1.0), std=(1.0,)), "got 2 and 1"),
        (PreprocessStep(op="standardize", mean=(0.0,), std=(0.0,)), "std positive"),
    ],
)
def test_bad_steps_are_configuration_errors(step: PreprocessStep, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment.replace("(", r"\(")) as info:
        Preprocessor.from_spec((PreprocessStep(op="scale"), step))
    assert "preprocess[1]" in str(info.value)


@settings(max_examples=60, deadline=1000)
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
        elements=st.floats(-1e6, 1e6, width=32),
    )
)
def test_clip_bounds_every_value(x: np.ndarray) -> None:
    pre = Preprocessor.from_spec((PreprocessStep(op="clip", min=0.0, max=1.0),))
    out = pre({"x": x})["x"]
    assert out.shape == x.shape and out.dtype == np.float32
    assert (out >= 0).all() and (out <= 1).all()
    np.testing.assert_array_equal(out[(x >= 0) & (x <= 1)], x[(x >= 0) & (x <= 1)])
