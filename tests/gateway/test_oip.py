from __future__ import annotations

import json
import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from atlasguard.errors import UsageError
from atlasguard.gateway.backends.base import OutputMeta
from atlasguard.gateway.http import STATUS
from atlasguard.gateway.oip import (
    DATATYPES,
    InferRequest,
    InvalidInput,
    decode_tensor,
    encode_tensor,
    infer_response,
    model_metadata,
    numpy_dtype,
    oip_datatype,
    parse_infer_request,
)
from atlasguard.policy import ModelSpec, PreprocessStep, TensorSpec
from atlasguard.runtime.pipeline import Denied

LIMIT = 1 << 20
SPEC = ModelSpec(
    path="models/secret-location/model.onnx",
    inputs=(TensorSpec(name="input", datatype="FP32", shape=(-1, 4), min=0.0, max=1.0),),
    outputs=("label", "probabilities"),
    preprocess=(PreprocessStep(op="clip", min=0.0, max=1.0),),
    max_batch=8,
)


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def tensor(
    data: Any, shape: Any = (1, 4), name: str = "input", datatype: str = "FP32"
) -> dict[str, Any]:
    return {"name": name, "shape": list(shape), "datatype": datatype, "data": data}


def parse(obj: Any, spec: ModelSpec = SPEC, **kw: Any) -> InferRequest:
    raw = obj if isinstance(obj, bytes) else body(obj)
    return parse_infer_request(raw, spec, max_body_bytes=kw.pop("max_body_bytes", LIMIT), **kw)


def refused(obj: Any, spec: ModelSpec = SPEC, **kw: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse(obj, spec, **kw)
    return info.value


# -- accepted requests ---------------------------------------------------------------------


def test_flat_request_becomes_declared_dtype_and_shape() -> None:
    req = parse(
        {
            "id": "r1",
            "parameters": {"trace": True},
            "inputs": [tensor([0, 0.25, 0.5, 1], shape=(1, 4))],
            "outputs": [{"name": "label"}],
        }
    )
    arr = req.inputs["input"]
    assert arr.dtype == np.float32
    assert arr.shape == (1, 4)
    assert arr.tolist() == [[0.0, 0.25, 0.5, 1.0]]
    assert req.id == "r1"
    assert req.outputs == ("label",)
    assert req.parameters == {"trace": True}


def test_nested_data_is_flattened_row_major() -> None:
    req = parse({"inputs": [tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]], shape=(2, 4))]})
    np.testing.assert_allclose(req.inputs["input"][1], [0.5, 0.6, 0.7, 0.8], rtol=1e-6)
    assert req.outputs == () and req.id is None and req.parameters == {}


def test_other_datatypes() -> None:
    spec = ModelSpec(
        inputs=(
            TensorSpec(name="ids", datatype="INT64", shape=(-1,), min=-5, max=5),
            TensorSpec(name="flag", datatype="BOOL", shape=(-1,)),
            TensorSpec(name="text", datatype="BYTES", shape=(-1,)),
            TensorSpec(name="small", datatype="UINT8", shape=(-1,)),
        )
    )
    req = parse(
        {
            "inputs": [
                tensor([-5, 0, 5], shape=(3,), name="ids", datatype="INT64"),
                tensor([True, False], shape=(2,), name="flag", datatype="BOOL"),
                tensor(["a", "bc"], shape=(2,), name="text", datatype="BYTES"),
                tensor([0, 255], shape=(2,), name="small", datatype="UINT8"),
            ]
        },
        spec,
    )
    assert req.inputs["ids"].dtype == np.int64 and req.inputs["ids"].tolist() == [-5, 0, 5]
    assert req.inputs["flag"].dtype == np.bool_
    assert req.inputs["text"].tolist() == ["a", "bc"]
    assert req.inputs["small"].dtype == np.uint8
    assert (
        refused(
            {
                "inputs": [
                    tensor([6], shape=(1,), name="ids", datatype="INT64"),
                    tensor([True], shape=(1,), name="flag", datatype="BOOL"),
                    tensor(["a"], shape=(1,), name="text", datatype="BYTES"),
                    tensor([1], shape=(1,), name="small", datatype="UINT8"),
                ]
            },
            spec,
        ).reason
        == "invalid-input"
    )
    with pytest.raises(InvalidInput, match="UINT8 range"):
        parse(
            {
                "inputs": [
                    tensor([1], shape=(1,), name="ids", datatype="INT64"),
                    tensor([True], shape=(1,), name="flag", datatype="BOOL"),
                    tensor(["a"], shape=(1,), name="text", datatype="BYTES"),
                    tensor([256], shape=(1,), name="small", datatype="UINT8"),
                ]
            },
            spec,
        )


