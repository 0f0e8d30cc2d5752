"""The MISP and Navigator exports, checked field by field against the reference copies."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from atlasguard.catalog import load_catalog
from atlasguard.catalog.coverage import compute_coverage
from atlasguard.catalog.export import misp_cluster, navigator_layer
from atlasguard.controls import Control
from atlasguard.policy import Policy
from tests.conftest import load_json

FAKE = (
    Control(
        key="alpha",
        title="Alpha",
        mitigates=frozenset({"AML.M0016", "AML.M0019"}),
        summary="s",
        enable="e",
    ),
)


@pytest.fixture
def coverage(monkeypatch: pytest.MonkeyPatch) -> Any:
    import atlasguard.policy as policy_mod
    from atlasguard.policy import load_policy_text

    monkeypatch.setattr(policy_mod, "control_by_key", lambda: {c.key: c for c in FAKE})
    from atlasguard.runtime.plan import Part

    policy = load_policy_text("[controls.alpha]\nenabled = true\n", source="p.toml")
    part = Part("alpha", FAKE[0].mitigates, "Alpha", "controls.alpha.enabled", "p.toml:2")
    return compute_coverage(policy, controls=FAKE, parts=(part,))


def _types(d: dict[str, Any]) -> dict[str, type]:
    return {k: type(v) for k, v in d.items()}


def test_misp_cluster_has_the_structure_of_the_reference(coverage: Any, shared_atlas: Path) -> None:
    ref = load_json(shared_atlas / "misp-clusters_mitre-atlas-course-of-action.json")
    ref_ap = load_json(shared_atlas / "misp-clusters_mitre-atlas-attack-pattern.json")
    ref_galaxy = load_json(shared_atlas / "misp-galaxies_mitre-atlas-course-of-action.json")
    doc = json.loads(json.dumps(misp_cluster(coverage)))

    assert _types(doc) == _types(ref)  # same top-level fields, same JSON types
    assert doc["type"] == ref["type"] == ref_galaxy["type"]
    assert doc["category"] == ref["category"]
    uuid.UUID(doc["uuid"])
    assert [v["meta"]["external_id"] for v in doc["values"]] == [f"AML.M{n:04d}" for n in range(20)]
    ref_values = {v["meta"]["external_id"]: v for v in ref["values"]}
    technique_uuids = {v["uuid"] for v in ref_ap["values"]}
    cat = load_catalog()
    stix = {t.stix_uuid for t in cat.techniques.values()}
    for value in doc["values"]:
        ref_value = ref_values[value["meta"]["external_id"]]
        assert set(ref_value) <= set(value)
        for key in ("uuid", "value", "description"):
            assert isinstance(value[key], type(ref_value[key]))
        assert value["uuid"] == ref_value["uuid"]
        assert value["meta"]["refs"] == ref_value["meta"]["refs"]
        assert value["related"], value["meta"]["external_id"]
        for rel in value["related"]:
            assert set(rel) == set(ref_value["related"][0])
            assert rel["type"] == "mitigates"
            assert rel["tags"] == ref_value["related"][0]["tags"]
            assert rel["dest-uuid"] in technique_uuids or rel["dest-uuid"] in stix
    status = {v["meta"]["external_id"]: v["meta"]["atlasguard-status"] for v in doc["values"]}
    assert status["AML.M0016"] == "enabled" and status["AML.M0000"] == "not implemented"


def test_misp_related_follows_the_relation(
    monkeypatch: pytest.MonkeyPatch, shared_atlas: Path
) -> None:
    ref = load_json(shared_atlas / "misp-clusters_mitre-atlas-course-of-action.json")
    cov = compute_coverage(Policy(), controls=FAKE, relation="misp")
    doc = misp_cluster(cov)
    ref_related = {
        v["meta"]["external_id"]: {r["dest-uuid"] for r in v["related"]} for v in ref["values"]
    }
    for value in doc["values"]:
        mine = {r["dest-uuid"] for r in value["related"]}
        assert mine == ref_related[value["meta"]["external_id"]]


def test_navigator_layer_matches_the_reference_layer_format(
    coverage: Any, shared_atlas: Path
) -> None:
    ref = load_json(shared_atlas / "navigator-layer-AML.CS0000.json")
    layer = json.loads(json.dumps(navigator_layer(coverage)))
    for key in (
        "versions",
        "domain",
        "metadata",
        "name",
        "description",
        "techniques",
        "legendItems",
    ):
        assert isinstance(layer[key], type(ref[key])), key
    assert layer["domain"] == ref["domain"] == "atlas-atlas"
    assert layer["versions"]["layer"].startswith("4.")
    assert {"name": "atlas_data_version", "value": "5.6.0"} in layer["metadata"]
    ref_entry_keys = set().union(*(t.keys() for t in ref["techniques"]))
    cat = load_catalog()
    shortnames = {t.shortname for t in cat.tactics.values()}
    assert {t["tactic"] for t in ref["techniques"] if "tactic" in t} <= shortnames
    seen = set()
    for entry in layer["techniques"]:
        assert set(entry) - {"score", "comment", "enabled"} <= ref_entry_keys
        tech = cat.technique(entry["techniqueID"])
        seen.add(tech.id)
        assert isinstance(entry["score"], int) and entry["score"] >= 0
        if tech.is_subtechnique:
            assert "tactic" not in entry
        else:
            assert entry["tactic"] in shortnames
    assert seen == set(cat.techniques)
    scores = {e["techniqueID"]: e["score"] for e in layer["techniques"]}
    assert scores["AML.T0011.000"] >= 1  # AML.M0016 mitigates unsafe AI artifacts
    for item in layer["legendItems"]:
        assert set(item) == set(ref["legendItems"][0])
    assert layer["gradient"]["maxValue"] >= max(scores.values())
