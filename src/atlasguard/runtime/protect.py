"""``protect``: a model behind the deployment's guards, one audit record a call.

A :class:`Protected` model is what both front ends serve: in-process callers
call it with arrays and a credential (:meth:`Protected.__call__`); the
gateway authenticates from the request's headers, decodes the body with the
protocol codec and calls :meth:`Protected.run`. Either way the principal is
authorized for the model (:class:`~atlasguard.runtime.access.Access`), the
guards run around the model, and the outcome — allowed, refused for any
reason, or failed — is one audit record (:class:`~atlasguard.runtime.auditor.Auditor`);
a call whose record cannot be written is refused (fail closed).

>>> import numpy as np
>>> from atlasguard.policy import ModelSpec, TensorSpec
>>> from atlasguard.runtime.auditor import Auditor
>>> spec = ModelSpec(inputs=(TensorSpec(name="x", shape=(-1, 2)),))
>>> p = Protected(name="double", spec=spec, predict=lambda x: {"y": x["x"] * 2},
...               guards=(), access=None, auditor=Auditor(None))
>>> p({"x": np.ones((1, 2), np.float32)}).outputs["y"].tolist()
[[2.0, 2.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from atlasguard.policy import ModelSpec
from atlasguard.runtime.access import Access
from atlasguard.runtime.auditor import Auditor, Outcome, arrays_digest
from atlasguard.runtime.pipeline import (
    Arrays,
    Denied,
    Guard,
    Pipeline,
    Principal,
    Request,
    Response,
    new_request_id,
)
from atlasguard.runtime.validate import check_arrays

if TYPE_CHECKING:
    from atlasguard.policy import Policy

__all__ = ["ModelError", "Protected", "protect"]


class ModelError(Denied):
    """The model raised on an input the guards accepted; the original is the ``__cause__``."""

    def __init__(self, model: str) -> None:
        super().__init__(f"model {model} failed on this input", reason="model-error")


class Protected:
    """A model behind guards: authorize, guard, predict, obfuscate — and audit every call.

    ``access`` may be ``None`` only for tests and in-process experiments (no
    authentication: every call runs as ``anonymous``).
    """

    def __init__(
        self,
        *,
        name: str,
        spec: ModelSpec,
        predict: Callable[[Arrays], Arrays],
        guards: Sequence[Guard],
        access: Access | None,
        auditor: Auditor,
    ) -> None:
        self.name = name
        self.spec = spec
        self.pipeline = Pipeline(guards=tuple(guards), predict=predict)
        self.access = access
        self.auditor = auditor

    @property
    def mitigates(self) -> frozenset[str]:
        extra = self.access.mitigates if self.access is not None else frozenset()
        return self.pipeline.mitigates | extra

    def __call__(
        self,
        inputs: Mapping[str, object],
        *,
        credential: str | None = None,
        request_id: str | None = None,
    ) -> Response:
        """Run one in-process request; raises :class:`Denied` when it is refused.

        The arrays are checked against the model's declared inputs; ``credential``
        is an API key or a token of the deployment. Returns once the call's audit
        record is durable.
        """
        with self.auditor.coming():
            return self._call(inputs, credential, request_id)

    def _call(
        self, inputs: Mapping[str, object], credential: str | None, request_id: str | None
    ) -> Response:
        outcome = Outcome(
            action="infer", model=self.name, request_id=request_id or new_request_id()
        )
        try:
            outcome.input_digest = arrays_digest(inputs)
            principal = self._admit(credential, outcome)
            checked = check_arrays(inputs, self.spec)
            response = self.run(self.request(principal, checked, outcome))
        except ModelError:
            outcome.fail()
            self.auditor.record(outcome)
            raise
        except Denied as denied:
            outcome.refuse(denied.reason)
            self.auditor.record(outcome)
            raise
        outcome.answered(response.outputs, notes=response.notes)
        self.auditor.record(outcome)
        return response

    def _admit(self, credential: str | None, outcome: Outcome) -> Principal:
        if self.access is None:
            return Principal("anonymous")
        record = self.access.authenticate(credential)
        outcome.principal = record.name
        return self.access.authorize(record, self.name)

    def request(self, principal: Principal, inputs: Arrays, outcome: Outcome) -> Request:
        """The pipeline's request for checked ``inputs`` of an authorized ``principal``."""
        return Request(
            model=self.name,
            inputs=inputs,
            principal=principal,
            request_id=outcome.request_id or new_request_id(),
            received_at=outcome.time,
        )

    def run(self, request: Request) -> Response:
        """The guards and the model on a request already authorized and checked.

        Raises :class:`Denied` from a guard, or :class:`ModelError` when the model
        itself raises.
        """
        try:
            return self.pipeline(request)
        except Denied:
            raise
        except Exception as exc:  # the model's own failure, never a guard's decision
            raise ModelError(self.name) from exc


def protect(
    model: Callable[[Arrays], Arrays],
    policy: Policy,
    *,
    name: str,
    passphrase: bytes | None = None,
) -> Protected:
    """``model`` behind the same guards and audit log the gateway would give it.

    ``policy`` must declare ``[models.<name>]`` (its inputs are checked) and
    enable ``[controls.access]``; quotas and the output policy apply when the
    policy enables them. Callers pass ``credential=`` on every call. The
    deployment (database, identity store, audit log) is opened for this model;
    to protect several, open one :class:`~atlasguard.runtime.deployment.Deployment`
    and call its :meth:`~atlasguard.runtime.deployment.Deployment.protect`.

    >>> # protected = atlasguard.protect(my_predict, load_policy("atlasguard.toml"), name="digits")
    >>> # protected({"input": batch}, credential=api_key).outputs
    """
    from atlasguard.runtime.deployment import Deployment

    return Deployment.open(policy, passphrase=passphrase).protect(model, name=name)