def test_zero_rows_are_accepted() -> None:
    assert parse({"inputs": [tensor([], shape=(0, 4))]}).inputs["input"].shape == (0, 4)


# -- refused requests ------------------------------------------------------------------------


def test_invalid_input_is_a_denial() -> None:
    err = refused(b"{")
    assert isinstance(err, Denied)
    assert (STATUS[err.reason], err.reason) == (400, "malformed")


@pytest.mark.parametrize(
    ("obj", "status", "fragment"),
    [
        (b"{", 400, "not valid JSON"),
        (b"\xff\xfe\x00garbage", 400, "request body"),
        (b"[1, 2]", 400, "must be a JSON object"),
        ({}, 400, '"inputs" must be a non-empty list'),
        ({"inputs": []}, 400, "non-empty list"),
        ({"inputs": {}}, 400, "non-empty list"),
        ({"inputs": [tensor([0] * 4)], "extra": 1}, 400, "unknown key 'extra'"),
        ({"inputs": [tensor([0] * 4)], "id": 5}, 400, '"id" must be a string'),
        ({"inputs": [tensor([0] * 4)], "parameters": []}, 400, '"parameters" must be an object'),
        ({"inputs": [1]}, 400, "inputs[0]: must be an object"),
        ({"inputs": [{"shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]}, 400, '"name"'),
        (
            {"inputs": [tensor([0] * 4, name="other")]},
            422,
            "unknown input; this model takes: input",
        ),
        ({"inputs": [tensor([0] * 4), tensor([0] * 4)]}, 400, "input given twice"),
        ({"inputs": [tensor([0] * 4, datatype="FP64")]}, 422, "does not match the declared FP32"),
        ({"inputs": [tensor([0] * 4, datatype="FLOAT")]}, 400, '"datatype" must be one of'),
        ({"inputs": [tensor([0] * 4, shape=(4,))]}, 422, "declared shape [N, 4]"),
        ({"inputs": [tensor([0] * 6, shape=(2, 3))]}, 422, "declared shape [N, 4]"),
        ({"inputs": [tensor([0] * 4, shape=(1, -4))]}, 400, "non-negative integers"),
        ({"inputs": [tensor([0] * 4, shape=(1, True))]}, 400, "non-negative integers"),
        ({"inputs": [{**tensor([0] * 4), "shape": "1,4"}]}, 400, '"shape" must be a list'),
        (
            {"inputs": [tensor([0] * 36, shape=(9, 4))]},
            422,
            "batch of 9 rows is larger than the limit of 8",
        ),
        ({"inputs": [tensor([0] * 3)]}, 400, '"shape" needs 4 elements, "data" holds 3'),
        ({"inputs": [tensor([0] * 5)]}, 400, '"data" holds more'),
        ({"inputs": [tensor([[0, 0], [0, 0, 0]])]}, 400, '"data" holds more'),
        ({"inputs": [tensor(7)]}, 400, '"data" must be a list'),
        (
            {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32"}]},
            400,
            '"data" is missing',
        ),
        ({"inputs": [tensor([0, 0, 0, "1"])]}, 400, "FP32 data must hold numbers, found a string"),
        ({"inputs": [tensor([0, 0, 0, True])]}, 400, "found a boolean"),
        ({"inputs": [tensor([0, 0, 0, None])]}, 400, "found null"),
        ({"inputs": [tensor([0, 0, 0, {}])]}, 400, "found an object"),
        ({"inputs": [tensor([0, 0, 0, 1.5])]}, 422, "above the declared maximum 1.0"),
        (
            {"inputs": [tensor([0, -0.5, 0, 0])]},
            422,
            "value -0.5 at index 1 is below the declared minimum",
        ),
        (
            b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, NaN]}]}',
            422,
            "finite",
        ),
        (
            b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 1e999]}]}',
            422,
            "finite",
        ),
        (
            b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, '
            + b"9" * 400
            + b"]}]}",
            422,
            "too large",
        ),
        (
            b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, '
            + b"9" * 5000
            + b"]}]}",
            400,
            "JSON cannot carry",
        ),
        (
            {"inputs": [{**tensor([0] * 4), "parameters": {"binary_data_size": 16}}]},
            400,
            "binary tensor data",
        ),
        (
            {"inputs": [tensor([0] * 4)], "outputs": [{"name": "secret"}]},
            422,
            "this model returns: label, probabilities",
        ),
        (
            {"inputs": [tensor([0] * 4)], "outputs": [{"name": "label"}, {"name": "label"}]},
            400,
            "requested twice",
        ),
        ({"inputs": [tensor([0] * 4)], "outputs": "label"}, 400, '"outputs" must be a list'),
        (
            {"inputs": [tensor([0] * 4)], "outputs": [{"name": "label", "x": 1}]},
            400,
            "unknown key 'x'",
        ),
    ],
)
def test_refusals_are_precise(obj: Any, status: int, fragment: str) -> None:
    err = refused(obj)
    assert STATUS[err.reason] == status, str(err)
    assert fragment in str(err)


