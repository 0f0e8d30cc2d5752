"""The MITRE ATLAS catalog: tactics, techniques, mitigations, case studies, coverage.

>>> from atlasguard.catalog import load_catalog
>>> [m.id for m in load_catalog().seed_mitigations()][:2]
['AML.M0000', 'AML.M0001']
"""

from __future__ import annotations

from atlasguard.catalog.atlas import SEED_MITIGATIONS, Catalog, RelationSource, load_catalog
from atlasguard.catalog.model import CaseStudy, Mitigates, Mitigation, Relation, Tactic, Technique

__all__ = [
    "SEED_MITIGATIONS",
    "CaseStudy",
    "Catalog",
    "Mitigates",
    "Mitigation",
    "Relation",
    "RelationSource",
    "Tactic",
    "Technique",
    "load_catalog",
]
