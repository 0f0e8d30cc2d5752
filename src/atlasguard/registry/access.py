"""Who may do what in the registry: roles, composable policies, one decision function.

Deny by default. A principal holds roles through grants (the identity store's
``grants`` table: a role on an ``fnmatch`` pattern of object names, ``*`` for
everything). Each role allows a fixed set of actions; the creator of an object
manages it; an admin principal may do everything. Policies compose with
:class:`AllOf` and :class:`AnyOf`, and an empty policy denies.

>>> s = Subject(name="ann", grants=(Grant("ann", "digits*", "reader"),))
>>> decide(s, "pull", Target(name="digits", owner="bob")).allowed
True
>>> decide(s, "push", Target(name="digits", owner="bob")).reason
'no-grant-for-push'
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from atlasguard.errors import VerificationError
from atlasguard.identity.store import ROLES, Grant

__all__ = [
    "ACTIONS",
    "DEFAULT_POLICY",
    "ROLE_ACTIONS",
    "AccessDeniedError",
    "Action",
    "AllOf",
    "AnyOf",
    "Decision",
    "HasRole",
    "IsAdmin",
    "IsOwner",
    "RoleAllows",
    "Rule",
    "Subject",
    "Target",
    "covers",
    "decide",
]

# "create" is pushing the first version of a new object; "push" a new version of one.
Action = Literal["query", "list", "show", "pull", "push", "create", "grant", "revoke", "promote"]
ACTIONS: tuple[Action, ...] = (
    "query",
    "list",
    "show",
    "pull",
    "push",
    "create",
    "grant",
    "revoke",
    "promote",
)

_READ: frozenset[Action] = frozenset({"query", "list", "show", "pull"})
_WRITE: frozenset[Action] = _READ | {"push", "create"}
_MANAGE: frozenset[Action] = _WRITE | {"grant", "revoke", "promote"}

ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    "user": frozenset({"query"}),  # the gateway may serve it; the bytes never leave
    "reader": _READ,
    "editor": _WRITE,
    "manager": _MANAGE,
    "admin": frozenset(ACTIONS),
}
# What an owner may do on its own object: a manager's rights, nothing more.
OWNER_ACTIONS: frozenset[Action] = _MANAGE - {"create"}


class AccessDeniedError(VerificationError, PermissionError):
    """The principal may not do this (the message never says whether the object exists)."""


@dataclass(frozen=True, slots=True)
class Subject:
    """Who asks: a principal, whether it is an admin, and its grants."""

    name: str
    is_admin: bool = False
    grants: tuple[Grant, ...] = ()


@dataclass(frozen=True, slots=True)
class Target:
    """What is asked about: an object name and its owner (``None`` for a new object).

    For ``grant`` and ``revoke`` the name may be an ``fnmatch`` pattern: it then
    stands for every name it can match, and a grant covers it only when it
    covers all of them (:func:`covers`).
    """

    name: str
    owner: str | None = None

    def covered_by(self, granted: str) -> bool:
        """Whether a grant on ``granted`` reaches everything this target names."""
        return covers(granted, self.name)


_META = frozenset("*?[")


def covers(granted: str, requested: str) -> bool:
    """Whether every name ``requested`` can match is matched by ``granted`` — conservatively.

    A plain name is covered when ``granted`` matches it. A pattern is covered
    only when that is certain: ``granted`` is ``*``, the same pattern, or a
    literal prefix followed by ``*`` that the pattern itself starts with. Any
    other pair is refused, even where the sets happen to nest (deciding it in
    general is not worth the risk of getting it wrong).

    >>> covers("team-*", "team-a"), covers("team-*", "team-a*"), covers("team-?", "team-*")
    (True, True, False)
    >>> covers("team-[!p]*", "team-*")
    False
    """
    if not _META.intersection(requested):
        return fnmatch.fnmatchcase(requested, granted)
    if granted in ("*", requested):
        return True
    prefix = granted[:-1]
    return granted.endswith("*") and not _META.intersection(prefix) and requested.startswith(prefix)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


class Rule(Protocol):
    """A policy: one decision for one (subject, action, target)."""

    def evaluate(self, subject: Subject, action: Action, target: Target) -> Decision: ...


@dataclass(frozen=True, slots=True)
class IsAdmin:
    """Allows an admin principal everything."""

    def evaluate(self, subject: Subject, action: Action, target: Target) -> Decision:
        if subject.is_admin:
            return Decision(True, "admin")
        return Decision(False, "not-admin")


@dataclass(frozen=True, slots=True)
class IsOwner:
    """Allows the owner (creator) of an object a manager's actions on it."""

    def evaluate(self, subject: Subject, action: Action, target: Target) -> Decision:
        if target.owner is not None and target.owner == subject.name:
            if action in OWNER_ACTIONS:
                return Decision(True, "owner")
            return Decision(False, f"owner-may-not-{action}")
        return Decision(False, "not-owner")


