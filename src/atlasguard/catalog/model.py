"""The ATLAS objects atlasguard works with, as frozen values.

>>> from atlasguard.catalog import load_catalog
>>> cat = load_catalog()
>>> cat.mitigation("AML.M0011").name
'Restrict Library Loading'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "CaseStudy",
    "Mitigates",
    "Mitigation",
    "Relation",
    "Tactic",
    "Technique",
]


@dataclass(frozen=True, slots=True)
class Tactic:
    """An ATLAS tactic (the adversary's goal), e.g. ``AML.TA0000`` AI Model Access."""

    id: str
    name: str
    description: str

    @property
    def shortname(self) -> str:
        """The name the ATLAS Navigator uses for the tactic column (``ai-model-access``)."""
        return self.name.lower().replace(" ", "-")


@dataclass(frozen=True, slots=True)
class Technique:
    """An ATLAS technique or sub-technique.

    ``tactics`` is empty for a sub-technique in ATLAS.yaml; :attr:`Catalog.tactics_of`
    inherits them from the parent. ``misp_uuid`` is ``None`` for techniques the
    MISP galaxy does not (yet) list.
    """

    id: str
    name: str
    description: str
    tactics: tuple[str, ...]
    parent: str | None
    maturity: str | None
    misp_uuid: str | None
    stix_uuid: str

    @property
    def is_subtechnique(self) -> bool:
        return self.parent is not None

    @property
    def url(self) -> str:
        return f"https://atlas.mitre.org/techniques/{self.id}"


@dataclass(frozen=True, slots=True)
class Mitigation:
    """An ATLAS mitigation, with its name in both sources and its MISP UUID.

    ``name`` is ATLAS's current name; ``misp_name`` the name in the MISP galaxy
    (older ATLAS, e.g. "ML" where ATLAS now says "AI"), ``None`` when MISP does
    not list the mitigation.
    """

    id: str
    name: str
    misp_name: str | None
    description: str
    misp_uuid: str | None
    stix_uuid: str
    categories: tuple[str, ...]
    lifecycle: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"https://atlas.mitre.org/mitigations/{self.id}"

    @property
    def uuid(self) -> str:
        """The UUID MISP communities know this mitigation by (STIX-derived if MISP has none)."""
        return self.misp_uuid or self.stix_uuid


@dataclass(frozen=True, slots=True)
class Mitigates:
    """One edge of the mitigation-to-technique relation, with ATLAS's ``use`` text."""

    mitigation: str
    technique: str
    use: str


@dataclass(frozen=True, slots=True)
class Relation:
    """Which mitigation mitigates which technique, according to one source.

    The sources disagree (ATLAS 5.6.0 lists 11 techniques for AML.M0019, the
    MISP galaxy 2), so the relation is versioned data: ``source`` names where
    it came from (``atlas-5.6.0``, ``misp-13``).
    """

    source: str
    edges: tuple[Mitigates, ...]

    def techniques_of(self, mitigation_id: str) -> tuple[Mitigates, ...]:
        """The edges from one mitigation, in source order."""
        return tuple(e for e in self.edges if e.mitigation == mitigation_id)

    def mitigations_of(self, technique_id: str) -> tuple[str, ...]:
        """The ids of the mitigations that mitigate one technique."""
        return tuple(sorted({e.mitigation for e in self.edges if e.technique == technique_id}))

    def as_mapping(self) -> Mapping[str, tuple[str, ...]]:
        """Mitigation id -> technique ids."""
        out: dict[str, list[str]] = {}
        for e in self.edges:
            out.setdefault(e.mitigation, []).append(e.technique)
        return {k: tuple(v) for k, v in out.items()}


@dataclass(frozen=True, slots=True)
class CaseStudy:
    """An ATLAS case study and the techniques its procedure used."""

    id: str
    name: str
    summary: str
    techniques: tuple[str, ...]
