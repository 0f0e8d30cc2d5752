"""Coverage: which ATLAS mitigations a deployment's policy really enables.

Computed from what runs, never from a hand-kept list or a flag: a mitigation
is *implemented* when a control declared beside its code names it
(:mod:`atlasguard.controls`), and *enabled* only through a part the deployment
builds for the policy — a guard, the load gate, the registry
(:func:`atlasguard.runtime.plan.plan`), each shown by the tests to act on its
setting. The evidence names the part, the setting, its file and line.
For each technique: the enabled mitigations that cover it, according to the
chosen relation (ATLAS or MISP).

>>> from atlasguard.catalog.coverage import compute_coverage
>>> from atlasguard.policy import Policy
>>> cov = compute_coverage(Policy.default())
>>> len(cov.mitigations)
20
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from atlasguard.catalog.atlas import Catalog, RelationSource, load_catalog
from atlasguard.catalog.model import Mitigation, Technique
from atlasguard.controls import Control, implemented_controls
from atlasguard.policy import Policy

if TYPE_CHECKING:
    from atlasguard.runtime.plan import Part

__all__ = ["Coverage", "Evidence", "MitigationCoverage", "TechniqueCoverage", "compute_coverage"]


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why a mitigation counts as enabled: which part runs, what it does, which setting, where."""

    control: str
    title: str
    setting: str
    location: str


@dataclass(frozen=True, slots=True)
class MitigationCoverage:
    mitigation: Mitigation
    implemented: bool
    enabled: bool
    controls: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    techniques: tuple[str, ...]

    @property
    def status(self) -> str:
        if self.enabled:
            return "enabled"
        return "available" if self.implemented else "not implemented"


@dataclass(frozen=True, slots=True)
class TechniqueCoverage:
    technique: Technique
    tactics: tuple[str, ...]
    mitigations: tuple[str, ...]  # enabled seed mitigations that cover it
    available: tuple[str, ...]  # implemented ones, enabled or not

    @property
    def count(self) -> int:
        return len(self.mitigations)


@dataclass(frozen=True, slots=True)
class Coverage:
    atlas_version: str
    relation: str
    policy: str
    mitigations: tuple[MitigationCoverage, ...]
    techniques: tuple[TechniqueCoverage, ...]

    @property
    def enabled_count(self) -> int:
        return sum(m.enabled for m in self.mitigations)

    @property
    def implemented_count(self) -> int:
        return sum(m.implemented for m in self.mitigations)

    @property
    def covered_techniques(self) -> int:
        return sum(t.count > 0 for t in self.techniques)


def compute_coverage(
    policy: Policy,
    *,
    relation: RelationSource = "atlas",
    catalog: Catalog | None = None,
    controls: Sequence[Control] | None = None,
    parts: Sequence[Part] | None = None,
) -> Coverage:
    """Coverage of the twenty seed mitigations and of every technique under ``policy``.

    ``parts`` are what the deployment runs (default: :func:`~atlasguard.runtime.plan.plan`).
    """
    catalog = catalog or load_catalog()
    controls = implemented_controls() if controls is None else controls
    if parts is None:
        from atlasguard.runtime.plan import plan

        parts = plan(policy)
    rel = catalog.relation(relation)

    mitigations: list[MitigationCoverage] = []
    for mitigation in catalog.seed_mitigations():
        mine = [c for c in controls if mitigation.id in c.mitigates]
        evidence = tuple(
            Evidence(control=p.name, title=p.summary, setting=p.setting, location=p.location)
            for p in parts
            if mitigation.id in p.mitigates
        )
        mitigations.append(
            MitigationCoverage(
                mitigation=mitigation,
                implemented=bool(mine),
                enabled=bool(evidence),
                controls=tuple(c.key for c in mine),
                evidence=evidence,
                techniques=tuple(e.technique for e in rel.techniques_of(mitigation.id)),
            )
        )

    enabled = {m.mitigation.id for m in mitigations if m.enabled}
    implemented = {m.mitigation.id for m in mitigations if m.implemented}
    techniques = []
    for technique in catalog.techniques.values():
        covering = rel.mitigations_of(technique.id)
        techniques.append(
            TechniqueCoverage(
                technique=technique,
                tactics=catalog.tactics_of(technique.id),
                mitigations=tuple(m for m in covering if m in enabled),
                available=tuple(m for m in covering if m in implemented),
            )
        )
    return Coverage(
        atlas_version=catalog.version,
        relation=rel.source,
        policy=policy.label,
        mitigations=tuple(mitigations),
        techniques=tuple(techniques),
    )
