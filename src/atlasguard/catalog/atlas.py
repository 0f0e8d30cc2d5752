"""Load the packaged ATLAS data (ATLAS.yaml and the MISP galaxy clusters).

The package carries copies of ATLAS 5.6.0 (``data/ATLAS.yaml``, Apache-2.0,
Copyright MITRE) and of the two MISP ATLAS clusters (``data/misp-clusters_*``,
CC0-1.0 / BSD-2-Clause); see ``data/ATTRIBUTION.md``.

Known quirks of the sources, handled here:

* a technique listed twice under one mitigation (AML.M0002, AML.M0004): kept once;
* a ``{id, use}`` mapping misplaced inside the ``ml-lifecycle`` list
  (AML.M0018, AML.M0034): moved to the mitigation's techniques;
* names that moved between versions ("ML" became "AI", AML.M0000 reworded):
  both names are kept (``name``, ``misp_name``);
* MISP UUIDs are not the STIX ids, which are ``uuid5(UUID(bytes=b"atlas.mitre.org."), id)``.

>>> cat = load_catalog()
>>> len(cat.mitigations), len(cat.seed_mitigations())
(35, 20)
>>> cat.relation("misp").source.startswith("misp-")
True
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal, TypeVar

import yaml

from atlasguard.catalog.model import (
    CaseStudy,
    Mitigates,
    Mitigation,
    Relation,
    Tactic,
    Technique,
)
from atlasguard.errors import CatalogError, UnknownIdError

__all__ = ["SEED_MITIGATIONS", "Catalog", "RelationSource", "load_catalog", "stix_uuid"]

RelationSource = Literal["atlas", "misp"]
_T = TypeVar("_T")

SEED_MITIGATIONS: tuple[str, ...] = tuple(f"AML.M{n:04d}" for n in range(20))
"""AML.M0000-AML.M0019: the mitigations atlasguard implements."""

_STIX_NAMESPACE = uuid.UUID(bytes=b"atlas.mitre.org.")
_ID = re.compile(r"^AML\.(TA|T|M|CS)\d{4}(\.\d{3})?$")


def stix_uuid(atlas_id: str) -> str:
    """The deterministic UUID part of ATLAS's STIX id for ``atlas_id``."""
    return str(uuid.uuid5(_STIX_NAMESPACE, atlas_id))


def _id_sort_key(atlas_id: str) -> tuple[str, int, int]:
    _, _, rest = atlas_id.partition(".")
    body = rest.split(".")
    head = re.match(r"([A-Z]+)(\d+)", body[0])
    if head is None:
        return (atlas_id, 0, 0)
    sub = int(body[1]) if len(body) > 1 else -1
    return (head.group(1), int(head.group(2)), sub)


@dataclass(frozen=True)
class Catalog:
    """ATLAS tactics, techniques, mitigations and case studies, plus both relations."""

    version: str
    tactics: Mapping[str, Tactic]
    techniques: Mapping[str, Technique]
    mitigations: Mapping[str, Mitigation]
    case_studies: Mapping[str, CaseStudy]
    relations: Mapping[str, Relation] = field(repr=False)
    misp_cluster_version: int = 0

    def relation(self, source: RelationSource = "atlas") -> Relation:
        """The mitigation-to-technique relation according to ``source``."""
        try:
            return self.relations[source]
        except KeyError:
            raise UnknownIdError(
                f"unknown relation source {source!r}: expected one of {', '.join(self.relations)}"
            ) from None

    def mitigation(self, mitigation_id: str) -> Mitigation:
        """One mitigation by id (case-insensitive, ``M0011`` accepted for ``AML.M0011``)."""
        return _lookup(self.mitigations, mitigation_id, "mitigation")

    def technique(self, technique_id: str) -> Technique:
        """One technique or sub-technique by id."""
        return _lookup(self.techniques, technique_id, "technique")

    def seed_mitigations(self) -> tuple[Mitigation, ...]:
        """AML.M0000-AML.M0019 in id order."""
        return tuple(self.mitigations[m] for m in SEED_MITIGATIONS)

    def tactics_of(self, technique_id: str) -> tuple[str, ...]:
        """A technique's tactics; a sub-technique inherits its parent's."""
        tech = self.technique(technique_id)
        if tech.tactics or tech.parent is None:
            return tech.tactics
        return self.tactics_of(tech.parent)


def _lookup(table: Mapping[str, _T], key: str, kind: str) -> _T:
    wanted = key.strip().upper()
    if not wanted.startswith("AML."):
        wanted = f"AML.{wanted}"
    try:
        return table[wanted]
    except KeyError:
        raise UnknownIdError(f"no ATLAS {kind} with id {key!r}") from None


def _read_text(name: str) -> str:
    try:
        return (resources.files("atlasguard.catalog") / "data" / name).read_text("utf-8")
    except OSError as exc:
        raise CatalogError(f"packaged ATLAS data file {name} is missing: {exc}") from exc


