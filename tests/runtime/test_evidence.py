"""Command-kind controls count as enabled once their run is on the deployment's record:
the audit log's lookup (SQLite and PostgreSQL), the evidence, and the commands that record."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from atlasguard._cli.main import run as cli
from atlasguard.audit.log import AuditLog
from atlasguard.audit.records import AuditRecord
from atlasguard.db.migrate import migrate
from atlasguard.policy import load_policy, load_policy_text
from atlasguard.runtime.evidence import MAX_AGE_DAYS, command_evidence, recorded_evidence
from tests.dbfixtures import database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with database(request.param, tmp_path) as eng:
        migrate(eng)
        yield eng


def _record(
    log: AuditLog, action: str, *, decision: str = "allow", at: float | None = None, **details: str
) -> int:
    return log.append(
        AuditRecord(
            time=time.time() if at is None else at,
            principal="ann",
            action=action,
            decision=decision,
            details=details,
        )
    )


def test_latest_finds_the_action_field_only(engine: Engine) -> None:
    log = AuditLog(engine)
    # the action's text inside another record's values is not the action
    _record(log, "infer", note='"action":"labs.completed"', other="labs.completed")
    assert log.latest("labs.completed") is None
    first = _record(log, "labs.completed", lab="poison")
    _record(log, "labs.completed", decision="deny")
    found = log.latest("labs.completed", decision="allow")
    assert found is not None and found[0] == first and found[1].details["lab"] == "poison"
    assert log.latest("labs.completed")[0] == first + 1  # type: ignore[index]
    assert log.latest("labs.completed", since=time.time() + 60) is None
    assert log.latest("labs%") is None and log.latest("labs_completed") is None  # no wildcards


def test_evidence_needs_the_control_on_and_a_recent_successful_run(engine: Engine) -> None:
    log = AuditLog(engine)
    on = load_policy_text("[controls.release]\nenabled = true\n[controls.data]\nenabled = true\n")
    off = load_policy_text("[controls.release]\nenabled = false\n")
    _record(log, "release.checked", decision="deny")  # a gate that blocked: not a clean run
    _record(log, "data.audited", at=time.time() - (MAX_AGE_DAYS + 1) * 86400)  # too old
    assert command_evidence(on, log) == ()
    _record(log, "release.checked")
    parts = command_evidence(on, log)
    assert [p.name for p in parts] == ["release-run"]
    assert parts[0].mitigates == {"AML.M0000", "AML.M0001", "AML.M0017"}
    assert "atlasguard release-check" in parts[0].summary
    assert command_evidence(off, log) == ()


def test_the_commands_record_their_runs_and_coverage_counts_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from atlasguard.gateway.demo import init_project
    from atlasguard.release import samples

    project = init_project(tmp_path / "demo", demo=True)
    policy_path = project.policy_path
    text = policy_path.read_text()
    for key in ("release", "data"):
        text = text.replace(
            f"[controls.{key}]\nenabled = false", f"[controls.{key}]\nenabled = true"
        )
    policy_path.write_text(text)
    policy = load_policy(policy_path)
    assert policy.enabled("release") and policy.enabled("data")
    assert recorded_evidence(policy) == ()

    def coverage() -> str:
        capsys.readouterr()
        assert cli(["coverage", "--policy", str(policy_path), "--format", "json"]) == 0
        return capsys.readouterr().out

    assert '"id": "AML.M0007"' in coverage()
    clean = tmp_path / "clean"
    clean.mkdir()
    samples.clean_python_package(clean)
    assert cli(["release-check", str(clean), "--policy", str(policy_path)]) == 0
    rows = np.random.default_rng(0).normal(size=(60, 4))
    data = tmp_path / "train.csv"
    data.write_text(
        "a,b,c,d,label\n"
        + "\n".join(",".join(f"{v:.3f}" for v in row) + f",{i % 2}" for i, row in enumerate(rows))
    )
    cli(["data", "audit", str(data), "--policy", str(policy_path), "--check", "schema"])
    names = {p.name for p in recorded_evidence(load_policy(policy_path))}
    assert names == {"release-run", "data-run"}
    import json

    doc = json.loads(coverage())
    status = {m["id"]: m["enabled"] for m in doc["mitigations"]}
    assert status["AML.M0000"] and status["AML.M0001"] and status["AML.M0007"]
    assert not status["AML.M0003"]  # hardening never ran
