"""``protect``: the guard pipeline around a predict function, with one audit record a call.

The gateway's routes are a thin layer over :class:`Protected`; in-process
callers use it directly. Every call — allowed or refused — leaves exactly one
audit record before it returns, and a call whose record cannot be written is
refused (fail closed): the caller gets ``Denied(status=503)`` and no output.

>>> import numpy as np
>>> from atlasguard.runtime.protect import Protected
>>> p = Protected(name="double", predict=lambda x: {"y": x["x"] * 2}, guards=())
>>> p({"x": np.ones((1, 2))}).outputs["y"].tolist()
[[2.0, 2.0]]
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from atlasguard.runtime.pipeline import Arrays, Denied, Guard, Pipeline, Request, Response

if TYPE_CHECKING:
    from atlasguard.audit.log import AuditLog
    from atlasguard.policy import Policy

__all__ = ["Protected", "input_digest", "output_summary", "protect"]

logger = logging.getLogger("atlasguard.gateway")


def input_digest(request: Request) -> str:
    """SHA-256 of what the client sent (the body, or the arrays' bytes); inputs are not kept."""
    h = hashlib.sha256()
    if request.body is not None:
        h.update(request.body)
    else:
        for name in sorted(request.inputs):
            h.update(name.encode())
            h.update(np.ascontiguousarray(request.inputs[name]).tobytes())
    return "sha256:" + h.hexdigest()


def output_summary(outputs: Arrays) -> str:
    """A short description of what left: names, shapes, and a label output's first values."""
    parts = []
    for name in sorted(outputs):
        value = outputs[name]
        text = f"{name}{list(value.shape)}"
        if value.dtype.kind in "iu" and value.size:
            text += "=" + ",".join(str(int(v)) for v in value.ravel()[:8])
            text += "…" if value.size > 8 else ""
        parts.append(text)
    return " ".join(parts)


class Protected:
    """A model behind guards, auditing every call.

    ``audit`` may be ``None`` only for tests and in-process experiments: then
    nothing is recorded (logged once as a warning).
    """

    def __init__(
        self,
        *,
        name: str,
        predict: Callable[[Arrays], Arrays],
        guards: Sequence[Guard],
        audit: AuditLog | None = None,
    ) -> None:
        self.name = name
        self.pipeline = Pipeline(guards=tuple(guards), predict=predict)
        self._audit = audit
        if audit is None:
            logger.warning("model %s is protected without an audit log", name)

    @property
    def mitigates(self) -> frozenset[str]:
        return self.pipeline.mitigates

    def __call__(
        self,
        inputs: Mapping[str, object] | None = None,
        *,
        body: bytes | None = None,
        credential: str | None = None,
        client: str | None = None,
        request_id: str | None = None,
    ) -> Response:
        """Run one request; raises :class:`Denied` when a guard refuses it."""
        request = Request(
            model=self.name,
            inputs={k: np.asarray(v) for k, v in (inputs or {}).items()},
            credential=credential,
            client=client,
            body=body,
        )
        if request_id:
            request = replace(request, request_id=request_id)
        start = time.perf_counter()
        digest = input_digest(request)
        seen: list[str] = []

        def observe(current: Request) -> None:
            if current.principal is not None and not seen:
                seen.append(current.principal.name)

        try:
            response = self.pipeline(request, observe=observe)
        except Denied as denied:
            self._record(request, seen, "deny", denied.reason, digest, None, start)
            raise
        self._record(request, seen, "allow", "", digest, response.outputs, start)
        return response

    def _record(
        self,
        request: Request,
        seen: list[str],
        decision: str,
        reason: str,
        digest: str,
        outputs: Arrays | None,
        start: float,
    ) -> None:
        latency = (time.perf_counter() - start) * 1000.0
        if self._audit is None:
            return
        from atlasguard.audit.log import AuditWriteError
        from atlasguard.audit.records import AuditRecord

        record = AuditRecord(
            time=request.received_at,
            principal=seen[0] if seen else "-",
            action="infer",
            decision=decision,
            reason=reason,
            model=self.name,
            input_digest=digest,
            output_summary=output_summary(outputs) if outputs is not None else None,
            latency_ms=round(latency, 3),
            request_id=request.request_id,
            details={"client": request.client} if request.client else {},
        )
        try:
            self._audit.append(record)
        except AuditWriteError as exc:
            logger.error("audit write failed, refusing request %s: %s", request.request_id, exc)
            raise Denied(
                "the audit log is unavailable; request refused",
                status=503,
                reason="audit-unavailable",
            ) from exc


def protect(
    model: Callable[[Arrays], Arrays],
    policy: Policy,
    *,
    name: str,
    passphrase: bytes | None = None,
) -> Protected:
    """``model`` behind the same guards and audit log the gateway would give it.

    ``policy`` must declare ``[models.<name>]`` (its inputs are validated) and
    enable ``[controls.access]``; quotas and the output policy apply when the
    policy enables them. Callers pass ``credential=`` on every call.

    >>> # protected = atlasguard.protect(my_predict, load_policy("atlasguard.toml"), name="digits")
    >>> # protected({"input": batch}, credential=api_key).outputs
    """
    from atlasguard.audit.log import open_audit_log
    from atlasguard.errors import ConfigurationError
    from atlasguard.gateway.service import build_guards
    from atlasguard.identity.store import open_identity_store

    if name not in policy.models:
        raise ConfigurationError(f"{policy.label}: no [models.{name}] table declares its inputs")
    if not policy.enabled("access"):
        raise ConfigurationError(f"{policy.label}: protect() needs [controls.access] enabled")
    identity = open_identity_store(policy)
    audit, _ = open_audit_log(policy, passphrase=passphrase)
    return Protected(name=name, predict=model, guards=build_guards(policy, identity), audit=audit)