def test_missing_input_is_named() -> None:
    spec = ModelSpec(inputs=(TensorSpec(name="a", shape=(-1,)), TensorSpec(name="b", shape=(-1,))))
    err = refused({"inputs": [tensor([1.0], shape=(1,), name="a")]}, spec)
    assert STATUS[err.reason] == 422 and "missing input: b" in str(err)


def test_body_size_limit_is_413() -> None:
    err = refused({"inputs": [tensor([0] * 4)]}, max_body_bytes=10)
    assert STATUS[err.reason] == 413 and "limit is 10" in str(err)


def test_value_outside_fp16_is_refused() -> None:
    spec = ModelSpec(inputs=(TensorSpec(name="h", datatype="FP16", shape=(-1,)),))
    err = refused({"inputs": [tensor([1e6], shape=(1,), name="h", datatype="FP16")]}, spec)
    assert STATUS[err.reason] == 422 and "too large for FP16" in str(err)


def test_int_types_reject_floats() -> None:
    spec = ModelSpec(inputs=(TensorSpec(name="i", datatype="INT32", shape=(-1,)),))
    err = refused({"inputs": [tensor([1.0], shape=(1,), name="i", datatype="INT32")]}, spec)
    assert "INT32 data must hold integers, found a number" in str(err)


def test_deep_nesting_is_refused_not_crashed() -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    assert refused(deep, max_body_bytes=1 << 20).reason == "malformed"
    nested: Any = [0.0]
    for _ in range(40):
        nested = [nested]
    err = refused(
        {"inputs": [tensor(nested, shape=(1, 1))]},
        ModelSpec(inputs=(TensorSpec(name="input", shape=(-1, -1)),)),
    )
    assert "nests deeper" in str(err)


@pytest.mark.timeout(60)
def test_huge_declared_shape_costs_nothing() -> None:
    spec = ModelSpec(inputs=(TensorSpec(name="input", shape=(-1, -1)),), max_batch=10**15)
    bodies = [
        body({"inputs": [tensor([0.5] * 10, shape=(10**12, 1))]}),
        body({"inputs": [tensor([0.5] * 10, shape=(1, 10**12))]}),
        body({"inputs": [tensor([0.5] * 10, shape=(10**6, 10**6))]}),
        body({"inputs": [tensor([0.5] * 10, shape=(1, int("9" * 4000)))]}),
    ]
    tracemalloc.start()
    try:
        for raw in bodies:
            with pytest.raises(InvalidInput) as info:
                parse_infer_request(raw, spec, max_body_bytes=LIMIT)
            assert STATUS[info.value.reason] == 413
            assert "more than the" in str(info.value)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, peak


def test_element_cap_counts_every_input() -> None:
    spec = ModelSpec(inputs=(TensorSpec(name="a", shape=(-1,)), TensorSpec(name="b", shape=(-1,))))
    ok = {
        "inputs": [tensor([0.0] * 3, shape=(3,), name="a"), tensor([0.0] * 3, shape=(3,), name="b")]
    }
    assert parse(ok, spec, max_elements=6).inputs["b"].shape == (3,)
    assert refused(ok, spec, max_elements=5).reason == "too-large"


