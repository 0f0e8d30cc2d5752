"""The backend of an ensemble or a consensus: its members' backends, one model name.

The vote itself is :mod:`atlasguard.runtime.ensemble` (the same code in-process);
this only says what the composite outputs and whether calling it may block.

>>> b = CompositeBackend.over("e", [], ("label", "probabilities"))
>>> [o.name for o in b.outputs], b.blocking
(['label', 'probabilities'], False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy.typing as npt

from atlasguard.gateway.backends.base import Backend, OutputMeta

__all__ = ["CompositeBackend"]

_META = {
    "label": OutputMeta("label", "INT64", (-1,)),
    "probabilities": OutputMeta("probabilities", "FP32", (-1, -1)),
    "disagreement": OutputMeta("disagreement", "FP32", (-1,)),
    "agreement": OutputMeta("agreement", "INT64", (-1,)),
}


@dataclass
class CompositeBackend:
    """Outputs and blocking of a model made of other backends (closed by the gateway)."""

    name: str
    outputs: tuple[OutputMeta, ...]
    blocking: bool

    @classmethod
    def over(
        cls, name: str, members: Sequence[Backend], outputs: Sequence[str]
    ) -> CompositeBackend:
        return cls(name, tuple(_META[o] for o in outputs), any(m.blocking for m in members))

    def predict(self, inputs: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        raise NotImplementedError("a composite model is called through its vote")

    def close(self) -> None:
        """Nothing of its own: the gateway closes every member."""
