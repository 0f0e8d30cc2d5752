"""Inputs checked against their model's declaration (names, datatype, shape, batch, range).

In-process callers pass arrays, checked here by :func:`check_arrays`; over
HTTP the gateway's protocol codec parses the body and checks the same
declaration as it decodes (:data:`DATATYPES` is shared by both). Refusals are
:class:`~atlasguard.runtime.pipeline.Denied` with reason ``invalid-input``,
never a crash.

>>> import numpy as np
>>> from atlasguard.policy import ModelSpec, TensorSpec
>>> spec = ModelSpec(inputs=(TensorSpec(name="x", shape=(-1, 2), min=0.0, max=1.0),))
>>> check_arrays({"x": np.array([[0.5, 2.0]])}, spec)
Traceback (most recent call last):
...
atlasguard.runtime.pipeline.Denied: input 'x': values must lie in [0.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from atlasguard.errors import UsageError
from atlasguard.policy import ModelSpec
from atlasguard.runtime.pipeline import Denied

__all__ = ["DATATYPES", "check_arrays", "numpy_dtype"]

DATATYPES: Mapping[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
"""Open Inference Protocol datatypes (the names a policy declares) and their numpy dtypes."""


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of an Open Inference Protocol datatype (``BYTES`` is ``object``)."""
    try:
        return DATATYPES[datatype]
    except KeyError:
        raise UsageError(f"unknown Open Inference Protocol datatype {datatype!r}") from None


def _invalid(message: str) -> Denied:
    return Denied(message, reason="invalid-input")


def check_arrays(inputs: Mapping[str, object], spec: ModelSpec) -> dict[str, np.ndarray]:
    """Arrays converted to the declared datatypes; raises :class:`Denied` when they do not fit."""
    declared = {t.name: t for t in spec.inputs}
    if declared and set(inputs) != set(declared):
        missing = sorted(set(declared) - set(inputs))
        extra = sorted(set(inputs) - set(declared))
        parts = ([f"missing {', '.join(map(repr, missing))}"] if missing else []) + (
            [f"unexpected {', '.join(map(repr, extra))}"] if extra else []
        )
        raise _invalid(f"inputs do not match the model: {'; '.join(parts)}")
    out: dict[str, np.ndarray] = {}
    for name, value in inputs.items():
        tensor = declared.get(name)
        array = np.asarray(value)
        if tensor is None:
            out[name] = array
            continue
        dtype = numpy_dtype(tensor.datatype)
        try:
            converted = array.astype(
                dtype, casting="same_kind" if array.dtype.kind in "fc" else "unsafe", copy=False
            )
        except (TypeError, ValueError):
            raise _invalid(
                f"input {name!r}: expected {tensor.datatype}, got {array.dtype}"
            ) from None
        if converted.ndim != len(tensor.shape) or any(
            want not in (-1, got) for want, got in zip(tensor.shape, converted.shape, strict=False)
        ):
            raise _invalid(
                f"input {name!r}: shape {list(converted.shape)} does not match {list(tensor.shape)}"
            )
        if converted.ndim and converted.shape[0] > spec.max_batch:
            raise _invalid(
                f"input {name!r}: batch of {converted.shape[0]} rows exceeds {spec.max_batch}"
            )
        if dtype.kind in "fiu" and converted.size:
            # Two reductions answer every question: NaN propagates into both, and an
            # infinity is the minimum or the maximum, so finite extremes mean finite values.
            lowest, highest = converted.min(), converted.max()
            if dtype.kind == "f" and not (np.isfinite(lowest) and np.isfinite(highest)):
                raise _invalid(f"input {name!r}: values must be finite")
            if (tensor.min is not None and lowest < tensor.min) or (
                tensor.max is not None and highest > tensor.max
            ):
                raise _invalid(f"input {name!r}: values must lie in [{tensor.min}, {tensor.max}]")
        out[name] = converted
    return out