def test_memory_stays_proportional_to_the_body() -> None:
    spec = ModelSpec(inputs=(TensorSpec(name="input", shape=(-1, 64)),), max_batch=4096)
    raw = body({"inputs": [tensor([0.5] * (1024 * 64), shape=(1024, 64))]})
    tracemalloc.start()
    try:
        req = parse_infer_request(raw, spec, max_body_bytes=LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert req.inputs["input"].shape == (1024, 64)
    # The parsed JSON list dominates: ~8 bytes a pointer plus float objects.
    assert peak < 40 * len(raw), (peak, len(raw))


# -- property tests: only InvalidInput may come out ------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)
DIMS = (
    st.integers(min_value=-2, max_value=10**13) | st.booleans() | st.floats() | st.text(max_size=3)
)
ELEMENT = (
    st.floats(allow_nan=True) | st.integers() | st.booleans() | st.none() | st.text(max_size=3)
)
TENSOR = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input", "other", "", 3]),
        "shape": st.lists(DIMS, max_size=4) | st.just([1, 4]) | st.just([2, 4]) | JSON,
        "datatype": st.sampled_from([*DATATYPES, "x", None]),
        "data": st.lists(ELEMENT | st.lists(ELEMENT, max_size=5), max_size=10) | JSON,
    },
    optional={"parameters": JSON},
)
REQUEST = st.fixed_dictionaries(
    {"inputs": st.lists(TENSOR, max_size=3) | JSON},
    optional={"id": JSON, "outputs": JSON, "parameters": JSON, "other": JSON},
)
PROPS = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def _check_accepted(req: InferRequest, spec: ModelSpec) -> None:
    for t in spec.inputs:
        arr = req.inputs[t.name]
        assert arr.dtype == DATATYPES[t.datatype]
        assert len(arr.shape) == len(t.shape)
        assert all(d == -1 or d == s for d, s in zip(t.shape, arr.shape, strict=True))
        if arr.size and t.min is not None:
            assert arr.min() >= t.min and arr.max() <= (t.max if t.max is not None else np.inf)


@PROPS
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_invalid_input(raw: bytes) -> None:
    try:
        _check_accepted(parse_infer_request(raw, SPEC, max_body_bytes=LIMIT), SPEC)
    except InvalidInput as exc:
        assert STATUS[exc.reason] in (400, 413, 422)


@PROPS
@given(JSON)
def test_random_json_only_raises_invalid_input(doc: Any) -> None:
    try:
        _check_accepted(parse(doc), SPEC)
    except InvalidInput as exc:
        assert STATUS[exc.reason] in (400, 413, 422)


@PROPS
@given(REQUEST, st.sampled_from(["FP32", "INT8", "BOOL", "BYTES", "FP16", "UINT64"]))
def test_random_requests_only_raise_invalid_input(doc: Any, datatype: str) -> None:
    bounded = datatype not in ("BOOL", "BYTES")
    spec = ModelSpec(
        inputs=(
            TensorSpec(
                name="input",
                datatype=datatype,  # type: ignore[arg-type]
                shape=(-1, 4),
                min=0.0 if bounded else None,
                max=1.0 if bounded else None,
            ),
        ),
        max_batch=8,
    )
    try:
        raw = json.dumps(doc).encode()
    except ValueError:
        return
    try:
        _check_accepted(parse_infer_request(raw, spec, max_body_bytes=LIMIT), spec)
    except InvalidInput as exc:
        assert STATUS[exc.reason] in (400, 413, 422)


@PROPS
@given(st.lists(st.floats(min_value=0, max_value=1), min_size=4, max_size=4))
def test_valid_values_round_trip(values: list[float]) -> None:
    arr = parse({"inputs": [tensor(values)]}).inputs["input"]
    np.testing.assert_array_equal(arr, np.array([values], dtype=np.float32))


# -- responses --------------------------------------------------------------------------------


