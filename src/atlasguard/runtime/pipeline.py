"""The guard pipeline: authenticate, authorize, quota, validate, restore, detect, predict,
obfuscate.

A :class:`Guard` is a small object with one job and a ``mitigates`` attribute
naming its ATLAS mitigations. Guards run in order around one predict call:
``before`` may refuse the request by raising :class:`Denied` (with the HTTP
status and reason the gateway will use) or replace its inputs; ``after`` may
rewrite the outputs (output obfuscation). The same pipeline runs in-process
(``atlasguard.protect``) and behind HTTP; the HTTP layer adds no security logic.

>>> import numpy as np
>>> from atlasguard.runtime.pipeline import Pipeline, Request
>>> pipe = Pipeline(guards=(), predict=lambda inputs: {"scores": inputs["input"] * 2})
>>> pipe(Request(model="m", inputs={"input": np.ones((1, 2), np.float32)})).outputs["scores"]
array([[2., 2.]], dtype=float32)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from atlasguard.errors import AtlasguardError

__all__ = [
    "Arrays",
    "Denied",
    "Guard",
    "Pipeline",
    "Principal",
    "Request",
    "Response",
]

Arrays = Mapping[str, npt.NDArray[np.generic]]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a name, the roles granted to it, and groups its token named."""

    name: str
    roles: frozenset[str] = frozenset()
    groups: tuple[str, ...] = ()  # ``group:<name>`` from a JWT groups claim


@dataclass(frozen=True, slots=True)
class Request:
    """One inference request as the guards see it.

    ``cost`` is what quotas charge: by default the number of rows (the first
    dimension of the first input), so a large batch cannot carry what a quota
    forbids as many requests.
    """

    model: str
    inputs: Arrays
    principal: Principal | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    received_at: float = field(default_factory=time.time)
    client: str | None = None
    credential: str | None = field(default=None, repr=False)
    body: bytes | None = field(default=None, repr=False)
    requested_outputs: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        for array in self.inputs.values():
            return int(array.shape[0]) if array.ndim else 1
        return 0

    @property
    def cost(self) -> int:
        return max(1, self.rows)

    def with_inputs(self, inputs: Arrays) -> Request:
        return replace(self, inputs=inputs)


@dataclass(frozen=True, slots=True)
class Response:
    """The outputs of a request, plus headers guards want the client to see."""

    outputs: Arrays
    headers: Mapping[str, str] = field(default_factory=dict)

    def with_outputs(self, outputs: Arrays) -> Response:
        return replace(self, outputs=outputs)


class Denied(AtlasguardError):
    """A guard refused a request. ``status`` is the HTTP status, ``reason`` a stable code.

    ``reason`` values: ``unauthenticated`` (401), ``forbidden`` (403; never says
    whether the model exists), ``rate`` / ``quota`` (429), ``invalid-input``
    (400/422), ``adversarial`` (403)...
    """

    exit_code = 1

    def __init__(
        self, message: str, *, status: int, reason: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})


@runtime_checkable
class Guard(Protocol):
    """One step of the pipeline. Either hook may be a no-op."""

    name: str
    mitigates: frozenset[str]

    def before(self, request: Request) -> Request:
        """Check or transform a request; raise :class:`Denied` to refuse it."""
        ...

    def after(self, request: Request, response: Response) -> Response:
        """Check or transform a response (e.g. obfuscate scores)."""
        ...


@dataclass(frozen=True)
class Pipeline:
    """Guards around a predict function: ``before`` in order, predict, ``after`` in reverse."""

    guards: tuple[Guard, ...]
    predict: Callable[[Arrays], Arrays]

    def __call__(
        self, request: Request, *, observe: Callable[[Request], None] | None = None
    ) -> Response:
        """Run ``request`` through the guards and the model.

        ``observe`` sees the request after each guard (the auditor uses it to
        learn the principal even when a later guard refuses).
        """
        for guard in self.guards:
            request = guard.before(request)
            if observe is not None:
                observe(request)
        response = Response(outputs=self.predict(request.inputs))
        for guard in reversed(self.guards):
            response = guard.after(request, response)
        return response

    @property
    def mitigates(self) -> frozenset[str]:
        """Every ATLAS mitigation some guard of this pipeline implements."""
        out: frozenset[str] = frozenset()
        for guard in self.guards:
            out |= guard.mitigates
        return out
