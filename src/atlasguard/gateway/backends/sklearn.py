"""scikit-learn models saved with ``skops.io.dump``, loaded without trusting code.

skops lists the types a file would construct that it does not trust by
itself (:func:`skops.io.get_untrusted_types`). Each must also be on
atlasguard's import allow-list (:class:`~atlasguard.artifacts.allowlist.AllowList`,
widened by ``[controls.scan] allow``); only those are passed as ``trusted``,
never ``trusted=True``. A file naming anything else is refused with
:class:`~atlasguard.errors.UnsafeArtifactError`.

Outputs: a classifier returns ``label`` (INT64, or BYTES for string classes)
and, when it has ``predict_proba``, ``probabilities`` (FP32 ``[N, classes]``);
a regressor returns ``prediction`` (FP32).

>>> import pathlib, tempfile
>>> import numpy as np, skops.io
>>> from sklearn.linear_model import LogisticRegression
>>> from atlasguard.gateway.backends.base import load_backend
>>> from atlasguard.policy import ModelSpec, TensorSpec
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> x = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
>>> skops.io.dump(LogisticRegression().fit(x, y), d / "model.skops")
>>> x_spec = TensorSpec(name="x", shape=(-1, 1))
>>> spec = ModelSpec(backend="sklearn", path="model.skops", inputs=(x_spec,))
>>> load_backend("m", spec, d).predict({"x": np.array([[3.0]], np.float32)})["label"]
array([1])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from atlasguard.artifacts.allowlist import AllowList
from atlasguard.errors import UnsafeArtifactError
from atlasguard.gateway.backends.base import BackendError, OutputMeta, resolve_model_file
from atlasguard.gateway.oip import InvalidInput
from atlasguard.policy import ModelSpec

__all__ = ["SklearnBackend", "load", "trusted_types"]


def trusted_types(untrusted: Iterable[str], allow: AllowList | None = None) -> list[str]:
    """The types skops reported that the allow-list accepts; raise if any is refused.

    >>> trusted_types(["sklearn.linear_model._logistic.LogisticRegression"])
    ['sklearn.linear_model._logistic.LogisticRegression']
    >>> trusted_types(["os.system"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    atlasguard.errors.UnsafeArtifactError: the skops file needs types outside ...: os.system
    """
    allow = allow or AllowList()
    accepted: list[str] = []
    refused: list[str] = []
    for dotted in untrusted:
        module, _, qualname = dotted.rpartition(".")
        if module and allow.is_allowed(module, qualname):
            accepted.append(dotted)
        else:
            refused.append(dotted)
    if refused:
        raise UnsafeArtifactError(
            f"the skops file needs types outside the allow-list: {', '.join(sorted(refused))}"
        )
    return accepted


class SklearnBackend:
    """A fitted estimator; one declared input is the feature matrix ``X``."""

    blocking = False

    def __init__(self, name: str, estimator: Any, input_name: str) -> None:
        self.name = name
        self._estimator = estimator
        self._input = input_name
        classes = getattr(estimator, "classes_", None)
        self._proba = classes is not None and hasattr(estimator, "predict_proba")
        outputs: list[OutputMeta] = []
        if classes is not None:
            kind = np.asarray(classes).dtype.kind
            outputs.append(OutputMeta("label", "INT64" if kind in "iub" else "BYTES", (-1,)))
            if self._proba:
                outputs.append(OutputMeta("probabilities", "FP32", (-1, len(classes))))
        else:
            outputs.append(OutputMeta("prediction", "FP32", (-1,)))
        self._classifier = classes is not None
        self.outputs: tuple[OutputMeta, ...] = tuple(outputs)

    def predict(self, inputs: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        x = inputs[self._input]
        try:
            raw = np.asarray(self._estimator.predict(x))
            proba = self._estimator.predict_proba(x) if self._proba else None
        except ValueError:  # scikit-learn's way of saying the features do not fit
            raise InvalidInput(
                f"model {self.name} cannot run on this input (check the declared shapes)",
                reason="invalid-input",
            ) from None
        if not self._classifier:
            return {"prediction": raw.astype(np.float32)}
        label = raw.astype(np.int64) if raw.dtype.kind in "iub" else raw.astype(str).astype(object)
        out: dict[str, npt.NDArray[Any]] = {"label": label}
        if proba is not None:
            out["probabilities"] = np.asarray(proba, dtype=np.float32)
        return out

    def close(self) -> None:
        self._estimator = None


def load(
    name: str,
    spec: ModelSpec,
    base_dir: Path,
    *,
    model_path: Path | None = None,
    threads: int = 1,
    allow: Sequence[str] = (),
) -> SklearnBackend:
    """Load a ``.skops`` file, trusting only what skops and the allow-list both accept."""
    del threads  # scikit-learn prediction here is single-threaded
    import skops.io

    if len(spec.inputs) != 1:
        raise BackendError(
            f"model {name}: a scikit-learn model takes one input (the feature matrix), "
            f"the policy declares {len(spec.inputs)}"
        )
    path = resolve_model_file(name, spec, base_dir, ".skops", model_path)
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises zipfile/json errors for files it cannot read
        raise BackendError(f"model {name}: {path} is not a readable skops file: {exc}") from None
    trusted = trusted_types(untrusted, AllowList(allow))
    try:
        estimator = skops.io.load(path, trusted=trusted)
    except Exception as exc:
        raise BackendError(f"model {name}: skops cannot load {path}: {exc}") from None
    if not hasattr(estimator, "predict"):
        raise BackendError(f"model {name}: {path} holds no estimator with predict()")
    return SklearnBackend(name, estimator, spec.inputs[0].name)
