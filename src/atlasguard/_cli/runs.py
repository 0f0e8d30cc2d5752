"""Recording a command's run in a deployment's audit log (``--policy``).

The labs, the release gate, the data audit and hardening each write one record
when given the deployment's policy: coverage counts a control as enabled once
its run is on record (:mod:`atlasguard.runtime.evidence`), and the record says
who ran it, on what, and what it found.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["record_run"]


def record_run(
    policy: Path,
    action: str,
    principal: str,
    details: dict[str, str],
    *,
    decision: str = "allow",
    reason: str = "",
) -> str:
    """Write one ``action`` record to the audit log of the deployment ``policy`` describes;
    sign the log's head so ``atlasguard audit verify`` covers it. Returns what to tell."""
    from atlasguard.policy import load_policy
    from atlasguard.runtime.auditor import Outcome
    from atlasguard.runtime.deployment import Deployment

    deployment = Deployment.open(load_policy(policy))
    try:
        outcome = Outcome(action=action, principal=principal)
        outcome.details.update(details)
        if decision != "allow":
            outcome.refuse(reason or "findings")
        deployment.auditor.record(outcome)
    finally:
        deployment.close(sign_head=True)
    return f"recorded in the audit log of {policy} ({action})"