def test_infer_response_is_json_safe() -> None:
    out = infer_response(
        "digits",
        "1",
        {
            "label": np.array([3, 7], dtype=np.int64),
            "probabilities": np.array([[0.25, np.nan], [np.inf, 0.5]], dtype=np.float32),
            "names": np.array(["a", "b"]),
            "raw": np.array([b"x", b"\xff"], dtype=object),
        },
        request_id="abc",
    )
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text) == {
        "model_name": "digits",
        "model_version": "1",
        "id": "abc",
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [2], "data": [3, 7]},
            {
                "name": "probabilities",
                "datatype": "FP32",
                "shape": [2, 2],
                "data": [0.25, None, None, 0.5],
            },
            {"name": "names", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]},
            {"name": "raw", "datatype": "BYTES", "shape": [2], "data": ["x", "\ufffd"]},
        ],
    }
    assert type(out["outputs"][0]["data"][0]) is int
    assert "id" not in infer_response("m", "1", {}, request_id=None)


def test_encode_then_decode_round_trips() -> None:
    for name, dtype in DATATYPES.items():
        if name == "BYTES":
            arr = np.array(["x", "yz"], dtype=object).reshape(2, 1)
        else:
            arr = np.arange(6).astype(dtype).reshape(2, 3)
        got_name, got = decode_tensor(json.loads(json.dumps(encode_tensor("t", arr))))
        assert got_name == "t"
        assert got.dtype == dtype and got.shape == arr.shape
        assert got.tolist() == arr.tolist()


def test_datatype_mapping() -> None:
    assert oip_datatype(np.dtype(">f4")) == "FP32"
    assert oip_datatype(np.dtype("U3")) == "BYTES"
    assert numpy_dtype("INT16") == np.int16
    with pytest.raises(UsageError):
        oip_datatype(np.dtype(np.complex64))
    with pytest.raises(UsageError):
        numpy_dtype("FLOAT")


def test_metadata_reveals_only_declared_contract() -> None:
    meta = model_metadata(
        "digits",
        SPEC,
        (
            OutputMeta("label", "INT64", (-1,)),
            OutputMeta("probabilities", "FP32", (-1, 10)),
            OutputMeta("hidden", "FP32", (-1,)),
        ),
    )
    assert meta == {
        "name": "digits",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
        ],
    }
    text = json.dumps(meta)
    assert "secret-location" not in text and "clip" not in text and "hidden" not in text
    everything = model_metadata("m", ModelSpec(), (OutputMeta("hidden", "FP32", (-1,)),))
    assert [o["name"] for o in everything["outputs"]] == ["hidden"]


@PROPS
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4),
        elements=st.floats(0, 1, width=32),
    ),
    st.booleans(),
)
def test_nested_and_flat_data_agree(arr: np.ndarray, nested: bool) -> None:
    spec = ModelSpec(inputs=(TensorSpec(name="input", shape=(-1,) * arr.ndim),), max_batch=10)
    data = arr.tolist() if nested else arr.ravel().tolist()
    got = parse({"inputs": [tensor(data, shape=arr.shape)]}, spec).inputs["input"]
    np.testing.assert_array_equal(got, arr)


def test_mixed_nesting_is_row_major() -> None:
    req = parse({"inputs": [tensor([[0.1, 0.2], 0.3, [[0.4]]])]})
    np.testing.assert_allclose(req.inputs["input"], [[0.1, 0.2, 0.3, 0.4]], rtol=1e-6)
    assert '"data" holds 3' in str(refused({"inputs": [tensor([[0.1, 0.2], [], [[0.4]]])]}))


@PROPS
@given(TENSOR | JSON)
def test_decode_tensor_only_raises_invalid_input(raw: Any) -> None:
    try:
        name, arr = decode_tensor(raw, max_elements=1000)
    except InvalidInput:
        return
    assert isinstance(name, str) and arr.size <= 1000


@pytest.mark.parametrize(
    "raw",
    [
        b'{"inputs": [], "inputs": []}',
        b'{"id": "a", "inputs": [{"name": "input", "name": "x", "shape": [1, 4],'
        b' "datatype": "FP32", "data": [0, 0, 0, 0]}]}',
        b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",'
        b' "data": [0, 0, 0, 0], "parameters": {"a": 1, "a": 2}}]}',
        b'{"inputs": [], "\\u0069nputs": []}',  # the same key, escaped
    ],
)
def test_a_key_given_twice_in_any_object_is_refused(raw: bytes) -> None:
    """Last-wins would let a proxy and the gateway read different requests."""
    error = refused(raw)
    assert "twice" in str(error)
    assert STATUS[error.reason] == 400
