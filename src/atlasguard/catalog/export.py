"""Coverage and catalog as documents: JSON, a MISP galaxy cluster, an ATLAS Navigator layer.

>>> from atlasguard.catalog.coverage import compute_coverage
>>> from atlasguard.catalog.export import navigator_layer
>>> from atlasguard.policy import Policy
>>> navigator_layer(compute_coverage(Policy.default()))["domain"]
'atlas-atlas'
"""

from __future__ import annotations

import uuid
from typing import Any

from atlasguard import __version__
from atlasguard.catalog.atlas import Catalog, RelationSource, load_catalog
from atlasguard.catalog.capabilities import CAPABILITIES
from atlasguard.catalog.coverage import Coverage
from atlasguard.catalog.model import Mitigation
from atlasguard.controls import implemented_controls

__all__ = [
    "COVERAGE_COLORS",
    "coverage_json",
    "misp_cluster",
    "mitigation_json",
    "navigator_layer",
]

# Layer format of the ATLAS Navigator layers ATLAS itself publishes.
NAVIGATOR_VERSIONS = {"layer": "4.3", "navigator": "4.6.4"}
# Score (number of enabled mitigations covering a technique) -> colour.
COVERAGE_COLORS: tuple[tuple[int, str, str], ...] = (
    (1, "#c8e6c9", "covered by 1 enabled mitigation"),
    (2, "#81c784", "covered by 2 enabled mitigations"),
    (3, "#388e3c", "covered by 3 or more enabled mitigations"),
)
_CLUSTER_NAMESPACE = uuid.UUID("6f1d9c4e-6b1a-4f0e-9a55-0a7c1c2e9b11")
_MISP_TAG = 'estimative-language:likelihood-probability="almost-certain"'


def mitigation_json(
    mitigation: Mitigation, *, catalog: Catalog | None = None, relation: RelationSource = "atlas"
) -> dict[str, Any]:
    """One mitigation as ``catalog list --format json`` prints it."""
    catalog = catalog or load_catalog()
    edges = catalog.relation(relation).techniques_of(mitigation.id)
    controls = [c.key for c in implemented_controls() if mitigation.id in c.mitigates]
    capability = CAPABILITIES.get(mitigation.id)
    return {
        "id": mitigation.id,
        "name": mitigation.name,
        "misp_name": mitigation.misp_name,
        "uuid": mitigation.uuid,
        "stix_id": f"course-of-action--{mitigation.stix_uuid}",
        "description": mitigation.description,
        "categories": list(mitigation.categories),
        "techniques": [e.technique for e in edges],
        "capability": capability.summary if capability else None,
        "controls": controls,
        "implemented": bool(controls),
        "url": mitigation.url,
    }


def coverage_json(cov: Coverage) -> dict[str, Any]:
    """The whole coverage report as plain JSON-ready data."""
    return {
        "atlas_version": cov.atlas_version,
        "relation": cov.relation,
        "policy": cov.policy,
        "generated_by": f"atlasguard {__version__}",
        "summary": {
            "mitigations": len(cov.mitigations),
            "implemented": cov.implemented_count,
            "enabled": cov.enabled_count,
            "techniques": len(cov.techniques),
            "techniques_covered": cov.covered_techniques,
        },
        "mitigations": [
            {
                "id": m.mitigation.id,
                "name": m.mitigation.name,
                "uuid": m.mitigation.uuid,
                "implemented": m.implemented,
                "enabled": m.enabled,
                "status": m.status,
                "controls": list(m.controls),
                "evidence": [
                    {
                        "control": e.control,
                        "title": e.title,
                        "setting": e.setting,
                        "location": e.location,
                    }
                    for e in m.evidence
                ],
                "techniques": list(m.techniques),
            }
            for m in cov.mitigations
        ],
        "techniques": [
            {
                "id": t.technique.id,
                "name": t.technique.name,
                "tactics": list(t.tactics),
                "count": t.count,
                "enabled_mitigations": list(t.mitigations),
                "implemented_mitigations": list(t.available),
            }
            for t in cov.techniques
        ],
    }


