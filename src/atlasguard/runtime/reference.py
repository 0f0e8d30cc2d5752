"""A model's clean reference inputs: what natural queries look like.

The query monitor, the per-input detectors and the restoration's ``clip`` to
the training range learn from the same rows: ``reference = "FILE.npy"`` in
``[models.<name>]`` (or, as before, ``[controls.monitor] reference = { name =
"FILE.npy" }``). The file is read by NumPy without pickles, once per process,
and flattened to ``[rows, features]``.

>>> from atlasguard.policy import load_policy_text
>>> reference_inputs(load_policy_text("[models.m]\\n"), "m") is None
True
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from atlasguard.errors import ConfigurationError
from atlasguard.policy import Policy

__all__ = ["calibration_inputs", "reference_inputs"]


def reference_inputs(policy: Policy, model: str) -> npt.NDArray[np.float64] | None:
    """The reference rows of ``model``, or ``None`` when the policy names none."""
    spec = policy.models.get(model)
    name = spec.reference if spec is not None else ""
    if not name:
        monitor = policy.controls.get("monitor")
        name = (getattr(monitor, "reference", None) or {}).get(model, "")
    if not name:
        return None
    path = policy.base_dir / name
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = 0  # _load says what is wrong
    return _load(path, stamp, model, name).copy()


def calibration_inputs(policy: Policy, model: str) -> npt.NDArray[np.float64] | None:
    """Held-out clean rows of ``model`` (``calibration`` in its table), or ``None``."""
    spec = policy.models.get(model)
    if spec is None or not spec.calibration:
        return None
    path = policy.base_dir / spec.calibration
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = 0
    return _load(path, stamp, model, spec.calibration).copy()


@lru_cache(maxsize=16)
def _load(path: Path, stamp: int, model: str, name: str) -> npt.NDArray[np.float64]:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"reference for {model!r}: cannot read {name} as a NumPy array without pickles "
            f"({type(exc).__name__}); save clean inputs with numpy.save"
        ) from exc
    rows = np.asarray(data, dtype=np.float64)
    if rows.ndim < 2 or len(rows) < 2:
        raise ConfigurationError(f"reference for {model!r} must hold at least two input rows")
    return rows.reshape(len(rows), -1)
