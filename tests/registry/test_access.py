from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


# -- delegation: a grant on a pattern is a grant on every name it can match ----------


@pytest.mark.parametrize(
    ("granted", "requested", "expected"),
    [
        ("team-*", "team-a", True),
        ("team-*", "team-a*", True),
        ("team-*", "team-*", True),
        ("*", "anything-[ab]?", True),
        ("team-[!p]*", "team-a", True),
        ("team-[!p]*", "team-*", False),  # would reach team-prod
        ("team-?", "team-*", False),
        ("team-?", "team-??", False),
        ("team-a*", "team-*", False),
        ("team-*", "team*", False),
        ("team-*", "[t]eam-x", False),
        ("t*-x", "t*-x", True),
        ("t*-x", "t*-y-x", False),
    ],
)
def test_a_pattern_is_covered_only_when_certain(
    granted: str, requested: str, expected: bool
) -> None:
    from atlasguard.registry.access import covers

    assert covers(granted, requested) is expected


@given(
    st.text(alphabet="ab*?[]!-", min_size=1, max_size=6),
    st.text(alphabet="ab*?[]!-", min_size=1, max_size=6),
    st.text(alphabet="ab-", max_size=6),
)
def test_covers_never_says_yes_wrongly(granted: str, requested: str, name: str) -> None:
    """Soundness: whatever covers() accepts, every name the request matches is granted."""
    import fnmatch

    from atlasguard.registry.access import covers

    if covers(granted, requested) and fnmatch.fnmatchcase(name, requested):
        assert fnmatch.fnmatchcase(name, granted), (granted, requested, name)


def test_a_manager_cannot_widen_its_own_grant_by_granting_a_pattern() -> None:
    manager = Subject(name="mia", grants=(Grant("mia", "team-[!p]*", "manager"),))
    assert not decide(manager, "grant", Target("team-*")).allowed
    assert not decide(
        Subject("q", grants=(Grant("q", "team-?", "manager"),)), "grant", Target("team-*")
    ).allowed
    assert decide(manager, "grant", Target("team-a")).allowed
    assert not decide(manager, "grant", Target("team-prod")).allowed
