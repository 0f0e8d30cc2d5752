from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from atlasguard.catalog.coverage import compute_coverage
from atlasguard.controls import Control, ControlSettings
from atlasguard.policy import Policy, load_policy_text
from atlasguard.runtime.plan import Part, plan


class _Settings(ControlSettings):
    level: int = Field(default=1)


def _parts(policy: Policy) -> tuple[Part, ...]:
    """What a deployment of the fake controls runs: each enabled control, one part."""
    return tuple(
        Part(
            c.key,
            c.mitigates,
            c.title,
            f"controls.{c.key}.enabled",
            policy.where(f"controls.{c.key}.enabled"),
        )
        for c in FAKE
        if policy.enabled(c.key)
    )


FAKE = (
    Control(
        key="alpha",
        title="Alpha",
        mitigates=frozenset({"AML.M0011", "AML.M0016"}),
        summary="s",
        enable="e",
        settings=_Settings,
    ),
    Control(key="beta", title="Beta", mitigates=frozenset({"AML.M0019"}), summary="s", enable="e"),
)


def _policy(text: str, monkeypatch: pytest.MonkeyPatch) -> Policy:
    import atlasguard.policy as policy_mod

    monkeypatch.setattr(policy_mod, "control_by_key", lambda: {c.key: c for c in FAKE})
    return load_policy_text(text, source="p.toml", path=Path("p.toml"))


def test_enabled_needs_a_control_and_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = _policy(
        "[controls.alpha]\nenabled = true\n\n[controls.beta]\nenabled = false\n", monkeypatch
    )
    cov = compute_coverage(policy, controls=FAKE, parts=_parts(policy))
    by_id = {m.mitigation.id: m for m in cov.mitigations}
    assert len(by_id) == 20
    assert by_id["AML.M0011"].enabled and by_id["AML.M0016"].enabled
    assert by_id["AML.M0019"].implemented and not by_id["AML.M0019"].enabled
    assert by_id["AML.M0019"].status == "available"
    assert by_id["AML.M0000"].status == "not implemented"
    (ev,) = by_id["AML.M0011"].evidence
    assert ev.control == "alpha" and ev.setting == "controls.alpha.enabled"
    assert ev.location == "p.toml:2"
    assert cov.enabled_count == 2 and cov.implemented_count == 3


def test_technique_counts_follow_the_chosen_relation(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = _policy("[controls.beta]\nenabled = true\n", monkeypatch)
    atlas = compute_coverage(policy, controls=FAKE, relation="atlas", parts=_parts(policy))
    misp = compute_coverage(policy, controls=FAKE, relation="misp", parts=_parts(policy))
    assert atlas.covered_techniques == 11  # AML.M0019 in ATLAS 5.6.0
    assert misp.covered_techniques == 2  # AML.M0019 in the MISP galaxy
    assert all(t.count in (0, 1) for t in atlas.techniques)


def test_counts_add_up_over_mitigations(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = _policy(
        "[controls.alpha]\nenabled = true\n[controls.beta]\nenabled = true\n", monkeypatch
    )
    cov = compute_coverage(policy, controls=FAKE, parts=_parts(policy))
    edges = sum(len(m.techniques) for m in cov.mitigations if m.enabled)
    in_catalog = sum(t.count for t in cov.techniques)
    # every edge of an enabled mitigation to a technique in the catalog is counted once
    assert 0 < in_catalog <= edges


def test_nothing_declared_means_nothing_covered() -> None:
    cov = compute_coverage(Policy(), controls=())
    assert cov.enabled_count == cov.implemented_count == cov.covered_techniques == 0


def test_coverage_counts_only_what_the_deployment_runs(tmp_path: Path) -> None:
    """Flags no code reads claim nothing; a part claims its mitigations with its setting."""
    policy = Policy.default()  # every control's table on, no model declared
    cov = compute_coverage(policy)
    enabled = {m.mitigation.id for m in cov.mitigations if m.enabled}
    assert enabled == {p for part in plan(policy) for p in part.mitigates}
    # The encryption table is read by nothing a deployment runs: M0012 stays "available".
    by_id = {m.mitigation.id: m for m in cov.mitigations}
    assert by_id["AML.M0012"].status == "available"
    # Encrypting the registry at rest is what makes M0012 count.
    encrypted = load_policy_text(
        "[controls.registry]\nenabled = true\nencrypt = true\n", path=tmp_path / "p.toml"
    )
    by_id = {m.mitigation.id: m for m in compute_coverage(encrypted).mitigations}
    (evidence,) = by_id["AML.M0012"].evidence
    assert (evidence.control, evidence.setting) == (
        "registry-encryption",
        "controls.registry.encrypt",
    )
    assert evidence.location.endswith("p.toml:3")
    # Serving a model turns on the load gate and server-side serving.
    served = load_policy_text(
        "[controls.access]\nenabled = true\n[models.m]\npath = 'm.onnx'\n",
        path=tmp_path / "p.toml",
    )
    assert {p.name for p in plan(served)} == {"access", "load-gate", "serving"}
