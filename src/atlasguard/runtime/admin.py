"""Administration of identities — keys, grants, groups — audited like every other call.

The admin HTTP API and the command line (``atlasguard keys``, ``groups``) both
go through :class:`Admin`, so each change is decided and recorded the same way:
the record is written first and the change made only once it is durable (an
action the log cannot hold does not happen), and a change that cannot be made
is recorded as refused, never as allowed.

>>> from atlasguard.audit.log import AuditLog
>>> from atlasguard.db import connect
>>> from atlasguard.identity.store import IdentityStore
>>> from atlasguard.runtime.auditor import Auditor
>>> engine = connect("sqlite://")
>>> admin = Admin(IdentityStore.create(engine), Auditor(AuditLog.create(engine)))
>>> issued = admin.create_key("ops", "alice", models=["digits"])
>>> [(r.action, r.decision) for _, r in admin.auditor.log.records()]
[('admin.keys.create', 'allow')]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from atlasguard.errors import UsageError
from atlasguard.identity.store import ROLES, ApiKey, IdentityStore, IssuedKey, group_name, is_group
from atlasguard.runtime.auditor import Auditor, Outcome

if TYPE_CHECKING:
    from atlasguard.runtime.suspensions import SuspensionStore

__all__ = ["Admin"]


class Admin:
    """Keys, grants and group memberships, each change audited before it is made.

    ``actor`` is who asks: an admin principal over HTTP, ``local:<user>`` on the
    command line (which reaches the database directly).
    """

    def __init__(
        self,
        identity: IdentityStore,
        auditor: Auditor,
        *,
        suspensions: SuspensionStore | None = None,
    ) -> None:
        self.identity = identity
        self.auditor = auditor
        self.suspensions = suspensions

    def lift_suspension(self, actor: str, principal: str, model: str | None = None) -> int:
        """End the query monitor's suspension of ``principal`` (on ``model``, or all).

        Recorded first; refused (and recorded so) when nothing is suspended. Every
        worker lets the principal in again within seconds, with its history forgotten.
        """
        target = f"{principal} on {model}" if model else principal
        store = self.suspensions
        if store is None:
            raise UsageError("this deployment keeps no suspensions")
        current = [s for s in store.active(now=time.time()) if s.principal == principal]
        if model is not None:
            current = [s for s in current if s.model == model]
        if not current:
            raise self._refuse(
                actor,
                "monitor.lift",
                target,
                UsageError(f"{target} is not suspended (atlasguard monitor list shows who is)"),
            )
        self._allow(actor, "monitor.lift", target)
        return store.lift(principal, model)

    def _allow(self, actor: str, verb: str, target: str) -> None:
        outcome = Outcome(action=f"admin.{verb}", principal=actor, details={"target": target})
        self.auditor.record(outcome)

    def _refuse(self, actor: str, verb: str, target: str, error: UsageError) -> UsageError:
        outcome = Outcome(action=f"admin.{verb}", principal=actor, details={"target": target})
        outcome.refuse("invalid-input")
        self.auditor.record(outcome)
        return error

    def create_key(
        self,
        actor: str,
        principal: str,
        *,
        models: Sequence[str] = (),
        role: str = "user",
        rate: str = "",
        quota: str = "",
        admin: bool = False,
    ) -> IssuedKey | None:
        """Grant ``role`` on ``models`` and issue a key; for a group, only the grants.

        Returns the new key (its secret shown once), or ``None`` for a group.
        """
        target = f"{principal} models={','.join(models)} role={role} admin={admin}"
        try:
            if role not in ROLES:
                raise UsageError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
            if is_group(principal):
                principal = group_name(principal)
                if admin:
                    raise UsageError(f"{principal} is a group: groups are never admins")
                if not models:
                    raise UsageError(
                        f"{principal} is a group: give models to grant it; it holds no key"
                    )
            held = {(g.models, g.role) for g in self.identity.grants_of(principal)}
            for pattern in models:
                if (pattern, role) in held:
                    raise UsageError(f"{principal} already holds {role} on {pattern}")
        except UsageError as exc:
            raise self._refuse(actor, "keys.create", target, exc) from None
        self._allow(actor, "keys.create", target)
        for pattern in models:
            self.identity.grant(principal, pattern, role, rate=rate, quota=quota)
        if is_group(principal):
            return None
        return self.identity.create_key(principal, admin=admin)

    def revoke_key(self, actor: str, key_id: str) -> None:
        """Revoke an active key; a key id that names none is refused (and recorded so)."""
        if not any(k.key_id == key_id and k.active for k in self.identity.list_keys()):
            raise self._refuse(
                actor, "keys.revoke", key_id, UsageError(f"no active key with id {key_id!r}")
            )
        self._allow(actor, "keys.revoke", key_id)
        self.identity.revoke_key(key_id)

    def revoke_keys_of(self, actor: str, principal: str) -> list[str]:
        """Revoke every active key of ``principal``; returns their ids.

        Refused (and recorded so) when it holds none. Each key's revocation is
        its own record, as with :meth:`revoke_key`.
        """
        active = [k.key_id for k in self.identity.list_keys(principal) if k.active]
        if not active:
            raise self._refuse(
                actor,
                "keys.revoke",
                principal,
                UsageError(f"{principal} holds no active key"),
            )
        for key_id in active:
            self._allow(actor, "keys.revoke", key_id)
            self.identity.revoke_key(key_id)
        return active

    def restrict(
        self,
        actor: str,
        principal: str,
        *,
        rate: str | None = None,
        quota: str | None = None,
        output: str | None = None,
    ) -> int:
        """Tighten ``principal``'s own grants: their rate, daily quota or output policy.

        ``rate`` is like ``"10/minute"``, ``quota`` like ``"100/day"``, ``output``
        an output policy (``"label"``); ``None`` leaves a field unchanged. Every
        worker applies the change within the identity store's refresh interval.
        Refused (and recorded so) for a malformed value or a principal with no
        grant of its own.
        """
        from atlasguard.runtime.settings import output_steps, parse_daily, parse_rate

        parts = [f"{k}={v}" for k, v in (("rate", rate), ("quota", quota), ("output", output)) if v]
        target = f"{principal} {' '.join(parts)}".strip()
        try:
            if not parts:
                raise UsageError("say what to restrict: a rate, a daily quota or an output policy")
            if rate:
                parse_rate(rate)
            if quota:
                parse_daily(quota)
            if output:
                output_steps(output)
            if not any(g.principal == principal for g in self.identity.grants_of(principal)):
                raise UsageError(f"{principal} holds no grant of its own to restrict")
        except (UsageError, ValueError) as exc:
            error = exc if isinstance(exc, UsageError) else UsageError(str(exc))
            raise self._refuse(actor, "grants.restrict", target, error) from None
        self._allow(actor, "grants.restrict", target)
        return self.identity.restrict(principal, rate=rate, quota=quota, output=output)

    def list_keys(self, actor: str, principal: str | None = None) -> list[ApiKey]:
        """Key ids (never secrets) and their state; the listing itself is recorded."""
        self._allow(actor, "keys.list", principal or "*")
        return self.identity.list_keys(principal)

    def add_member(self, actor: str, group: str, member: str) -> None:
        name = group_name(group)
        target = f"{name} {member}"
        if is_group(member):
            error = UsageError(
                f"groups do not nest: {member} cannot be a member of {name}; add its members"
            )
            raise self._refuse(actor, "groups.add", target, error)
        if member in self.identity.members(name):
            error = UsageError(f"{member} is already a member of {name}")
            raise self._refuse(actor, "groups.add", target, error)
        self._allow(actor, "groups.add", target)
        self.identity.add_member(name, member)

    def remove_member(self, actor: str, group: str, member: str) -> None:
        name = group_name(group)
        if member not in self.identity.members(name):
            raise self._refuse(
                actor,
                "groups.remove",
                f"{name} {member}",
                UsageError(f"{member} is not a member of {name}"),
            )
        self._allow(actor, "groups.remove", f"{name} {member}")
        self.identity.remove_member(name, member)
