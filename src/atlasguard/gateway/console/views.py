"""What the console's pages show, read from the deployment: plain data, no HTML.

Each function reads the live deployment — its policy, audit log, identity
store, suspensions, registry, and the bench and lab results it is pointed
at — and returns dictionaries and lists for a template or a JSON answer.
Nothing here writes; the console's actions go through
:class:`~atlasguard.runtime.admin.Admin`.

>>> statuses = [status_of("allow", ""), status_of("deny", "rate"), status_of("deny", "detected")]
>>> statuses
['allowed', '429', 'blocked by detector']
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlasguard.gateway.http import STATUS
from atlasguard.runtime.evidence import MAX_AGE_DAYS, RUNS

if TYPE_CHECKING:
    from atlasguard.audit.log import AuditLog
    from atlasguard.audit.records import AuditRecord
    from atlasguard.catalog.coverage import Coverage
    from atlasguard.gateway.service import Gateway
    from atlasguard.policy import Policy

__all__ = [
    "alerts_view",
    "audit_page",
    "coverage_view",
    "registry_view",
    "status_of",
    "traffic_view",
]

TRAFFIC_WINDOW = 15 * 60  # seconds of traffic the traffic page sums up
TRAFFIC_SCAN = 20_000  # at most this many of the newest records are read for it
ALERT_WINDOW = 24 * 3600
ALERT_ACTIONS = ("monitor.alarm", "drift.alarm")
DETECTOR_REASONS = ("detected", "suspended")
OUTCOMES = ("allowed", "401", "403", "429", "blocked by detector", "other")
RESULT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")


def status_of(decision: str, reason: str) -> str:
    """The traffic page's bucket for a decision: allowed, 401, 403, 429, blocked by
    detector, or other (any other refusal or failure)."""
    if decision == "allow":
        return "allowed"
    if reason in DETECTOR_REASONS:
        return "blocked by detector"
    status = STATUS.get(reason)  # type: ignore[call-overload]
    if status in (401, 403, 429):
        return str(status)
    return "other"


def _served(record: AuditRecord) -> bool:
    """A request to the gateway (not the console's own reads, not a background alarm)."""
    return not record.action.startswith("console.") and record.action not in ALERT_ACTIONS


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(q * len(ordered)) - 1)
    return round(ordered[rank], 2)


def _by_id(cell: dict[str, Any]) -> str:
    return str(cell["id"])


# -- coverage --------------------------------------------------------------------------


def coverage_view(cov: Coverage, policy: Policy, selected: str | None) -> dict[str, Any]:
    """The ATLAS matrix (tactics as columns, techniques as cells, coloured by how many
    enabled mitigations cover each) and, for ``selected``, that mitigation's detail."""
    from atlasguard.catalog.atlas import load_catalog

    catalog = load_catalog()
    by_tactic: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for tc in cov.techniques:
        if tc.technique.is_subtechnique:
            continue
        for tactic in tc.tactics:
            by_tactic[tactic].append(
                {
                    "id": tc.technique.id,
                    "name": tc.technique.name,
                    "count": tc.count,
                    "level": min(tc.count, 3),
                    "mitigations": ", ".join(tc.mitigations) or "none enabled",
                    "url": tc.technique.url,
                }
            )
    columns: list[dict[str, Any]] = [
        {"id": t.id, "name": t.name, "techniques": sorted(by_tactic[t.id], key=_by_id)}
        for t in catalog.tactics.values()
        if by_tactic.get(t.id)
    ]
    mitigations = [
        {
            "id": m.mitigation.id,
            "name": m.mitigation.name,
            "status": m.status,
            "techniques": len(m.techniques),
        }
        for m in cov.mitigations
    ]
    detail = None
    chosen = next((m for m in cov.mitigations if m.mitigation.id == selected), None)
    if chosen is not None:
        settings = []
        for key in chosen.controls:
            values = policy.settings(key).model_dump(mode="json")
            settings.append(
                {
                    "key": key,
                    "enabled": policy.enabled(key),
                    "values": {k: json.dumps(v) for k, v in values.items() if k != "enabled"},
                    "command": RUNS[key][1] if key in RUNS else "",
                }
            )
        detail = {
            "id": chosen.mitigation.id,
            "name": chosen.mitigation.name,
            "description": chosen.mitigation.description,
            "status": chosen.status,
            "url": chosen.mitigation.url,
            "evidence": [
                {"control": e.control, "title": e.title, "setting": e.setting, "at": e.location}
                for e in chosen.evidence
            ],
            "settings": settings,
            "max_age_days": MAX_AGE_DAYS,
            "techniques": list(chosen.techniques),
        }
    return {
        "columns": columns,
        "mitigations": mitigations,
        "detail": detail,
        "enabled": cov.enabled_count,
        "implemented": cov.implemented_count,
        "covered": cov.covered_techniques,
        "total": len(cov.techniques),
        "atlas_version": cov.atlas_version,
    }


