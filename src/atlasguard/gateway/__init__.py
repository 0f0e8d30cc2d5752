"""The protected model gateway: Open Inference Protocol routes over the guard pipeline.

Model backends (ONNX Runtime, skops scikit-learn files, an upstream Open
Inference Protocol server), the protocol codec and server-side preprocessing
live in the modules of this package; their heavy dependencies are imported
only when a backend is loaded.
"""

from __future__ import annotations

__all__: list[str] = []
