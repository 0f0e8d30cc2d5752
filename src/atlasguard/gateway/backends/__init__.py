"""Model backends behind one interface: ONNX Runtime, skops scikit-learn files, upstream OIP.

>>> from atlasguard.gateway.backends import BACKEND_MODULES
>>> "onnx" in BACKEND_MODULES
True
"""

from __future__ import annotations

from atlasguard.gateway.backends.base import (
    BACKEND_MODULES,
    Backend,
    BackendError,
    OutputMeta,
    load_backend,
)

__all__ = ["BACKEND_MODULES", "Backend", "BackendError", "OutputMeta", "load_backend"]
