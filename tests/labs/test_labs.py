"""Every lab, in its short form: the attack works unprotected and the mitigation cuts it.

The assertions are on what the lab measured just now, with margins the attacks and
defences hold on digits (docs/mitigations/AML.M0018.md has the full runs' figures).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atlasguard.labs import LABS, Lab, LabResult, render

pytest.importorskip("sklearn")

FAMILIES = {
    "artifacts (scan, sign)",
    "access and quotas",
    "extraction and obfuscation",
    "evasion and detection",
    "poisoning and sanitization",
    "release",
}


def figures(result: LabResult) -> dict[str, tuple[float, float]]:
    return {f.what.split(" (")[0]: (f.without, f.with_) for f in result.figures}


def test_one_lab_per_mitigation_family() -> None:
    assert {lab.family for lab in LABS.values()} >= FAMILIES
    for lab in LABS.values():
        assert lab.mitigations and all(m.startswith("AML.M") for m in lab.mitigations)
        assert lab.techniques and all(t.startswith("AML.T") for t in lab.techniques)
        assert len(lab.quiz) >= 3
        assert all(0 <= q.answer < len(q.choices) for q in lab.quiz)


def _run(name: str) -> tuple[Lab, LabResult]:
    lab = LABS[name]
    result = lab.run(True)
    text = render(lab, result)
    for f in result.figures:  # every figure is in the text a person reads
        assert f.what in text
    return lab, result


def test_hidden_code() -> None:
    _, result = _run("hidden-code")
    ran, refused, tampered = (f for f in result.figures)
    assert ran.without == 1.0 and ran.with_ == 0.0
    assert refused.with_ == 1.0
    assert tampered.without == 1.0 and tampered.with_ == 0.0


def test_poison() -> None:
    _, result = _run("poison")
    success, accuracy, left, _removed = result.figures
    assert success.without >= 0.8 and success.with_ <= success.without - 0.5
    assert accuracy.with_ >= accuracy.without - 0.03  # cleaning costs little clean accuracy
    assert left.with_ < left.without / 2


def test_steal_model() -> None:
    _, result = _run("steal-model")
    random_inputs, answered, natural, labels = result.figures
    assert random_inputs.without >= 0.7 and random_inputs.with_ <= random_inputs.without - 0.3
    assert answered.with_ < answered.without  # the monitor stopped the key
    assert natural.without >= 0.9  # real digits: the copy is good, detected or not
    assert labels.with_ < labels.without


def test_evasion() -> None:
    _, result = _run("evasion")
    misread, stopped, _queries, honest = result.figures
    assert misread.without >= 0.6 and misread.with_ < misread.without
    assert stopped.with_ > 0
    assert honest.with_ == 0.0


def test_stolen_key() -> None:
    _, result = _run("stolen-key")
    answered, refused, _copy = result.figures
    assert answered.with_ < answered.without / 3
    assert refused.with_ > 0


def test_leaky_release() -> None:
    _, result = _run("leaky-release")
    taken, found, left = result.figures
    assert taken.without >= 6 and taken.with_ == 0
    assert found.with_ >= taken.without and left.with_ == 0


def test_cli_runs_a_lab_takes_the_quiz_and_records_the_completion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from atlasguard._cli.main import run as cli
    from atlasguard.policy import load_policy
    from atlasguard.runtime.deployment import Deployment

    policy = tmp_path / "atlasguard.toml"
    policy.write_text("")
    monkeypatch.chdir(tmp_path)
    code = cli(
        [
            "labs",
            "run",
            "hidden-code",
            "--quick",
            "--answers",
            "2,2,2",
            "--who",
            "maria",
            "--policy",
            str(policy),
            "-o",
            str(tmp_path / "out"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "score: 3/3" in out and "recorded in the audit log" in out
    saved = json.loads((tmp_path / "out" / "hidden-code.json").read_text())
    assert saved["quiz"] == 3 and saved["figures"]
    with Deployment.open(load_policy(policy)) as deployment:
        rows = [r.to_dict() for _i, r in deployment.audit.records()]
    done = [r for r in rows if r["action"] == "labs.completed"]
    assert done and done[0]["principal"] == "maria"
    assert done[0]["details"]["lab"] == "hidden-code" and done[0]["details"]["quiz"] == "3/3"
    capsys.readouterr()
    assert cli(["labs", "status", "--policy", str(policy), "--format", "json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert list(status["people"]["maria"]["completed"]) == ["hidden-code"]
    assert "hidden-code" not in status["people"]["maria"]["missing"]
    assert set(status["people"]["maria"]["missing"]) == set(LABS) - {"hidden-code"}
    code = cli(["labs", "run", "hidden-code", "--answers", "1"])
    assert code == 2  # the quiz has three questions
    assert cli(["labs", "run", "nope"]) == 2
    capsys.readouterr()
    assert cli(["labs", "list", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {lab["name"] for lab in listed} == set(LABS)
