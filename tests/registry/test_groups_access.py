"""Group grants in the registry: memberships in the store, and groups a token asserts."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlasguard.registry.access import AccessDeniedError
from atlasguard.registry.service import Registry


def _push_digits(registry: Registry, root: Path) -> None:
    model = root / "digits.onnx"
    model.write_bytes(b"\x08\x07" + b"0" * 64)
    registry.push("ops", "digits", model, "model")


def test_a_group_reader_may_pull_and_a_non_member_may_not(
    registry: Registry, tmp_path: Path
) -> None:
    _push_digits(registry, tmp_path)
    registry.grant("ops", "group:ml", "digits*", "reader")
    registry.identity.add_member("ml", "ann")
    registry.identity.ensure_principal("bob")

    out = registry.pull("ann", "digits@1", tmp_path / "ann.onnx")
    assert out.read_bytes().startswith(b"\x08\x07")
    assert [o.name for o in registry.list("ann")] == ["digits"]
    with pytest.raises(AccessDeniedError):
        registry.pull("bob", "digits@1", tmp_path / "bob.onnx")
    with pytest.raises(AccessDeniedError):  # reader: no push through the group either
        registry.push("ann", "digits", tmp_path / "digits.onnx", "model")
    assert not (tmp_path / "bob.onnx").exists()

    # The registry reads grants fresh: leaving the group stops the next pull.
    registry.identity.remove_member("ml", "ann")
    with pytest.raises(AccessDeniedError):
        registry.pull("ann", "digits@1", tmp_path / "again.onnx")
    denied = [r for _, r in registry.audit.records() if r.decision == "deny"]
    assert {r.principal for r in denied if r.action == "registry.pull"} == {"ann", "bob"}


def test_groups_a_token_asserts_reach_the_registry_only_through_the_view(
    registry: Registry, tmp_path: Path
) -> None:
    _push_digits(registry, tmp_path)
    registry.grant("ops", "group:ml", "digits*", "reader")
    # jwt:carol exists nowhere in the store: only her token says she is in group:ml.
    with pytest.raises(AccessDeniedError):
        registry.pull("jwt:carol", "digits@1", tmp_path / "no.onnx")
    member = registry.acting_with_groups(("group:ml",))
    out = member.pull("jwt:carol", "digits@1", tmp_path / "carol.onnx")
    assert out.read_bytes().startswith(b"\x08\x07")
    with pytest.raises(AccessDeniedError):  # reader through the token group: no push
        member.push("jwt:carol", "digits", tmp_path / "digits.onnx", "model")
    outsider = registry.acting_with_groups(("group:sales",))
    with pytest.raises(AccessDeniedError):
        outsider.pull("jwt:carol", "digits@1", tmp_path / "no2.onnx")
    # The view does not leak into the registry it was made from.
    with pytest.raises(AccessDeniedError):
        registry.pull("jwt:carol", "digits@1", tmp_path / "no3.onnx")