def misp_cluster(cov: Coverage, *, catalog: Catalog | None = None) -> dict[str, Any]:
    """A MISP galaxy cluster of the twenty mitigations with this deployment's status.

    Same structure as the MISP ATLAS course-of-action cluster (``values`` with
    ``uuid``, ``value``, ``description``, ``meta.external_id``, ``related``
    entries of type ``mitigates``); values keep MISP's UUIDs so that they
    correlate with the galaxy, and ``meta`` adds the atlasguard status and evidence.
    """
    catalog = catalog or load_catalog()
    values = []
    for m in cov.mitigations:
        related = []
        for tid in m.techniques:
            tech = catalog.techniques.get(tid)
            dest = (tech.misp_uuid or tech.stix_uuid) if tech else None
            if dest:
                related.append({"dest-uuid": dest, "tags": [_MISP_TAG], "type": "mitigates"})
        values.append(
            {
                "description": m.mitigation.description,
                "meta": {
                    "external_id": m.mitigation.id,
                    "refs": [m.mitigation.url],
                    "atlasguard-status": m.status,
                    "atlasguard-controls": list(m.controls),
                    "atlasguard-evidence": [f"{e.setting} ({e.location})" for e in m.evidence],
                },
                "related": related,
                "uuid": m.mitigation.uuid,
                "value": m.mitigation.name,
            }
        )
    return {
        "authors": ["atlasguard"],
        "category": "course-of-action",
        "description": f"MITRE ATLAS mitigations and their status under atlasguard policy "
        f"{cov.policy} (ATLAS {cov.atlas_version}, relation {cov.relation})",
        "name": "atlasguard ATLAS coverage",
        "source": f"atlasguard {__version__}",
        "type": "mitre-atlas-course-of-action",
        "uuid": str(uuid.uuid5(_CLUSTER_NAMESPACE, f"{cov.policy}|{cov.relation}")),
        "values": values,
        "version": catalog.misp_cluster_version,
    }


def _color(score: int) -> str | None:
    chosen = None
    for threshold, color, _ in COVERAGE_COLORS:
        if score >= threshold:
            chosen = color
    return chosen


def navigator_layer(cov: Coverage, *, catalog: Catalog | None = None) -> dict[str, Any]:
    """An ATLAS Navigator layer scoring each technique by enabled mitigations covering it."""
    catalog = catalog or load_catalog()
    scores = {t.technique.id: t for t in cov.techniques}
    entries: list[dict[str, Any]] = []
    for t in cov.techniques:
        tech = t.technique
        entry: dict[str, Any] = {
            "techniqueID": tech.id,
            "score": t.count,
            "comment": (
                "mitigated here by " + ", ".join(t.mitigations)
                if t.mitigations
                else "no enabled atlasguard mitigation covers this technique"
            ),
            "enabled": True,
        }
        color = _color(t.count)
        if color:
            entry["color"] = color
        if tech.is_subtechnique:
            entries.append(entry)
            continue
        children = [s for s in scores.values() if s.technique.parent == tech.id]
        for tactic_id in t.tactics:
            entries.append(
                {
                    **entry,
                    "tactic": catalog.tactics[tactic_id].shortname,
                    "showSubtechniques": any(c.count for c in children),
                }
            )
    return {
        "name": "atlasguard coverage",
        "versions": dict(NAVIGATOR_VERSIONS),
        "domain": "atlas-atlas",
        "description": f"Techniques scored by the number of ATLAS mitigations enabled by "
        f"atlasguard policy {cov.policy} ({cov.enabled_count} of {len(cov.mitigations)} "
        f"mitigations enabled; relation {cov.relation}).",
        "metadata": [
            {"name": "atlas_data_version", "value": cov.atlas_version},
            {"name": "relation", "value": cov.relation},
            {"name": "policy", "value": cov.policy},
            {"name": "generated_by", "value": f"atlasguard {__version__}"},
        ],
        "sorting": 3,
        "hideDisabled": False,
        "techniques": entries,
        "gradient": {
            "colors": ["#ffffff", COVERAGE_COLORS[-1][1]],
            "minValue": 0,
            "maxValue": max((t.count for t in cov.techniques), default=1) or 1,
        },
        "legendItems": [
            {"label": "no enabled mitigation", "color": "#ffffff"},
            *({"label": label, "color": color} for _, color, label in COVERAGE_COLORS),
        ],
        "showTacticRowBackground": False,
        "selectTechniquesAcrossTactics": True,
        "selectSubtechniquesWithParent": False,
    }
