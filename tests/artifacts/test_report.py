"""Report renderers: JSON shape, SARIF subset for GitHub code scanning, text summary."""

from __future__ import annotations

import json

import pytest

from atlasguard.artifacts.findings import FileReport, Finding, Location, Severity
from atlasguard.artifacts.report import (
    ReportFormat,
    SarifRenderer,
    TextRenderer,
    render,
    renderer_for,
)

REPORTS = [
    FileReport(
        path="models/evil.pkl",
        format="pickle",
        sha256="a" * 64,
        size=20,
        findings=(
            Finding("pickle-import", Severity.CRITICAL, "imports os.system", Location(offset=2)),
            Finding(
                "unreadable",
                Severity.HIGH,
                "truncated",
                Location(member="x.zip!data.pkl", offset=9),
            ),
        ),
    ),
    FileReport(path="models/ok.pt", format="zip", sha256="b" * 64, size=10),
    FileReport(
        path="/abs/elsewhere/m.bin",
        format="pickle",
        sha256="c" * 64,
        size=5,
        findings=(Finding("pickle-import", Severity.MEDIUM, "imports mypkg.X"),),
    ),
]


def test_json() -> None:
    doc = json.loads(render(REPORTS, ReportFormat.JSON))
    assert [d["path"] for d in doc] == [r.path for r in REPORTS]
    first = doc[0]
    assert set(first) >= {"path", "format", "sha256", "findings"}
    f = first["findings"][1]
    assert f == {
        "rule": "unreadable",
        "severity": "high",
        "message": "truncated",
        "location": {"member": "x.zip!data.pkl", "offset": 9},
        "techniques": ["AML.T0011.000", "AML.T0010"],
        "mitigations": ["AML.M0016"],
    }
    assert doc[1]["findings"] == []


def test_sarif_has_what_github_requires() -> None:
    doc = json.loads(SarifRenderer(base="/abs").render(REPORTS))
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-2.1.0.json")
    (run,) = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "atlasguard" and driver["version"] and driver["informationUri"]
    ids = [r["id"] for r in driver["rules"]]
    assert {"pickle-import", "unreadable"} <= set(ids)
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] and rule["helpUri"].startswith("https://")
        assert rule["defaultConfiguration"]["level"] in {"error", "warning", "note"}
        assert "security" in rule["properties"]["tags"]
        float(rule["properties"]["security-severity"])
    results = run["results"]
    assert len(results) == 3
    for res in results:
        assert ids[res["ruleIndex"]] == res["ruleId"]
        assert res["level"] in {"error", "warning", "note"} and res["message"]["text"]
        loc = res["locations"][0]["physicalLocation"]
        assert not loc["artifactLocation"]["uri"].startswith("/")
        assert loc["region"]["startLine"] >= 1
        assert res["partialFingerprints"]
    assert (
        results[0]["level"] == "error"
        and results[0]["locations"][0]["physicalLocation"]["region"]["byteOffset"] == 2
    )
    assert "x.zip!data.pkl @9" in results[1]["message"]["text"]
    assert (
        results[2]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        == "elsewhere/m.bin"
    )
    assert results[2]["level"] == "warning"
    # stable fingerprints across runs
    again = json.loads(SarifRenderer(base="/abs").render(REPORTS))
    assert again["runs"][0]["results"] == results


def test_sarif_with_no_findings_is_valid() -> None:
    doc = json.loads(render([REPORTS[1]], ReportFormat.SARIF))
    assert doc["runs"][0]["results"] == []


def test_text_summary_groups_by_file() -> None:
    text = TextRenderer(width=200).render(REPORTS)
    assert "models/evil.pkl" in text and "CRITICAL" in text and "imports os.system" in text
    assert "models/ok.pt" not in text  # clean files only counted
    assert "3 file(s) scanned, 2 with findings" in text
    assert "\x1b[" not in text


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_renderer_for_every_format(fmt: ReportFormat) -> None:
    assert renderer_for(fmt).render(REPORTS)
