from __future__ import annotations

import itertools

import pytest

from atlasguard.identity.store import Grant
from atlasguard.registry.access import (
    ACTIONS,
    ROLE_ACTIONS,
    AllOf,
    AnyOf,
    HasRole,
    IsAdmin,
    IsOwner,
    RoleAllows,
    Subject,
    Target,
    decide,
)

ANN = Subject("ann", grants=(Grant("ann", "team-*", "editor"),))
OBJ = Target("team-a", owner="bob")


@pytest.mark.parametrize("action", ACTIONS)
def test_empty_policies_deny(action: str) -> None:
    for empty in (AllOf(()), AnyOf(())):
        d = decide(Subject("root", is_admin=True), action, OBJ, policy=empty)  # type: ignore[arg-type]
        assert (d.allowed, d.reason) == (False, "empty-policy")


def test_nothing_is_allowed_without_a_grant() -> None:
    nobody = Subject("eve")
    assert not any(decide(nobody, a, OBJ).allowed for a in ACTIONS)


def test_roles_nest() -> None:
    order = ["user", "reader", "editor", "manager"]
    for lower, higher in itertools.pairwise(order):
        assert ROLE_ACTIONS[lower] < ROLE_ACTIONS[higher]
    assert ROLE_ACTIONS["admin"] == frozenset(ACTIONS)
    assert "pull" not in ROLE_ACTIONS["user"] and "query" in ROLE_ACTIONS["user"]


def test_patterns_scope_grants() -> None:
    assert decide(ANN, "push", OBJ).reason == "role:editor:team-*"
    assert not decide(ANN, "pull", Target("prod-a", owner="bob")).allowed


def test_owner_manages_but_does_not_create() -> None:
    mine = Target("x", owner="ann")
    assert IsOwner().evaluate(ANN, "promote", mine).allowed
    assert not IsOwner().evaluate(ANN, "create", mine).allowed
    assert not IsOwner().evaluate(ANN, "pull", OBJ).allowed


def test_composition_narrows() -> None:
    # Only managers may touch prod-*; elsewhere the usual role rules apply.
    policy = AnyOf((IsAdmin(), AllOf((RoleAllows(), HasRole("manager", "prod-*")))))
    editor = Subject("ed", grants=(Grant("ed", "*", "editor"),))
    manager = Subject("mo", grants=(Grant("mo", "prod-*", "manager"),))
    assert decide(editor, "push", Target("dev-a"), policy=policy).allowed
    d = decide(editor, "push", Target("prod-a"), policy=policy)
    assert (d.allowed, d.reason) == (False, "needs-manager-on-prod-*")
    assert decide(manager, "push", Target("prod-a"), policy=policy).allowed


def test_unknown_action_is_denied() -> None:
    d = decide(Subject("root", is_admin=True), "delete-everything", OBJ)  # type: ignore[arg-type]
    assert not d.allowed
