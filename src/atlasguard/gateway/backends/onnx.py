"""ONNX Runtime in-process, on the CPU: the default backend.

The session runs with one intra-op thread by default, so several gateway
workers on one machine do not fight over cores. scikit-learn models exported
by skl2onnx with a ZipMap (``output_probability`` as a sequence of maps) are
returned as a dense FP32 ``[N, classes]`` array, so every output is a tensor.

>>> import pathlib, tempfile
>>> import numpy as np
>>> from atlasguard.gateway.backends.base import load_backend
>>> from atlasguard.gateway.demo import export_onnx, train_digits
>>> from atlasguard.policy import ModelSpec, TensorSpec
>>> trained = train_digits()
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> export_onnx(trained.model, d / "model.onnx")
>>> spec = ModelSpec(path="model.onnx", inputs=(TensorSpec(name="input", shape=(-1, 64)),))
>>> backend = load_backend("digits", spec, d)
>>> [o.name for o in backend.outputs]
['label', 'probabilities']
>>> out = backend.predict({"input": trained.x_test[:2].astype(np.float32)})
>>> out["probabilities"].shape
(2, 10)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from atlasguard.gateway.backends.base import BackendError, OutputMeta, resolve_model_file
from atlasguard.gateway.oip import InvalidInput
from atlasguard.policy import ModelSpec

__all__ = ["OnnxBackend", "load"]

# ONNX Runtime type strings -> Open Inference Protocol datatypes.
_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def _dims(shape: object) -> tuple[int, ...]:
    if not isinstance(shape, list):
        return (-1,)
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


class OnnxBackend:
    """An ``onnxruntime.InferenceSession`` on ``CPUExecutionProvider``."""

    blocking = False

    def __init__(self, name: str, session: Any) -> None:
        self.name = name
        self._session = session
        self._input_names = tuple(i.name for i in session.get_inputs())
        self._output_names = tuple(o.name for o in session.get_outputs())
        metas = []
        self._zipmaps: frozenset[str] = frozenset(
            o.name for o in session.get_outputs() if o.type.startswith("seq(map(")
        )
        for o in session.get_outputs():
            if o.name in self._zipmaps:
                metas.append(OutputMeta(o.name, "FP32", (-1, -1)))
            elif o.type in _TYPES:
                metas.append(OutputMeta(o.name, _TYPES[o.type], _dims(o.shape)))
            else:
                raise BackendError(f"model {name}: output {o.name} has unsupported type {o.type}")
        self.outputs: tuple[OutputMeta, ...] = tuple(metas)

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._input_names

    def predict(self, inputs: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        feed = {name: inputs[name] for name in self._input_names}
        try:
            results = self._session.run(list(self._output_names), feed)
        except Exception:  # onnxruntime raises untyped errors; its text names model internals
            raise InvalidInput(
                f"model {self.name} cannot run on this input (check the declared shapes)",
                reason="invalid-input",
            ) from None
        out: dict[str, npt.NDArray[Any]] = {}
        for name, value in zip(self._output_names, results, strict=True):
            out[name] = _dense(value) if name in self._zipmaps else np.asarray(value)
        return out

    def close(self) -> None:
        # InferenceSession has no close(); dropping the reference frees it.
        self._session = None


def _dense(rows: list[Mapping[Any, float]]) -> npt.NDArray[np.float32]:
    """A ZipMap's list of ``{class: probability}`` as ``[N, classes]`` in class order."""
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    classes = list(rows[0])
    return np.array([[row[c] for c in classes] for row in rows], dtype=np.float32)


def load(
    name: str,
    spec: ModelSpec,
    base_dir: Path,
    *,
    model_path: Path | None = None,
    threads: int = 1,
    allow: Sequence[str] = (),
) -> OnnxBackend:
    """Open an ONNX model for ``spec``; its declared inputs must be the model's inputs."""
    del allow  # ONNX files import nothing
    import onnxruntime as ort

    path = resolve_model_file(name, spec, base_dir, ".onnx", model_path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only; warnings would go to stderr per session
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise BackendError(f"model {name}: ONNX Runtime cannot load {path}: {exc}") from None
    backend = OnnxBackend(name, session)
    declared = {t.name for t in spec.inputs}
    if declared and declared != set(backend.input_names):
        raise BackendError(
            f"model {name}: the policy declares inputs {sorted(declared)}, "
            f"the model takes {sorted(backend.input_names)}"
        )
    return backend
