"""The guard pipeline: authorize, quota, restore, detect, predict, obfuscate.

A :class:`Guard` is a small object with one job and a ``mitigates`` attribute
naming its ATLAS mitigations. Guards run in order around one predict call:
``before`` may refuse the request by raising :class:`Denied` or replace its
inputs; ``after`` may rewrite the outputs (output obfuscation). The same
pipeline runs in-process (:func:`atlasguard.protect`) and behind HTTP.

The runtime knows no HTTP: a request is a model name, arrays and an
authenticated principal; a refusal is a :class:`Denied` with a stable
``reason`` (:data:`REASONS`), which each front end translates in one place
(the gateway to an HTTP status, the command line to an exit code).

>>> import numpy as np
>>> from atlasguard.runtime.pipeline import Pipeline, Request
>>> pipe = Pipeline(guards=(), predict=lambda inputs: {"scores": inputs["input"] * 2})
>>> pipe(Request(model="m", inputs={"input": np.ones((1, 2), np.float32)})).outputs["scores"]
array([[2., 2.]], dtype=float32)
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from atlasguard.errors import AtlasguardError

__all__ = [
    "REASONS",
    "Arrays",
    "Denied",
    "Guard",
    "Limit",
    "Pipeline",
    "Principal",
    "Reason",
    "Request",
    "Response",
    "new_request_id",
]

Arrays = Mapping[str, npt.NDArray[np.generic]]

_PROCESS = os.urandom(8).hex()  # this process's part of every request id
_COUNT = itertools.count()


def new_request_id() -> str:
    """A request id unique across processes and restarts: 16 random hex digits, then a count.

    Cheaper than a UUID per request (one random read per process, not per call).
    """
    return f"{_PROCESS}{next(_COUNT):012x}"


Reason = Literal[
    "unauthenticated",
    "throttled",
    "forbidden",
    "not-found",
    "malformed",
    "too-large",
    "unsupported-media",
    "invalid-input",
    "over-limit",
    "rate",
    "quota",
    "suspended",
    "detected",
    "unsafe",
    "refused",
    "unavailable",
    "audit-unavailable",
    "model-error",
    "upstream",
    "timeout",
]

REASONS: Mapping[Reason, str] = {
    "unauthenticated": "no valid credential (missing, malformed, unknown, expired or revoked)",
    "throttled": "too many failed authentications from this client or in all",
    "forbidden": "no grant for this principal and object (never says whether it exists)",
    "not-found": "the caller may ask, but no such model or object is served",
    "malformed": "the request is not well-formed (JSON, tensor structure, parameters)",
    "too-large": "the request is larger than the deployment accepts",
    "unsupported-media": "the request body is of a type this endpoint does not take",
    "invalid-input": "a well-formed request breaks the model's declared contract",
    "over-limit": "the request alone exceeds a limit that can never admit it",
    "rate": "the principal's rate limit is exhausted for now",
    "quota": "the principal's daily or lifetime quota is exhausted",
    "suspended": "the principal's queries look like an attack in progress (query monitor)",
    "detected": "a detector judged the input adversarial or unlike the model's inputs",
    "unsafe": "an artifact failed the scan",
    "refused": "an artifact failed verification (signature, manifest, kind)",
    "unavailable": "a store the decision needs cannot be reached (fail closed)",
    "audit-unavailable": "the audit log cannot record the request (fail closed)",
    "model-error": "the model failed on an input it accepted",
    "upstream": "the upstream model server failed or answered wrongly",
    "timeout": "the request did not arrive in time",
}
"""Every reason a request can be refused for, with what it means."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a name, the roles granted to it, and groups its token named.

    ``grant_limits`` is the ``(rate, quota)`` of the grant that let it in, when that
    grant carries its own (``keys create --rate --quota``): quotas apply it.
    ``output`` is a grant's own output policy (``keys restrict --output label``),
    which the output guard applies before any role's.
    """

    name: str
    roles: frozenset[str] = frozenset()
    groups: tuple[str, ...] = ()  # ``group:<name>`` from a JWT groups claim
    grant_limits: tuple[str, str] | None = None
    output: str = ""


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit's state after a decision (a quota window).

    ``reset`` is seconds until the limit is fully available again (``None`` for a
    limit that never resets); ``window`` is the limit's window in seconds.
    """

    name: Literal["rate", "daily", "lifetime"]
    limit: int
    remaining: int
    reset: float | None
    window: float | None


