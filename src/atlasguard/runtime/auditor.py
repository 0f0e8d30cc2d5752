"""The auditor: every outcome of every call becomes one audit record, built here.

Front ends describe what happened as an :class:`Outcome` — an inference
allowed or refused for any reason, a model that failed, a metadata or
readiness call, an admin or registry action — and hand it to the deployment's
one :class:`Auditor`, which turns it into an
:class:`~atlasguard.audit.records.AuditRecord` (nowhere else builds one) and
writes it to the one audit log. A call whose record cannot be written is
refused (fail closed) with ``Denied(reason="audit-unavailable")``.

>>> from atlasguard.audit.log import AuditLog
>>> from atlasguard.db import connect
>>> auditor = Auditor(AuditLog.create(connect("sqlite://")))
>>> outcome = Outcome(action="infer", model="digits", principal="alice")
>>> outcome.refuse("rate")
>>> auditor.record(outcome)
>>> [(r.principal, r.decision, r.reason) for _, r in auditor.log.records()]
[('alice', 'deny', 'rate')]
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time as clock
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from atlasguard.runtime.pipeline import Arrays, Denied

if TYPE_CHECKING:
    from atlasguard.audit.log import AuditLog, Ticket
    from atlasguard.audit.records import AuditRecord

__all__ = ["Auditor", "Outcome", "arrays_digest", "audit_unavailable", "output_summary"]

logger = logging.getLogger("atlasguard.audit")

Decision = Literal["allow", "deny", "error"]


def audit_unavailable() -> Denied:
    """The refusal for a call whose record the audit log could not write."""
    return Denied("the audit log is unavailable; request refused", reason="audit-unavailable")


def arrays_digest(inputs: Mapping[str, object]) -> str:
    """SHA-256 of input arrays (names, dtypes, shapes and bytes); inputs are never kept."""
    h = hashlib.sha256()
    for name in sorted(inputs):
        array = np.asarray(inputs[name])
        h.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        if array.dtype.kind == "O":  # object arrays hold pointers: hash what they show
            for item in array.ravel():
                h.update(repr(item).encode("utf-8", "backslashreplace"))
        else:
            h.update(np.ascontiguousarray(array).tobytes())
    return "sha256:" + h.hexdigest()


def output_summary(outputs: Arrays) -> str:
    """A short description of what left: names, shapes, and a label output's first values."""
    parts = []
    for name in sorted(outputs):
        value = outputs[name]
        text = f"{name}{list(value.shape)}"
        if value.dtype.kind in "iu" and value.size:
            text += "=" + ",".join(map(str, value.ravel()[:8].tolist()))
            text += "…" if value.size > 8 else ""
        parts.append(text)
    return " ".join(parts)


@dataclass(slots=True)
class Outcome:
    """One call as its audit record will tell it, filled in as the call proceeds.

    ``action`` is ``infer``, ``metadata``, ``ready``, ``admin.<verb>``,
    ``registry.<verb>``...; ``decision`` is ``allow``, ``deny`` (a refusal, with
    its reason) or ``error`` (the model or the server failed).
    """

    action: str
    model: str | None = None
    principal: str = "-"
    decision: Decision = "allow"
    reason: str = ""
    request_id: str | None = None
    input_digest: str | None = None
    output_summary: str | None = None
    details: dict[str, str] = field(default_factory=dict)
    time: float = field(default_factory=clock.time)
    started: float = field(default_factory=clock.perf_counter)

    def refuse(self, reason: str) -> None:
        """The call was refused for ``reason`` (a :data:`~atlasguard.runtime.pipeline.REASONS`)."""
        self.decision, self.reason = "deny", reason

    def fail(self, reason: str = "model-error") -> None:
        """The call failed on the server's side."""
        self.decision, self.reason = "error", reason

    def answered(self, outputs: Arrays, *, notes: tuple[str, ...] = ()) -> None:
        """The call was allowed and these outputs left; ``notes`` are what guards said
        of it (a detection that did not refuse it)."""
        self.decision, self.reason = "allow", ""
        self.output_summary = output_summary(outputs)
        if notes:
            self.details["notes"] = "; ".join(notes)


class Auditor:
    """The one builder of audit records, writing to the deployment's one audit log.

    ``log`` may be ``None`` only in tests and in-process experiments: nothing is
    recorded then (logged once as a warning).
    """

    def __init__(self, log: AuditLog | None) -> None:
        self.log = log
        if log is None:
            logger.warning("calls are not audited: no audit log")

    def build(self, outcome: Outcome) -> AuditRecord:
        """The audit record of ``outcome``: the only place records are made."""
        from atlasguard.audit.records import AuditRecord

        return AuditRecord(
            time=outcome.time,
            principal=outcome.principal,
            action=outcome.action,
            decision=outcome.decision,
            reason=outcome.reason,
            model=outcome.model,
            input_digest=outcome.input_digest,
            output_summary=outcome.output_summary,
            latency_ms=round((clock.perf_counter() - outcome.started) * 1000.0, 3),
            request_id=outcome.request_id,
            details=outcome.details,
        )

    def coming(self) -> contextlib.AbstractContextManager[None]:
        """Announce a call that will record an outcome before it ends (see AuditLog.coming).

        The log's writer then waits for that record instead of committing
        without it: one commit serves calls that run side by side.
        """
        if self.log is None:
            return contextlib.nullcontext()
        return self.log.coming()

    def record(self, outcome: Outcome) -> None:
        """Write ``outcome`` and wait until it is durable; ``Denied(audit-unavailable)``."""
        if self.log is None:
            return
        from atlasguard.audit.log import AuditWriteError

        try:
            self.log.append(self.build(outcome))
        except AuditWriteError as exc:
            logger.error(
                "audit write failed, refusing %s %s: %s", outcome.action, outcome.model, exc
            )
            raise audit_unavailable() from exc

    def submit(self, outcome: Outcome, *, loop: asyncio.AbstractEventLoop) -> Ticket | None:
        """Queue ``outcome`` for a coroutine on ``loop``; settle it with :meth:`confirm`."""
        if self.log is None:
            return None
        return self.log.submit(self.build(outcome), loop=loop)

    async def confirm(self, ticket: Ticket | None) -> None:
        """Wait, without a thread, until ``ticket`` is durable; ``Denied(audit-unavailable)``."""
        if ticket is None or self.log is None:
            return
        from atlasguard.audit.log import AuditWriteError

        try:
            await self.log.confirm(ticket)
        except AuditWriteError as exc:
            logger.error("audit write failed, refusing request: %s", exc)
            raise audit_unavailable() from exc

    async def arecord(self, outcome: Outcome) -> None:
        """:meth:`record` for a coroutine: submit on the running loop, then confirm."""
        await self.confirm(self.submit(outcome, loop=asyncio.get_running_loop()))

    def close(self, *, sign_head: bool = False) -> None:
        """Write what is queued; with ``sign_head``, sign the head (a graceful shutdown)."""
        if self.log is None:
            return
        self.log.close()
        if sign_head and self.log.signs_checkpoints:
            from atlasguard.audit.log import AuditWriteError

            try:
                self.log.checkpoint()
            except AuditWriteError:
                logger.exception("could not sign the audit log's head at shutdown")
