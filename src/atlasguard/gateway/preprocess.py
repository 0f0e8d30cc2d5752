"""Server-side preprocessing (AML.M0017): the model's pipeline stays on the server.

Steps come from ``preprocess = [...]`` in ``[models.<name>]`` and run, in
order, on every floating-point input after validation and before the model:
``scale`` (multiply by ``factor``), ``clip`` (to ``[min, max]``) and
``standardize`` (``(x - mean) / std`` per feature, the last dimension). Other
inputs pass unchanged. Clients see only the declared inputs and outputs.

>>> import numpy as np
>>> from atlasguard.policy import PreprocessStep
>>> pre = Preprocessor.from_spec((PreprocessStep(op="scale", factor=2.0),
...                              PreprocessStep(op="clip", min=0.0, max=1.0)))
>>> pre({"input": np.array([[0.25, 0.75, -1.0]], np.float32)})["input"]
array([[0.5, 1. , 0. ]], dtype=float32)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from atlasguard.errors import ConfigurationError
from atlasguard.gateway.oip import InvalidInput
from atlasguard.policy import PreprocessStep

__all__ = ["Preprocessor"]


@dataclass(frozen=True)
class Preprocessor:
    """Compiled preprocessing steps; calling it returns new arrays, never changes its input."""

    steps: tuple[PreprocessStep, ...] = ()

    @classmethod
    def from_spec(cls, steps: Sequence[PreprocessStep]) -> Preprocessor:
        """Check the steps of a policy (bounds, lengths, positive std) and compile them.

        Raises :class:`~atlasguard.errors.ConfigurationError` for a step that
        cannot be right whatever the input.
        """
        for i, step in enumerate(steps):
            _check(step, f"preprocess[{i}] ({step.op})")
        return cls(tuple(steps))

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __call__(self, inputs: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        out: dict[str, npt.NDArray[Any]] = {}
        for name, array in inputs.items():
            if array.dtype.kind != "f" or not self.steps:
                out[name] = array
                continue
            value = array
            # Overflow shows up as infinity, refused below, rather than as a warning.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                for step in self.steps:
                    value = _apply(step, value, name)
            if not np.isfinite(value).all():
                raise InvalidInput(
                    f"input {name!r}: values leave the representable range in preprocessing",
                    reason="invalid-input",
                )
            out[name] = value.astype(array.dtype, copy=False)
        return out


def _check(step: PreprocessStep, where: str) -> None:
    def finite(*values: float | None) -> bool:
        return all(v is None or math.isfinite(v) for v in values)

    if step.op == "scale" and not finite(step.factor):
        raise ConfigurationError(f"{where}: factor must be finite")
    if step.op == "clip":
        if step.min is None and step.max is None:
            raise ConfigurationError(f"{where}: give min, max or both")
        if not finite(step.min, step.max):
            raise ConfigurationError(f"{where}: min and max must be finite")
        if step.min is not None and step.max is not None and step.min > step.max:
            raise ConfigurationError(f"{where}: min {step.min} is above max {step.max}")
    if step.op == "standardize":
        if not step.mean or len(step.mean) != len(step.std):
            raise ConfigurationError(
                f"{where}: mean and std must be non-empty and of one length "
                f"(got {len(step.mean)} and {len(step.std)})"
            )
        if not finite(*step.mean) or not all(math.isfinite(s) and s > 0 for s in step.std):
            raise ConfigurationError(f"{where}: mean must be finite and every std positive")


def _apply(
    step: PreprocessStep, value: npt.NDArray[np.floating[Any]], name: str
) -> npt.NDArray[np.floating[Any]]:
    if step.op == "scale":
        scaled: npt.NDArray[np.floating[Any]] = np.multiply(value, step.factor, dtype=value.dtype)
        return scaled
    if step.op == "clip":
        clipped: npt.NDArray[np.floating[Any]] = np.clip(value, step.min, step.max)
        return clipped.astype(value.dtype, copy=False)
    # standardize: per feature, i.e. along the last dimension.
    features = value.shape[-1] if value.ndim else 0
    if features != len(step.mean):
        raise InvalidInput(
            f"input {name!r}: standardize expects {len(step.mean)} features in the last "
            f"dimension, got {features}",
            reason="invalid-input",
        )
    mean = np.asarray(step.mean, dtype=value.dtype)
    std = np.asarray(step.std, dtype=value.dtype)
    return (value - mean) / std