@dataclass(frozen=True, slots=True)
class Request:
    """One inference request as the guards see it: a model, arrays, a principal.

    ``cost`` is what quotas charge: by default the number of rows (the first
    dimension of the first input), so a large batch cannot carry what a quota
    forbids as many requests. ``limits`` is what a quota guard reported.
    """

    model: str
    inputs: Arrays
    principal: Principal | None = None
    request_id: str = field(default_factory=new_request_id)
    received_at: float = field(default_factory=time.time)
    limits: tuple[Limit, ...] = ()

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

    def with_limits(self, limits: tuple[Limit, ...]) -> Request:
        # Spelled out, not dataclasses.replace: this runs on every request.
        return Request(
            self.model, self.inputs, self.principal, self.request_id, self.received_at, limits
        )


@dataclass(frozen=True, slots=True)
class Response:
    """The outputs of a request, the limits the principal has left, flags and notes.

    ``flags`` are what guards say of the answer to the client without refusing it
    (a detector with action ``flag``: ``adversarial-input``); the gateway returns
    them in the response's ``parameters``. ``notes`` are what guards say of it to
    the audit log only: they go into the request's own audit record.
    """

    outputs: Arrays
    limits: tuple[Limit, ...] = ()
    flags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def with_outputs(self, outputs: Arrays) -> Response:
        # not dataclasses.replace: this runs on every request
        return Response(outputs, self.limits, self.flags, self.notes)

    def with_flags(self, flags: tuple[str, ...]) -> Response:
        return Response(self.outputs, self.limits, self.flags + flags, self.notes)

    def with_notes(self, notes: tuple[str, ...]) -> Response:
        return Response(self.outputs, self.limits, self.flags, self.notes + notes)


class Denied(AtlasguardError):
    """A guard refused a request, for a stable :data:`REASONS` ``reason``.

    ``retry_after`` (seconds) says when the same request may succeed (rate and
    quota refusals); ``limits`` the state of the principal's limits. ``recorded``
    is set once an audit record tells of this refusal (so no front end records
    it twice).
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        reason: Reason,
        retry_after: float | None = None,
        limits: tuple[Limit, ...] = (),
    ) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.retry_after = retry_after
        self.limits = limits
        self.recorded = False


@runtime_checkable
class Guard(Protocol):
    """One step of the pipeline. Either hook may be a no-op.

    A guard whose ``before`` may wait on the network (a Redis quota store) sets
    ``blocking = True``: front ends then never run it on an event loop.
    """

    name: str
    mitigates: frozenset[str]
    blocking: bool

    def before(self, request: Request) -> Request:
        """Check or transform a request; raise :class:`Denied` to refuse it."""
        ...

    def after(self, request: Request, response: Response) -> Response:
        """Check or transform a response (e.g. obfuscate scores)."""
        ...


@dataclass(frozen=True)
class Pipeline:
    """Guards around a predict function: ``before`` in order, predict, ``after`` in reverse.

    Each guard's ``after`` sees the request as its own ``before`` returned it: a
    guard placed before input restoration judges the input the client sent.
    """

    guards: tuple[Guard, ...]
    predict: Callable[[Arrays], Arrays]

    def __call__(self, request: Request) -> Response:
        """Run ``request`` through the guards and the model."""
        seen: list[Request] = []
        for guard in self.guards:
            request = guard.before(request)
            seen.append(request)
        response = Response(outputs=self.predict(request.inputs), limits=request.limits)
        for guard, saw in zip(reversed(self.guards), reversed(seen), strict=True):
            response = guard.after(saw, response)
        return response

    @property
    def blocking(self) -> bool:
        """Whether some guard may wait on the network."""
        return any(guard.blocking for guard in self.guards)

    @property
    def mitigates(self) -> frozenset[str]:
        """Every ATLAS mitigation some guard of this pipeline implements."""
        out: frozenset[str] = frozenset()
        for guard in self.guards:
            out |= guard.mitigates
        return out
