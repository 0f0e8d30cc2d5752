"""Evidence that a command-kind control ran: its record in the deployment's audit log.

The release gate, the data audit, hardening and the labs are commands, not parts
of the server (:func:`~atlasguard.runtime.plan.plan` lists only those). A policy
turns them on; coverage counts one as enabled once the audit log holds a
successful run of it within :data:`MAX_AGE_DAYS` — a clean ``release-check``,
a ``data audit``, a ``harden``, a completed lab — each recorded by the command
when given ``--policy``. Turned on and never run is "available", as before.

>>> from atlasguard.audit.log import AuditLog
>>> from atlasguard.audit.records import AuditRecord
>>> from atlasguard.db import connect
>>> from atlasguard.policy import load_policy_text
>>> log = AuditLog.create(connect("sqlite://"))
>>> policy = load_policy_text("[controls.labs]\\nenabled = true\\n")
>>> command_evidence(policy, log)
()
>>> _ = log.append(AuditRecord(time=time.time(), principal="ann", action="labs.completed",
...                            decision="allow", details={"lab": "poison"}))
>>> [(p.name, sorted(p.mitigates)) for p in command_evidence(policy, log)]
[('labs-run', ['AML.M0018'])]
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from atlasguard.runtime.plan import Part

if TYPE_CHECKING:
    from atlasguard.audit.log import AuditLog
    from atlasguard.policy import Policy

__all__ = ["MAX_AGE_DAYS", "RUNS", "command_evidence", "recorded_evidence"]

MAX_AGE_DAYS = 30
"""A run older than this no longer counts: a gate nobody has run for a month is off."""

RUNS: Mapping[str, tuple[str, str]] = {
    "release": ("release.checked", "atlasguard release-check"),
    "data": ("data.audited", "atlasguard data audit"),
    "hardening": ("model.hardened", "atlasguard harden"),
    "labs": ("labs.completed", "atlasguard labs run"),
}
"""Control key -> (the audit action its command records, the command)."""


def command_evidence(
    policy: Policy, log: AuditLog, *, now: float | None = None
) -> tuple[Part, ...]:
    """A :class:`Part` for each enabled command-kind control with a recent successful run."""
    from atlasguard.controls import control_by_key

    now = time.time() if now is None else now
    since = now - MAX_AGE_DAYS * 86400
    controls = control_by_key()
    parts = []
    for key, (action, command) in RUNS.items():
        if not policy.enabled(key) or key not in controls:
            continue
        found = log.latest(action, since=since, decision="allow")
        if found is None:
            continue
        idx, record = found
        when = time.strftime("%Y-%m-%d", time.gmtime(record.time))
        parts.append(
            Part(
                name=f"{key}-run",
                mitigates=controls[key].mitigates,
                summary=f"`{command}` ran on {when} ({record.principal}; audit record {idx})",
                setting=f"controls.{key}.enabled",
                location=policy.where(f"controls.{key}.enabled")
                if policy.lines.get(f"controls.{key}.enabled")
                else policy.where(f"controls.{key}"),
            )
        )
    return tuple(parts)


def recorded_evidence(policy: Policy) -> tuple[Part, ...]:
    """:func:`command_evidence` from the deployment's own audit log, read only if the
    deployment has a database already (``atlasguard coverage`` never creates one)."""
    from sqlalchemy import inspect

    from atlasguard.audit.log import AuditLog
    from atlasguard.db.engine import connect

    if not any(policy.enabled(key) for key in RUNS):
        return ()
    url = policy.deployment.database_url
    if not url:
        database = policy.state_dir / "atlasguard.db"
        if not database.is_file():
            return ()
        url = f"sqlite:///{database}"
    engine = connect(url)
    try:
        if not inspect(engine).has_table("audit_records"):
            return ()
        return command_evidence(policy, AuditLog(engine))
    finally:
        engine.dispose()
