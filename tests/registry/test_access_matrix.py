"""Every role x every action x own/other object, against the real Registry.

``A`` = allowed, ``D`` = denied. "own" is an object the principal created (its
owner); "other" one created by someone else. ``create`` pushes a new object:
it has no owner yet, so both columns expect the same. ``none`` holds no grant.
Every role except ``none`` is granted on ``*``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from atlasguard.audit.records import AuditRecord
from atlasguard.registry.access import AccessDeniedError
from atlasguard.registry.service import Registry
from tests.dbfixtures import database
from tests.registry.conftest import make_registry

ACTIONS = ("push", "pull", "list", "show", "grant", "revoke", "promote", "create")
# fmt: off
EXPECTED: dict[tuple[str, str], str] = {
    #                   push pull list show grant revoke promote create
    ("none",    "other"): "D    D    D    D    D     D      D       D",
    ("user",    "other"): "D    D    D    D    D     D      D       D",
    ("reader",  "other"): "D    A    A    A    D     D      D       D",
    ("editor",  "other"): "A    A    A    A    D     D      D       A",
    ("manager", "other"): "A    A    A    A    A     A      A       A",
    ("admin",   "other"): "A    A    A    A    A     A      A       A",
    ("none",    "own"):   "A    A    A    A    A     A      A       D",
    ("user",    "own"):   "A    A    A    A    A     A      A       D",
    ("reader",  "own"):   "A    A    A    A    A     A      A       D",
    ("editor",  "own"):   "A    A    A    A    A     A      A       A",
    ("manager", "own"):   "A    A    A    A    A     A      A       A",
    ("admin",   "own"):   "A    A    A    A    A     A      A       A",
}
# fmt: on
ROLES = ("none", "user", "reader", "editor", "manager", "admin")
CASES = [
    (role, side, action, EXPECTED[(role, side)].split()[i] == "A")
    for role, side in itertools.product(ROLES, ("other", "own"))
    for i, action in enumerate(ACTIONS)
]


def test_table_is_complete() -> None:
    assert all(len(v.split()) == len(ACTIONS) for v in EXPECTED.values())
    assert len(CASES) == len(ROLES) * 2 * len(ACTIONS)


class World:
    """One registry: the other object, and for each role a principal and its own object."""

    def __init__(self, registry: Registry, root: Path) -> None:
        self.reg = registry
        self.root = root
        self.counter = itertools.count()
        registry.identity.ensure_principal("boss", admin=True)
        registry.push("boss", "other-obj", self.file(), "model")
        for role in ROLES:
            p = f"p-{role}"
            # Let p create its own object, then leave it only its role on "*".
            registry.identity.grant(p, f"own-{role}", "editor")
            registry.push(p, f"own-{role}", self.file(), "model")
            registry.identity.revoke_grant(p, f"own-{role}")
            if role != "none":
                registry.identity.grant(p, "*", role)

    def file(self) -> Path:
        path = self.root / "src" / f"w{next(self.counter)}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(f"weights {path.name}".encode())
        return path

    def run(self, role: str, side: str, action: str) -> bool:
        p = f"p-{role}"
        name = "other-obj" if side == "other" else f"own-{role}"
        act: dict[str, Callable[[], object]] = {
            "push": lambda: self.reg.push(p, name, self.file(), "model"),
            "pull": lambda: self.reg.pull(p, name, self.root / "out" / f"{next(self.counter)}"),
            "show": lambda: self.reg.show(p, name),
            "grant": lambda: self.reg.grant(p, f"g-{role}-{side}", name, "reader"),
            "revoke": lambda: self.reg.revoke(p, f"g-{role}-{side}", name, "reader"),
            "promote": lambda: self.reg.promote(p, name, "staging"),
            "create": lambda: self.reg.push(
                p, f"new-{role}-{side}-{next(self.counter)}", self.file(), "dataset"
            ),
        }
        if action == "list":
            return name in {o.name for o in self.reg.list(p)}
        try:
            act[action]()
        except AccessDeniedError:
            return False
        return True


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    root = tmp_path_factory.mktemp(f"matrix-{request.param}")
    with database(request.param, root) as engine:
        reg = make_registry(engine, root)
        yield World(reg, root)
        reg.audit.close()


@pytest.mark.parametrize(("role", "side", "action", "allowed"), CASES)
def test_matrix(world: World, role: str, side: str, action: str, allowed: bool) -> None:
    before = world.reg.audit.size()
    assert world.run(role, side, action) is allowed
    # The decision is in the audit log, refused or not (list records the listing).
    new: list[AuditRecord] = [r for i, r in world.reg.audit.records() if i >= before]
    mine = [r for r in new if r.principal == f"p-{role}"]
    assert mine, "no audit record"
    verb = "push" if action == "create" and not allowed else action
    if action != "list":
        assert mine[0].action in {f"registry.{verb}", "registry.create", "registry.push"}
        assert mine[0].decision == ("allow" if allowed else "deny")
