"""The Open Inference Protocol (KServe / Triton "v2" REST) codec.

:func:`parse_infer_request` is a parser of hostile input: it turns an HTTP body
into arrays of the declared dtype and shape, or raises :class:`InvalidInput`
(a :class:`~atlasguard.runtime.pipeline.Denied` with reason ``malformed``,
``too-large`` or ``invalid-input``) with a message that says exactly what is
wrong. A JSON object that names a key twice is refused (no last-wins).
Nothing is allocated in proportion to a *declared* shape before the data has
been counted, so a ten-line body cannot ask for 10^12 elements.

:func:`infer_response` and :func:`model_metadata` build the response bodies.

>>> import numpy as np
>>> from atlasguard.policy import ModelSpec, TensorSpec
>>> spec = ModelSpec(inputs=(TensorSpec(name="input", shape=(-1, 2), min=0.0, max=1.0),))
>>> body = b'{"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 1]}]}'
>>> parse_infer_request(body, spec, max_body_bytes=1 << 20).inputs["input"]
array([[0.5, 1. ]], dtype=float32)
>>> infer_response("m", "1", {"label": np.array([3])}, request_id=None)["outputs"]
[{'name': 'label', 'datatype': 'INT64', 'shape': [1], 'data': [3]}]
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

from atlasguard.errors import UsageError
from atlasguard.gateway.backends.base import OutputMeta
from atlasguard.policy import ModelSpec, TensorSpec
from atlasguard.runtime.pipeline import Denied, Reason
from atlasguard.runtime.validate import DATATYPES, numpy_dtype

__all__ = [
    "DATATYPES",
    "DEFAULT_MAX_ELEMENTS",
    "InferRequest",
    "InvalidInput",
    "decode_tensor",
    "encode_tensor",
    "infer_response",
    "model_metadata",
    "numpy_dtype",
    "oip_datatype",
    "parse_infer_request",
]

DEFAULT_MAX_ELEMENTS = 1 << 22
"""Largest total number of tensor elements one request may carry (4 Mi)."""

MAX_DIMS = 16
MAX_ID_CHARS = 256
MAX_NAME_CHARS = 256

_BY_DTYPE = {dt: name for name, dt in DATATYPES.items() if name != "BYTES"}

# JSON element types each datatype accepts. bool is not an int here: `true` in an
# INT64 tensor is a client bug worth reporting, not a 1.
_ELEMENTS: Mapping[str, tuple[frozenset[type], str]] = {
    **{
        name: (frozenset({int}), "integers")
        for name in DATATYPES
        if name.startswith(("INT", "UINT"))
    },
    "FP16": (frozenset({int, float}), "numbers"),
    "FP32": (frozenset({int, float}), "numbers"),
    "FP64": (frozenset({int, float}), "numbers"),
    "BOOL": (frozenset({bool}), "booleans"),
    "BYTES": (frozenset({str}), "strings"),
}
_JSON_TYPES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}
_REQUEST_KEYS = ("id", "parameters", "inputs", "outputs")
_TENSOR_KEYS = ("name", "shape", "datatype", "data", "parameters")
_OUTPUT_KEYS = ("name", "parameters")
_PLATFORMS = {"onnx": "onnxruntime_onnx", "sklearn": "sklearn_skops", "upstream": ""}


class InvalidInput(Denied):
    """A request body the model cannot take: malformed, too large, or off-contract.

    >>> InvalidInput("bad").reason, InvalidInput("bad", reason="too-large").reason
    ('malformed', 'too-large')
    """

    def __init__(self, message: str, *, reason: Reason = "malformed") -> None:
        super().__init__(message, reason=reason)


@dataclass(frozen=True)
class InferRequest:
    """A validated inference request: arrays of the declared dtypes, reshaped."""

    id: str | None
    inputs: dict[str, npt.NDArray[Any]]
    outputs: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)


def oip_datatype(dtype: np.dtype[Any]) -> str:
    """The Open Inference Protocol datatype of a numpy dtype (strings are ``BYTES``)."""
    if dtype.kind in "OUS":
        return "BYTES"
    name = _BY_DTYPE.get(dtype) or _BY_DTYPE.get(dtype.newbyteorder("="))
    if name is None:
        raise UsageError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")
    return name


# -- parsing -----------------------------------------------------------------------------


def parse_infer_request(
    body: bytes,
    spec: ModelSpec,
    *,
    max_body_bytes: int,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> InferRequest:
    """Parse and validate an ``/infer`` body against the model's declared inputs.

    Raises :class:`InvalidInput`: 413 for a body or element count over the
    limits, 400 for malformed JSON or tensors, 422 for a well-formed request
    that breaks the model's contract (names, datatypes, shapes, batch, range).
    """
    if len(body) > max_body_bytes:
        raise InvalidInput(
            f"request body is {len(body)} bytes; the limit is {max_body_bytes}", reason="too-large"
        )
    doc = _load_json(body)
    if not isinstance(doc, dict):
        raise InvalidInput(
            f'request body must be a JSON object with an "inputs" list, got {_kind(doc)}'
        )
    _check_keys(doc, _REQUEST_KEYS, "request")
    request_id = doc.get("id")
    if request_id is not None and (
        not isinstance(request_id, str) or len(request_id) > MAX_ID_CHARS
    ):
        raise InvalidInput(f'"id" must be a string of at most {MAX_ID_CHARS} characters')
    parameters = _parameters(doc.get("parameters"), "request")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput(f'"inputs" must be a non-empty list of tensors, got {_kind(raw_inputs)}')

    declared = {t.name: t for t in spec.inputs}
    budget = max_elements
    inputs: dict[str, npt.NDArray[Any]] = {}
    for i, raw in enumerate(raw_inputs):
        where = f"inputs[{i}]"
        name, shape, datatype, data = _tensor_header(raw, where)
        where = f"{where} ({_show(name)})"
        tensor = declared.get(name)
        if tensor is None:
            known = ", ".join(sorted(declared)) or "none"
            raise InvalidInput(
                f"{where}: unknown input; this model takes: {known}", reason="invalid-input"
            )
        if name in inputs:
            raise InvalidInput(f"{where}: input given twice")
        _check_contract(tensor, shape, datatype, spec.max_batch, where)
        count = _element_count(shape, budget)
        if count is None:
            raise InvalidInput(
                f"{where}: shape {list(shape)} holds more than the {max_elements} elements "
                "one request may carry",
                reason="too-large",
            )
        budget -= count
        flat, kinds = _flatten(data, count, where)
        array = _to_array(flat, kinds, datatype, where, low=tensor.min, high=tensor.max)
        inputs[name] = array.reshape(shape)
    missing = [n for n in declared if n not in inputs]
    if missing:
        raise InvalidInput(
            f"missing input{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
            reason="invalid-input",
        )
    return InferRequest(
        id=request_id,
        inputs=inputs,
        outputs=_requested_outputs(doc.get("outputs"), spec),
        parameters=parameters,
    )


def decode_tensor(
    raw: object, *, where: str = "tensor", max_elements: int = DEFAULT_MAX_ELEMENTS
) -> tuple[str, npt.NDArray[Any]]:
    """Decode one ``{name, shape, datatype, data}`` object into ``(name, array)``.

    The checks of :func:`parse_infer_request` that need no model contract:
    structure, element types, count, finiteness. Used for upstream responses.
    """
    name, shape, datatype, data = _tensor_header(raw, where)
    count = _element_count(shape, max_elements)
    if count is None:
        raise InvalidInput(
            f"{where}: shape {list(shape)} holds too many elements", reason="too-large"
        )
    flat, kinds = _flatten(data, count, where)
    return name, _to_array(flat, kinds, datatype, where).reshape(shape)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # some key came twice: name it
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidInput(f"request body names the key {_show(key)} twice in one object")
            seen.add(key)
    return obj


# One decoder for every request: json.loads would build a new one per call for the hook.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def _load_json(body: bytes) -> object:
    try:
        return _DECODER.decode(body.decode("utf-8"))
    except RecursionError:
        raise InvalidInput("request body nests too deeply") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"request body is not UTF-8 text (byte {exc.start})") from None
    except ValueError as exc:  # e.g. an integer literal with thousands of digits
        raise InvalidInput(f"request body holds a value JSON cannot carry here: {exc}") from None


def _tensor_header(raw: object, where: str) -> tuple[str, tuple[int, ...], str, object]:
    if not isinstance(raw, dict):
        raise InvalidInput(
            f"{where}: must be an object with name, shape, datatype and data, got {_kind(raw)}"
        )
    _check_keys(raw, _TENSOR_KEYS, where)
    name = raw.get("name")
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
        raise InvalidInput(f'{where}: "name" must be a non-empty string, got {_kind(name)}')
    params = _parameters(raw.get("parameters"), where)
    if "binary_data_size" in params:
        raise InvalidInput(f"{where}: binary tensor data is not supported; send data as JSON")
    datatype = raw.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InvalidInput(
            f'{where}: "datatype" must be one of {", ".join(DATATYPES)}, got {_show(datatype)}'
        )
    if "data" not in raw:
        raise InvalidInput(f'{where}: "data" is missing')
    return name, _shape(raw.get("shape"), where), datatype, raw["data"]


def _shape(raw: object, where: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_DIMS:
        raise InvalidInput(
            f'{where}: "shape" must be a list of at most {MAX_DIMS} non-negative integers, '
            f"got {_kind(raw)}"
        )
    for dim in raw:
        if type(dim) is not int or dim < 0:
            raise InvalidInput(
                f'{where}: "shape" must hold non-negative integers, got {_show(dim)}'
            )
    return tuple(raw)


def _check_contract(
    tensor: TensorSpec, shape: tuple[int, ...], datatype: str, max_batch: int, where: str
) -> None:
    if datatype != tensor.datatype:
        raise InvalidInput(
            f"{where}: datatype {datatype} does not match the declared {tensor.datatype}",
            reason="invalid-input",
        )
    declared = tensor.shape
    if len(shape) != len(declared) or any(
        d != -1 and d != s for d, s in zip(declared, shape, strict=True)
    ):
        want = "[" + ", ".join("N" if d == -1 else str(d) for d in declared) + "]"
        raise InvalidInput(
            f"{where}: shape {list(shape)} does not match the declared shape {want}",
            reason="invalid-input",
        )
    if shape and shape[0] > max_batch:
        raise InvalidInput(
            f"{where}: batch of {shape[0]} rows is larger than the limit of {max_batch}",
            reason="invalid-input",
        )


def _element_count(shape: tuple[int, ...], cap: int) -> int | None:
    """prod(shape), or None as soon as it passes ``cap`` (dims may be huge integers)."""
    if 0 in shape:
        return 0
    count = 1
    for dim in shape:
        count *= dim
        if count > cap:
            return None
    return count


def _flatten(data: object, expected: int, where: str) -> tuple[list[Any], set[type]]:
    """Row-major elements of a flat or nested list, and their types.

    Stops once past ``expected`` elements.
    """
    if not isinstance(data, list):
        raise InvalidInput(f'{where}: "data" must be a list, got {_kind(data)}')
    flat = data
    kinds = set(map(type, flat))
    # Regular nesting (every item of a level is a list) flattens a level at a time in C;
    # each level is no longer than the body, so this needs no count limit.
    for _ in range(MAX_DIMS):
        if kinds != {list}:
            break
        flat = list(chain.from_iterable(flat))
        kinds = set(map(type, flat))
    if list in kinds:
        flat = _flatten_ragged(data, expected, where)
        kinds = set(map(type, flat))
    if len(flat) != expected:
        more = "more" if len(flat) > expected else f"{len(flat)}"
        raise InvalidInput(
            f'{where}: "shape" needs {expected} element{"s" if expected != 1 else ""}, '
            f'"data" holds {more}'
        )
    return flat, kinds


def _flatten_ragged(data: list[Any], expected: int, where: str) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if type(item) is list:
                if len(stack) > MAX_DIMS:
                    raise InvalidInput(f'{where}: "data" nests deeper than {MAX_DIMS} levels')
                stack.append(iter(item))
                break
            flat.append(item)
            if len(flat) > expected:
                return flat
        else:
            stack.pop()
    return flat


def _to_array(
    flat: list[Any],
    kinds: set[type],
    datatype: str,
    where: str,
    *,
    low: float | None = None,
    high: float | None = None,
) -> npt.NDArray[Any]:
    allowed, words = _ELEMENTS[datatype]
    bad = kinds - allowed
    if bad:
        raise InvalidInput(
            f"{where}: {datatype} data must hold {words}, found {_JSON_TYPES.get(bad.pop(), '?')}"
        )
    dtype = DATATYPES[datatype]
    if datatype == "BYTES":
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out
    if datatype == "BOOL":
        return np.array(flat, dtype=np.bool_)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if flat and (min(flat) < info.min or max(flat) > info.max):
            raise InvalidInput(
                f"{where}: a value lies outside the {datatype} range [{info.min}, {info.max}]",
                reason="invalid-input",
            )
        values = np.array(flat, dtype=dtype)
        _check_range(values, low, high, where)
        return values
    try:
        wide = np.array(flat, dtype=np.float64)
    except OverflowError:
        raise InvalidInput(
            f"{where}: a value is too large for {datatype}", reason="invalid-input"
        ) from None
    if wide.size:
        # Two reductions answer every question: NaN propagates into both and an
        # infinity is the minimum or the maximum, so finite extremes mean finite values.
        lowest, highest = float(wide.min()), float(wide.max())
        if not (math.isfinite(lowest) and math.isfinite(highest)):
            raise InvalidInput(
                f"{where}: values must be finite (no NaN or infinity)", reason="invalid-input"
            )
        if max(-lowest, highest) > float(np.finfo(dtype).max):
            raise InvalidInput(
                f"{where}: a value is too large for {datatype}", reason="invalid-input"
            )
        if (low is not None and lowest < low) or (high is not None and highest > high):
            _check_range(wide, low, high, where)
    return wide.astype(dtype)


def _check_range(
    values: npt.NDArray[Any], low: float | None, high: float | None, where: str
) -> None:
    if not values.size:
        return
    if low is not None and values.min() < low:
        at = int(np.argmax(values < low))
        raise InvalidInput(
            f"{where}: value {values.flat[at]} at index {at} is below the declared minimum {low}",
            reason="invalid-input",
        )
    if high is not None and values.max() > high:
        at = int(np.argmax(values > high))
        raise InvalidInput(
            f"{where}: value {values.flat[at]} at index {at} is above the declared maximum {high}",
            reason="invalid-input",
        )


def _requested_outputs(raw: object, spec: ModelSpec) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidInput(f'"outputs" must be a list of {{"name": ...}} objects, got {_kind(raw)}')
    names: list[str] = []
    for i, item in enumerate(raw):
        where = f"outputs[{i}]"
        if not isinstance(item, dict):
            raise InvalidInput(f'{where}: must be an object with a "name", got {_kind(item)}')
        _check_keys(item, _OUTPUT_KEYS, where)
        _parameters(item.get("parameters"), where)
        name = item.get("name")
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
            raise InvalidInput(f'{where}: "name" must be a non-empty string, got {_kind(name)}')
        if name in names:
            raise InvalidInput(f"{where} ({_show(name)}): output requested twice")
        if spec.outputs and name not in spec.outputs:
            served = ", ".join(spec.outputs)
            raise InvalidInput(
                f"{where} ({_show(name)}): unknown output; this model returns: {served}",
                reason="invalid-input",
            )
        names.append(name)
    return tuple(names)


def _parameters(raw: object, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidInput(f'{where}: "parameters" must be an object, got {_kind(raw)}')
    return raw


def _check_keys(obj: Mapping[str, object], allowed: Sequence[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise InvalidInput(
                f"{where}: unknown key {_show(key)}; expected one of: {', '.join(allowed)}"
            )


def _kind(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- responses ---------------------------------------------------------------------------


def encode_tensor(name: str, array: npt.ArrayLike) -> dict[str, Any]:
    """One ``{name, datatype, shape, data}`` object; ``data`` flat, row-major, JSON-safe.

    JSON has no NaN or infinity: non-finite floats are sent as ``null``.
    """
    arr = np.asarray(array)
    datatype = oip_datatype(arr.dtype)
    flat = arr.reshape(-1)
    data: list[Any]
    if datatype == "BYTES":
        data = [
            x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in flat.tolist()
        ]
    elif arr.dtype.kind == "f" and arr.dtype.itemsize < 8:
        # numpy's shortest repr of a float32 (0.11), not its float64 expansion
        # (0.10999999940395355): what the client reads is what the model computed.
        data = [float(str(x)) if math.isfinite(x) else None for x in flat]
    elif arr.dtype.kind == "f" and not np.isfinite(flat).all():
        data = [x if math.isfinite(x) else None for x in flat.tolist()]
    else:
        data = flat.tolist()
    return {"name": name, "datatype": datatype, "shape": list(arr.shape), "data": data}


def infer_response(
    model: str,
    version: str,
    outputs: Mapping[str, npt.ArrayLike],
    *,
    request_id: str | None,
    flags: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``/infer`` response body for ``outputs`` (in their mapping order).

    ``flags`` (what a guard said of the answer) go in ``parameters.atlasguard_flags``.
    """
    body: dict[str, Any] = {"model_name": model, "model_version": version}
    if request_id is not None:
        body["id"] = request_id
    if flags:
        body["parameters"] = {"atlasguard_flags": list(flags)}
    body["outputs"] = [encode_tensor(name, array) for name, array in outputs.items()]
    return body


def model_metadata(name: str, spec: ModelSpec, outputs: Sequence[OutputMeta]) -> dict[str, Any]:
    """``GET /v2/models/{name}``: declared metadata only, never the file or the preprocessing."""
    served = [o for o in outputs if not spec.outputs or o.name in spec.outputs]
    return {
        "name": name,
        "versions": [spec.version],
        "platform": _PLATFORMS.get(spec.backend, ""),
        "inputs": [
            {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in spec.inputs
        ],
        "outputs": [
            {"name": o.name, "datatype": o.datatype, "shape": list(o.shape)} for o in served
        ],
    }