@dataclass(frozen=True, slots=True)
class RoleAllows:
    """Allows when a grant covering the object holds a role that allows the action."""

    def evaluate(self, subject: Subject, action: Action, target: Target) -> Decision:
        covering = [g for g in subject.grants if target.covered_by(g.models)]
        for g in covering:
            if action in ROLE_ACTIONS.get(g.role, frozenset()):
                return Decision(True, f"role:{g.role}:{g.models}")
        return Decision(False, f"no-grant-for-{action}")


@dataclass(frozen=True, slots=True)
class HasRole:
    """Holds when a grant of at least ``role`` covers the object and the name matches ``pattern``.

    A narrowing condition for :class:`AllOf`: ``AllOf((RoleAllows(), HasRole("manager",
    "prod-*")))`` lets only managers touch ``prod-*`` objects.
    """

    role: str
    pattern: str = "*"

    def evaluate(self, subject: Subject, action: Action, target: Target) -> Decision:
        outside = not _META.intersection(target.name) and not fnmatch.fnmatchcase(
            target.name, self.pattern
        )
        if outside:  # a pattern may reach into self.pattern: the condition applies
            return Decision(True, f"outside:{self.pattern}")
        floor = ROLES.index(self.role) if self.role in ROLES else len(ROLES)
        for g in subject.grants:
            if g.role in ROLES and ROLES.index(g.role) >= floor and target.covered_by(g.models):
                return Decision(True, f"role:{g.role}:{g.models}")
        return Decision(False, f"needs-{self.role}-on-{self.pattern}")


@dataclass(frozen=True, slots=True)
class AllOf:
    """Allows when every rule allows; an empty AllOf denies."""

    rules: Sequence[Rule] = ()

    def evaluate(self, subject: Subject, action: Action, target: Target) -> Decision:
        if not self.rules:
            return Decision(False, "empty-policy")
        reasons = []
        for rule in self.rules:
            d = rule.evaluate(subject, action, target)
            if not d.allowed:
                return d
            reasons.append(d.reason)
        return Decision(True, "+".join(reasons))


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Allows when some rule allows; an empty AnyOf denies."""

    rules: Sequence[Rule] = ()

    def evaluate(self, subject: Subject, action: Action, target: Target) -> Decision:
        if not self.rules:
            return Decision(False, "empty-policy")
        last = Decision(False, "empty-policy")
        for rule in self.rules:
            last = rule.evaluate(subject, action, target)
            if last.allowed:
                return last
        return last


DEFAULT_POLICY: Rule = AnyOf((IsAdmin(), IsOwner(), RoleAllows()))


def decide(
    subject: Subject, action: Action, target: Target, *, policy: Rule = DEFAULT_POLICY
) -> Decision:
    """The decision of ``policy`` (by default: admin, owner, or a role's grant)."""
    if action not in ACTIONS:
        return Decision(False, f"unknown-action:{action}")
    return policy.evaluate(subject, action, target)
