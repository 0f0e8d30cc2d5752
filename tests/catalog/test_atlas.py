from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import yaml

from atlasguard.catalog import SEED_MITIGATIONS, load_catalog
from atlasguard.catalog.atlas import stix_uuid
from atlasguard.errors import UnknownIdError
from tests.conftest import SHARED_SEEDS, load_json


def test_counts_match_atlas_5_6_0() -> None:
    cat = load_catalog()
    assert cat.version == "5.6.0"
    assert (len(cat.tactics), len(cat.techniques), len(cat.mitigations)) == (16, 170, 35)
    assert len(cat.case_studies) == 57


def test_packaged_copy_is_the_reference(shared_atlas: Path) -> None:
    packaged = Path(__file__).resolve().parents[2] / "src/atlasguard/catalog/data"
    for name in (
        "ATLAS.yaml",
        "misp-clusters_mitre-atlas-course-of-action.json",
        "misp-clusters_mitre-atlas-attack-pattern.json",
    ):
        assert (packaged / name).read_bytes() == (shared_atlas / name).read_bytes(), name


def test_seed_uuids_come_out_exactly() -> None:
    seeds = sorted(SHARED_SEEDS.glob("*.txt"))
    if not seeds:
        pytest.skip("seed document not found")
    text = seeds[0].read_text(encoding="utf-8")
    expected = re.findall(r"UUID ([0-9a-f-]{36}) .*?\n.*?external_id (AML\.M\d{4})", text, re.S)
    pairs = {mid: u for u, mid in expected}
    assert sorted(pairs) == list(SEED_MITIGATIONS)
    cat = load_catalog()
    for mid in SEED_MITIGATIONS:
        assert cat.mitigation(mid).misp_uuid == pairs[mid], mid
        assert cat.mitigation(mid).uuid == pairs[mid]


def test_both_names_are_kept() -> None:
    cat = load_catalog()
    m2 = cat.mitigation("AML.M0002")
    assert m2.name == "Passive AI Output Obfuscation"
    assert m2.misp_name == "Passive ML Output Obfuscation"
    # a mitigation MISP does not list has no MISP name
    assert cat.mitigation("AML.M0030").misp_name is None


def test_stix_ids_are_the_published_ones(shared_atlas: Path) -> None:
    bundle = load_json(shared_atlas / "stix-atlas.json")
    published = {
        ref["external_id"]: obj["id"].split("--", 1)[1]
        for obj in bundle["objects"]
        for ref in obj.get("external_references", [])[:1]
        if str(ref.get("external_id", "")).startswith("AML.")
    }
    cat = load_catalog()
    checked = 0
    for table in (cat.mitigations, cat.techniques):
        for atlas_id, obj in table.items():
            if atlas_id in published:
                assert obj.stix_uuid == published[atlas_id], atlas_id
                checked += 1
    assert checked >= 200
    assert stix_uuid("AML.M0000") == str(
        uuid.uuid5(uuid.UUID(bytes=b"atlas.mitre.org."), "AML.M0000")
    )


def test_relations_disagree_and_are_versioned() -> None:
    cat = load_catalog()
    atlas, misp = cat.relation("atlas"), cat.relation("misp")
    assert atlas.source == "atlas-5.6.0" and misp.source.startswith("misp-")
    assert len(atlas.techniques_of("AML.M0019")) == 11
    assert len(misp.techniques_of("AML.M0019")) == 2
    with pytest.raises(UnknownIdError):
        cat.relation("stix")  # type: ignore[arg-type]


def test_quirk_duplicates_are_kept_once(shared_atlas: Path) -> None:
    raw = yaml.safe_load((shared_atlas / "ATLAS.yaml").read_text(encoding="utf-8"))
    listed = {
        m["id"]: [t["id"] for t in m["techniques"]] for m in raw["matrices"][0]["mitigations"]
    }
    rel = load_catalog().relation("atlas")
    for mid in ("AML.M0002", "AML.M0004"):
        assert len(listed[mid]) != len(set(listed[mid])), "the quirk is in the source"
        ids = [e.technique for e in rel.techniques_of(mid)]
        assert len(ids) == len(set(ids)) == len(set(listed[mid]))


def test_quirk_mapping_inside_lifecycle_is_moved() -> None:
    cat = load_catalog()
    rel = cat.relation("atlas")
    for mid in ("AML.M0018", "AML.M0034"):
        edges = {e.technique: e.use for e in rel.techniques_of(mid)}
        assert edges.get("AML.T0052.001")
        assert all(isinstance(x, str) for x in cat.mitigation(mid).lifecycle)


def test_use_text_and_subtechniques() -> None:
    cat = load_catalog()
    edges = cat.relation("atlas").techniques_of("AML.M0011")
    assert {e.technique for e in edges} >= {"AML.T0011.000"}
    assert all(e.use for e in edges)
    sub = cat.technique("AML.T0011.000")
    assert sub.parent == "AML.T0011" and sub.is_subtechnique
    assert sub.tactics == () and cat.tactics_of(sub.id) == cat.tactics_of("AML.T0011") != ()


def test_lookup_is_forgiving_about_case_and_prefix_but_not_ids() -> None:
    cat = load_catalog()
    assert cat.mitigation("m0011").id == "AML.M0011"
    with pytest.raises(UnknownIdError, match="M9999"):
        cat.mitigation("AML.M9999")
    with pytest.raises(KeyError):  # callers catching the built-in still work
        cat.technique("AML.T9999")


def test_case_studies_carry_their_techniques(shared_atlas: Path) -> None:
    layer = load_json(shared_atlas / "navigator-layer-AML.CS0000.json")
    cs = load_catalog().case_studies["AML.CS0000"]
    layer_ids = {t["techniqueID"] for t in layer["techniques"] if "color" in t}
    assert layer_ids == set(cs.techniques)