def _as_str(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _techniques_of_mitigation(raw: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    entries = list(raw.get("techniques") or [])
    # Quirk: a mapping placed inside the ml-lifecycle list (AML.M0018, AML.M0034).
    entries.extend(e for e in raw.get("ml-lifecycle") or [] if isinstance(e, dict))
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            yield entry["id"], _as_str(entry.get("use"))


def _load_yaml() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(_read_text("ATLAS.yaml"), Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise CatalogError(f"packaged ATLAS.yaml does not parse: {exc}") from exc
    if not isinstance(data, dict) or not data.get("matrices"):
        raise CatalogError("packaged ATLAS.yaml has no matrices")
    return data


def _load_json(name: str) -> dict[str, Any]:
    try:
        data = json.loads(_read_text(name))
    except json.JSONDecodeError as exc:
        raise CatalogError(f"packaged {name} does not parse: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("values"), list):
        raise CatalogError(f"packaged {name} is not a MISP cluster")
    return data


@cache
def load_catalog() -> Catalog:
    """Load the packaged ATLAS data once per process."""
    atlas = _load_yaml()
    matrix = atlas["matrices"][0]
    misp_coa = _load_json("misp-clusters_mitre-atlas-course-of-action.json")
    misp_ap = _load_json("misp-clusters_mitre-atlas-attack-pattern.json")

    misp_tech_uuid = {v["meta"]["external_id"]: v["uuid"] for v in misp_ap["values"]}
    misp_tech_by_uuid = {v["uuid"]: v["meta"]["external_id"] for v in misp_ap["values"]}
    misp_mit = {v["meta"]["external_id"]: v for v in misp_coa["values"]}

    tactics = {
        t["id"]: Tactic(id=t["id"], name=t["name"], description=_as_str(t.get("description")))
        for t in matrix["tactics"]
    }
    techniques = {
        t["id"]: Technique(
            id=t["id"],
            name=t["name"],
            description=_as_str(t.get("description")),
            tactics=tuple(t.get("tactics") or ()),
            parent=t.get("subtechnique-of"),
            maturity=t.get("maturity"),
            misp_uuid=misp_tech_uuid.get(t["id"]),
            stix_uuid=stix_uuid(t["id"]),
        )
        for t in sorted(matrix["techniques"], key=lambda t: _id_sort_key(t["id"]))
    }

    mitigations: dict[str, Mitigation] = {}
    atlas_edges: list[Mitigates] = []
    for raw in sorted(matrix["mitigations"], key=lambda m: _id_sort_key(m["id"])):
        mid = raw["id"]
        misp = misp_mit.get(mid)
        mitigations[mid] = Mitigation(
            id=mid,
            name=raw["name"],
            misp_name=misp["value"] if misp else None,
            description=_as_str(raw.get("description")),
            misp_uuid=misp["uuid"] if misp else None,
            stix_uuid=stix_uuid(mid),
            categories=tuple(raw.get("category") or ()),
            lifecycle=tuple(x for x in raw.get("ml-lifecycle") or () if isinstance(x, str)),
        )
        seen: set[str] = set()
        for tid, use in _techniques_of_mitigation(raw):
            if tid in seen:  # Quirk: listed twice (AML.M0002, AML.M0004)
                continue
            seen.add(tid)
            atlas_edges.append(Mitigates(mitigation=mid, technique=tid, use=use))

    misp_edges: list[Mitigates] = []
    for mid in sorted(misp_mit, key=_id_sort_key):
        seen = set()
        for rel in misp_mit[mid].get("related") or ():
            target: str | None = misp_tech_by_uuid.get(rel.get("dest-uuid", ""))
            if rel.get("type") != "mitigates" or target is None or target in seen:
                continue
            seen.add(target)
            misp_edges.append(Mitigates(mitigation=mid, technique=target, use=""))

    case_studies = {
        c["id"]: CaseStudy(
            id=c["id"],
            name=c["name"],
            summary=_as_str(c.get("summary")),
            techniques=tuple(
                dict.fromkeys(
                    s["technique"]
                    for s in c.get("procedure") or ()
                    if isinstance(s, dict) and isinstance(s.get("technique"), str)
                )
            ),
        )
        for c in atlas.get("case-studies") or ()
    }

    for mid in SEED_MITIGATIONS:
        if mid not in mitigations:
            raise CatalogError(f"packaged ATLAS data lacks seed mitigation {mid}")
    return Catalog(
        version=str(atlas["version"]),
        tactics=tactics,
        techniques=techniques,
        mitigations=mitigations,
        case_studies=case_studies,
        relations={
            "atlas": Relation(source=f"atlas-{atlas['version']}", edges=tuple(atlas_edges)),
            "misp": Relation(source=f"misp-{misp_coa.get('version', 0)}", edges=tuple(misp_edges)),
        },
        misp_cluster_version=int(misp_coa.get("version", 0)),
    )


def is_atlas_id(text: str) -> bool:
    """True for strings shaped like an ATLAS id (``AML.T0011.000``)."""
    return bool(_ID.match(text))