# -- traffic ---------------------------------------------------------------------------


def traffic_view(
    log: AuditLog,
    policy: Policy,
    daily_limits: dict[str, str],
    *,
    now: float | None = None,
    window: float = TRAFFIC_WINDOW,
) -> dict[str, Any]:
    """Requests of the last ``window`` seconds: decisions by reason, latency
    percentiles, a per-minute series, per-principal usage against its daily quota
    (``daily_limits``: a principal's own grant quota; else the policy's), and the
    latest requests."""
    from atlasguard.runtime.settings import QuotaSettings, parse_daily

    now = time.time() if now is None else now
    start = now - window
    day_start = now - (now % 86400)  # quotas reset at 00:00 UTC
    minutes = max(1, int(window // 60))
    series = [{"allowed": 0, "refused": 0} for _ in range(minutes)]
    outcomes: Counter[str] = Counter(dict.fromkeys(OUTCOMES, 0))
    reasons: Counter[str] = Counter()
    latencies: list[float] = []
    users: dict[str, dict[str, Any]] = {}
    latest: list[dict[str, Any]] = []
    scanned = log.recent(TRAFFIC_SCAN)
    # A busy gateway writes more than the scan reads in the window: say how much it covers.
    oldest = scanned[-1][1].time if scanned else now
    covered = now - oldest if len(scanned) >= TRAFFIC_SCAN and oldest > start else None
    for idx, r in scanned:
        if r.time < min(start, day_start):
            break
        if not _served(r):
            continue
        user = users.setdefault(
            r.principal, {"principal": r.principal, "requests": 0, "refused": 0, "today": 0}
        )
        if r.time >= day_start and r.action == "infer" and r.decision == "allow":
            user["today"] += 1
        if r.time < start:
            continue
        bucket = status_of(r.decision, r.reason)
        outcomes[bucket] += 1
        if r.decision != "allow":
            reasons[r.reason or r.decision] += 1
        user["requests"] += 1
        user["refused"] += r.decision != "allow"
        slot = min(minutes - 1, int((r.time - start) // 60))
        series[slot]["allowed" if r.decision == "allow" else "refused"] += 1
        if r.action == "infer" and r.decision == "allow" and r.latency_ms is not None:
            latencies.append(r.latency_ms)
        if len(latest) < 25:
            latest.append(
                {
                    "idx": idx,
                    "time": _clock(r.time)[11:],
                    "principal": r.principal,
                    "action": r.action,
                    "model": r.model or "",
                    "outcome": bucket,
                    "reason": r.reason,
                    "latency_ms": r.latency_ms,
                }
            )
    quotas = policy.settings("quotas")
    default_daily = (
        quotas.daily if policy.enabled("quotas") and isinstance(quotas, QuotaSettings) else ""
    )
    principals = []
    for user in sorted(users.values(), key=lambda u: (-u["requests"], u["principal"])):
        if not user["requests"] and not user["today"]:
            continue
        text = daily_limits.get(user["principal"]) or default_daily
        limit = parse_daily(text) if text else None
        user["daily_limit"] = limit
        user["used"] = round(user["today"] / limit, 3) if limit else None
        principals.append(user)
    total = sum(outcomes.values())
    return {
        "window_minutes": minutes,
        "covered_seconds": None if covered is None else round(covered, 1),
        "scan": TRAFFIC_SCAN,
        "total": total,
        "outcomes": dict(outcomes),
        "reasons": dict(reasons.most_common()),
        "latency": {
            "p50": _percentile(latencies, 0.50),
            "p95": _percentile(latencies, 0.95),
            "p99": _percentile(latencies, 0.99),
            "n": len(latencies),
        },
        "series": series,
        "peak": max([1] + [s["allowed"] + s["refused"] for s in series]),
        "principals": principals[:50],
        "latest": latest,
        "as_of": _clock(now),
    }


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + "Z"


# -- alerts ----------------------------------------------------------------------------


def _alert(principal: str, last: float) -> dict[str, Any]:
    return {
        "principal": principal,
        "alarms": 0,
        "refused": 0,
        "models": set(),
        "last": last,
        "evidence": [],
        "refusals": [],
    }


def alerts_view(
    log: AuditLog,
    suspended: Iterable[tuple[str, str, str, float]],
    active_keys: dict[str, int],
    restrictions: dict[str, str],
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """Detector, query-monitor and drift alerts of the last day, by principal, with
    their evidence; ``suspended`` is (principal, model, why, until) of live suspensions."""
    now = time.time() if now is None else now
    start = now - ALERT_WINDOW
    by_principal: dict[str, dict[str, Any]] = {}
    drift: list[dict[str, str]] = []
    for idx, r in log.recent(TRAFFIC_SCAN):
        if r.time < start:
            break
        if r.action == "drift.alarm":
            if len(drift) < 20:
                drift.append(
                    {"idx": str(idx), "time": _clock(r.time), "model": r.model or "", **r.details}
                )
            continue
        alarm = r.action == "monitor.alarm"
        detected = r.action == "infer" and (
            r.reason in DETECTOR_REASONS or "detected" in r.details.get("notes", "")
        )
        if not (alarm or detected) or r.principal in ("-", "atlasguard"):
            continue
        entry = by_principal.get(r.principal)
        if entry is None:
            entry = by_principal[r.principal] = _alert(r.principal, r.time)
        entry["alarms" if alarm else "refused"] += 1
        if r.model:
            entry["models"].add(r.model)
        # the alarms say why; the refusals that follow only say "suspended"
        shown = entry["evidence"] if alarm else entry["refusals"]
        if len(shown) < (5 if alarm else 3):
            why = r.details.get("why") or r.details.get("notes") or r.reason
            shown.append({"idx": idx, "time": _clock(r.time), "why": why})
    live: dict[str, list[str]] = {}
    for principal, model, why, until in suspended:
        live.setdefault(principal, []).append(f"{model} until {_clock(until)} ({why})")
    for principal in live:
        if principal not in by_principal:
            by_principal[principal] = _alert(principal, now)
    alerts = []
    for entry in sorted(by_principal.values(), key=lambda e: -e["last"]):
        entry["models"] = ", ".join(sorted(entry["models"]))
        entry["last"] = _clock(entry["last"])
        entry["suspended"] = live.get(entry["principal"], [])
        entry["evidence"] = entry["evidence"] + entry.pop("refusals")
        entry["active_keys"] = active_keys.get(entry["principal"], 0)
        entry["restricted"] = restrictions.get(entry["principal"], "")
        alerts.append(entry)
    return {"alerts": alerts, "drift": drift}


# -- audit -----------------------------------------------------------------------------


def _matches(r: AuditRecord, principal: str, action: str, decision: str) -> bool:
    return (
        (not principal or r.principal == principal)
        and (not action or r.action == action or r.action.startswith(action + "."))
        and (not decision or r.decision == decision)
    )


def audit_page(
    log: AuditLog,
    *,
    principal: str = "",
    action: str = "",
    decision: str = "",
    before: int | None = None,
    size: int = 50,
    scan: int = 20_000,
) -> dict[str, Any]:
    """One page of the log, newest first, filtered; ``next`` continues below it."""
    found: list[dict[str, Any]] = []
    last = None
    scanned = 0
    for idx, r in log.newest_first(before=before, chunk=500):
        scanned += 1
        last = idx
        if _matches(r, principal, action, decision):
            found.append({"idx": idx, "time": _clock(r.time), **_fields(r)})
        if len(found) >= size or scanned >= scan:
            break
    more = last is not None and last > 0
    return {"records": found, "next": last if more else None, "scanned": scanned}


def _fields(r: AuditRecord) -> dict[str, Any]:
    return {
        "principal": r.principal,
        "action": r.action,
        "decision": r.decision,
        "reason": r.reason,
        "model": r.model or "",
        "latency_ms": r.latency_ms,
        "request_id": r.request_id or "",
        "details": dict(r.details),
    }


# -- registry --------------------------------------------------------------------------


def registry_view(gateway: Gateway, actor: str) -> dict[str, Any]:
    """Served and refused models, with their load-gate checks; the registry's
    objects, versions, aliases and grants (read as ``actor``, audited by the registry)."""
    from atlasguard.artifacts.settings import ScanSettings

    policy = gateway.policy
    scan = policy.settings("scan")
    fail_on = scan.fail_on if isinstance(scan, ScanSettings) else "-"
    signing_required = bool(getattr(policy.settings("signing"), "require", False))
    gate = {
        # the load gate scans whatever [controls.scan] says; the setting gives the threshold
        "scan": f"passed (fail_on = {fail_on})",
        "signature": "verified" if signing_required else "not required by the policy",
        "encrypted": policy.enabled("encryption"),
    }
    served = [
        {
            "name": s.name,
            "backend": s.spec.backend,
            "path": s.spec.path if s.spec.path.startswith("registry:") else Path(s.spec.path).name,
            "members": ", ".join(s.spec.members),
        }
        for s in gateway.models.values()
    ]
    refused = [{"name": n, "why": why} for n, why in sorted(gateway.refused.items())]
    identity = gateway.deployment.identity
    grants = identity.list_grants()
    objects = []
    registry = gateway.registry
    if registry is not None:
        for obj in registry.list(actor):
            versions = registry.versions(actor, obj.name)
            aliases = {v: k for k, v in obj.aliases.items()}
            objects.append(
                {
                    "name": obj.name,
                    "kind": obj.kind,
                    "owner": obj.owner,
                    "framework": obj.framework,
                    "versions": [
                        {
                            "number": v.number,
                            "alias": aliases.get(v.number, ""),
                            "digest": v.digest[:19],
                            "size": v.size,
                            "encrypted": v.encrypted,
                            "by": v.created_by,
                            "at": _clock(v.created_at),
                        }
                        for v in reversed(versions)
                    ],
                    "grants": [
                        f"{g.principal}: {g.role} on {g.models}"
                        for g in grants
                        if g.covers(obj.name)
                    ],
                }
            )
    model_grants = [
        {
            "principal": g.principal,
            "models": g.models,
            "role": g.role,
            "rate": g.rate,
            "quota": g.quota,
            "output": g.output,
        }
        for g in grants
        if any(g.covers(s["name"]) for s in served)
    ]
    return {
        "gate": gate,
        "served": served,
        "refused": refused,
        "objects": objects,
        "registry": registry is not None,
        "grants": model_grants,
    }
