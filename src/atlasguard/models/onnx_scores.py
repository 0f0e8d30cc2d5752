"""An ONNX model as a function from flat rows to scores, for the checks that only ask it.

>>> # scores = onnx_scores(Path("model.onnx")); scores(rows)  # [n, classes]
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from atlasguard.errors import DataError

__all__ = ["onnx_hidden", "onnx_scores"]


def onnx_scores(model: Path) -> Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]:
    """The model's last 2-D float output (its scores); the input reshaped to what the model
    declares (flat rows for [N, 64], images for [N, 1, 8, 8])."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    except Exception:
        raise DataError(f"{model.name} is not an ONNX model ONNX Runtime can load") from None
    first = session.get_inputs()[0]
    tail = [d if isinstance(d, int) and d > 0 else -1 for d in first.shape[1:]]

    def scores(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        rows = np.asarray(x, np.float32)
        shaped = rows.reshape(len(rows), *tail) if tail and -1 not in tail else rows
        outputs = session.run(None, {first.name: shaped})
        found = [
            o for o in outputs if isinstance(o, np.ndarray) and o.ndim == 2 and o.dtype.kind == "f"
        ]
        if not found:
            raise DataError(f"{model.name} returns no [rows, classes] float output")
        return np.asarray(found[-1], np.float64)

    return scores


def onnx_hidden(model: Path) -> Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]:
    """The input of the model's last dense layer (the last ``Gemm`` or ``MatMul``): its
    last hidden layer, for the poison check. A model without a hidden layer (a linear
    model) gives its input back."""
    import onnx
    import onnxruntime as ort

    try:
        graph_model = onnx.load(str(model))
    except Exception:
        raise DataError(f"{model.name} is not an ONNX model that can be read") from None
    dense = [n for n in graph_model.graph.node if n.op_type in ("Gemm", "MatMul")]
    inputs = {i.name for i in graph_model.graph.input}
    hidden = dense[-1].input[0] if dense else None
    if hidden is None or hidden in inputs:
        return lambda x: np.asarray(x, np.float64).reshape(len(x), -1)
    if hidden not in {o.name for o in graph_model.graph.output}:
        graph_model.graph.output.append(onnx.helper.make_empty_tensor_value_info(hidden))
    session = ort.InferenceSession(
        graph_model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    first = session.get_inputs()[0]
    tail = [d if isinstance(d, int) and d > 0 else -1 for d in first.shape[1:]]

    def embed(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        rows = np.asarray(x, np.float32)
        shaped = rows.reshape(len(rows), *tail) if tail and -1 not in tail else rows
        (out,) = session.run([hidden], {first.name: shaped})
        return np.asarray(out, np.float64).reshape(len(rows), -1)

    return embed
