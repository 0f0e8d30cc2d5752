from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from atlasguard.catalog.coverage import compute_coverage
from atlasguard.controls import Control, ControlSettings
from atlasguard.policy import Policy, load_policy_text


class _Settings(ControlSettings):
    level: int = Field(default=1)


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
    cov = compute_coverage(policy, controls=FAKE)
    by_id = {m.mitigation.id: m for m in cov.mitigations}
    assert len(by_id) == 20
    assert by_id["AML.M0011"].enabled and by_id["AML.M0016"].enabled
    assert by_id["AML.M0019"].implemented and not by_id["AML.M0019"].enabled
    assert by_id["AML.M0019"].status == "available"
    assert by_id["AML.M0000"].status == "not implemented"
    (ev,) = by_id["AML.M0011"].evidence
    assert ev.control == "alpha" and ev.setting == "controls.alpha.enabled = true"
    assert ev.location == "p.toml:2"
    assert cov.enabled_count == 2 and cov.implemented_count == 3


def test_technique_counts_follow_the_chosen_relation(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = _policy("[controls.beta]\nenabled = true\n", monkeypatch)
    atlas = compute_coverage(policy, controls=FAKE, relation="atlas")
    misp = compute_coverage(policy, controls=FAKE, relation="misp")
    assert atlas.covered_techniques == 11  # AML.M0019 in ATLAS 5.6.0
    assert misp.covered_techniques == 2  # AML.M0019 in the MISP galaxy
    assert all(t.count in (0, 1) for t in atlas.techniques)


def test_counts_add_up_over_mitigations(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = _policy(
        "[controls.alpha]\nenabled = true\n[controls.beta]\nenabled = true\n", monkeypatch
    )
    cov = compute_coverage(policy, controls=FAKE)
    edges = sum(len(m.techniques) for m in cov.mitigations if m.enabled)
    in_catalog = sum(t.count for t in cov.techniques)
    # every edge of an enabled mitigation to a technique in the catalog is counted once
    assert 0 < in_catalog <= edges


def test_nothing_declared_means_nothing_covered() -> None:
    cov = compute_coverage(Policy(), controls=())
    assert cov.enabled_count == cov.implemented_count == cov.covered_techniques == 0


def test_default_policy_enables_every_implemented_control() -> None:
    cov = compute_coverage(Policy.default())
    assert cov.enabled_count == cov.implemented_count
