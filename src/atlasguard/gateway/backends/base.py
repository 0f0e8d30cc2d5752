"""The one interface every model backend implements, and the factory that picks one.

A backend runs a model and nothing else: validation, preprocessing and output
policies happen around it, in the guard pipeline. :func:`load_backend`
imports the backend's module only when a model of that kind is loaded, so
ONNX Runtime, skops and httpx stay optional.

>>> from atlasguard.gateway.backends.base import BACKEND_MODULES, OutputMeta
>>> sorted(BACKEND_MODULES)
['onnx', 'sklearn', 'upstream']
>>> OutputMeta("label", "INT64", (-1,)).shape
(-1,)
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy.typing as npt

from atlasguard.errors import ConfigurationError
from atlasguard.policy import ModelSpec

__all__ = [
    "BACKEND_MODULES",
    "Backend",
    "BackendError",
    "OutputMeta",
    "load_backend",
    "resolve_model_file",
]

BACKEND_MODULES: Mapping[str, str] = {
    "onnx": "atlasguard.gateway.backends.onnx",
    "sklearn": "atlasguard.gateway.backends.sklearn",
    "upstream": "atlasguard.gateway.backends.upstream",
}


class BackendError(ConfigurationError):
    """A model cannot be loaded: missing file, missing extra, or a model unlike its policy."""


@dataclass(frozen=True, slots=True)
class OutputMeta:
    """One output a backend produces: name, Open Inference Protocol datatype, shape (-1: any)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@runtime_checkable
class Backend(Protocol):
    """A loaded model. ``predict`` may be called from several threads at once.

    ``blocking`` is true when ``predict`` waits on the network (an upstream server):
    the gateway then never calls it on its event loop.
    """

    name: str
    outputs: tuple[OutputMeta, ...]
    blocking: bool

    def predict(self, inputs: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        """Run the model on validated, preprocessed inputs; return every output."""
        ...

    def close(self) -> None:
        """Release what the backend holds (sessions, connections)."""
        ...


def load_backend(
    name: str,
    spec: ModelSpec,
    base_dir: Path,
    *,
    model_path: Path | None = None,
    threads: int = 1,
    allow: Sequence[str] = (),
) -> Backend:
    """Load model ``name`` as ``spec`` describes, relative paths resolved against ``base_dir``.

    ``model_path`` loads that file instead of ``spec.path`` (e.g. a copy the load
    gate has verified and staged). ``threads`` is ONNX Runtime's intra-op thread
    count: 1 by default, so gateway workers do not fight over cores. ``allow``
    widens the import allow-list for skops files (``[controls.scan] allow``).
    """
    module_name = BACKEND_MODULES.get(spec.backend)
    if module_name is None:
        raise BackendError(f"model {name}: unknown backend {spec.backend!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on installed extras
        raise BackendError(
            f"model {name}: the {spec.backend} backend needs {exc.name}: "
            "pip install 'atlasguard[gateway,onnx]'"
        ) from None
    backend: Backend = module.load(
        name, spec, Path(base_dir), model_path=model_path, threads=threads, allow=tuple(allow)
    )
    return backend


def resolve_model_file(
    name: str, spec: ModelSpec, base_dir: Path, suffix: str, model_path: Path | None
) -> Path:
    """The model file to load: ``model_path``, or ``spec.path`` (a file, or a directory
    holding exactly one ``*suffix`` file)."""
    if model_path is not None:
        path = Path(model_path)
    else:
        if not spec.path:
            raise BackendError(f"model {name}: no path given in [models.{name}]")
        path = Path(base_dir) / spec.path
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.name.endswith(suffix) and p.is_file())
        if len(found) != 1:
            raise BackendError(
                f"model {name}: {path} must hold exactly one *{suffix} file, found {len(found)}"
            )
        path = found[0]
    if not path.is_file():
        raise BackendError(f"model {name}: {path}: no such model file")
    return path
