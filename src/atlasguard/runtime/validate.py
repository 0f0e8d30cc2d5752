"""The input guard: every request matches its model's declared inputs.

Over HTTP the body is an Open Inference Protocol request, parsed and checked
by :func:`atlasguard.gateway.oip.parse_infer_request`; in-process callers pass
arrays, checked here against the same declaration (names, datatype, shape,
batch size, value range). Refusals are :class:`~atlasguard.runtime.pipeline.Denied`
with status 400/413/422 and reason ``invalid-input``, never a crash.

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
from dataclasses import replace

import numpy as np

from atlasguard.gateway.oip import numpy_dtype, parse_infer_request
from atlasguard.policy import ModelSpec
from atlasguard.runtime.pipeline import Denied, Request, Response

__all__ = ["ValidateGuard", "check_arrays"]


def _invalid(message: str, status: int = 422) -> Denied:
    return Denied(message, status=status, reason="invalid-input")


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
        if dtype.kind == "f" and converted.size and not np.isfinite(converted).all():
            raise _invalid(f"input {name!r}: values must be finite")
        if (
            dtype.kind in "fiu"
            and converted.size
            and (
                (tensor.min is not None and converted.min() < tensor.min)
                or (tensor.max is not None and converted.max() > tensor.max)
            )
        ):
            raise _invalid(f"input {name!r}: values must lie in [{tensor.min}, {tensor.max}]")
        out[name] = converted
    return out


class ValidateGuard:
    """Parse (HTTP) or check (in-process) a request's inputs against its model's declaration."""

    name = "validate"
    mitigates: frozenset[str] = frozenset()

    def __init__(self, specs: Mapping[str, ModelSpec], *, max_body_bytes: int = 8 << 20) -> None:
        self._specs = dict(specs)
        self._max_body = max_body_bytes

    def before(self, request: Request) -> Request:
        spec = self._specs.get(request.model)
        if spec is None:
            raise Denied(
                f"model {request.model!r} is not served here", status=404, reason="not-found"
            )
        if request.body is not None:
            # The protocol parser checks the whole declaration (names, datatype, shape,
            # batch, finite values, range); the arrays it returns need no second pass.
            parsed = parse_infer_request(request.body, spec, max_body_bytes=self._max_body)
            return replace(
                request, inputs=parsed.inputs, body=None, requested_outputs=tuple(parsed.outputs)
            )
        return replace(request, inputs=check_arrays(request.inputs, spec))

    def after(self, request: Request, response: Response) -> Response:
        if not request.requested_outputs:
            return response
        missing = [n for n in request.requested_outputs if n not in response.outputs]
        if missing:
            raise _invalid(f"unknown output {missing[0]!r}", status=400)
        return response.with_outputs({n: response.outputs[n] for n in request.requested_outputs})
