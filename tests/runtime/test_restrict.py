"""An admin tightens one principal: its grants' rate, daily quota and output policy
(identity store, Admin, Access, the output guard), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from atlasguard.audit.log import AuditLog
from atlasguard.errors import UsageError
from atlasguard.identity.store import IdentityStore
from atlasguard.runtime.access import Access
from atlasguard.runtime.admin import Admin
from atlasguard.runtime.auditor import Auditor
from atlasguard.runtime.obfuscation import OutputGuard
from atlasguard.runtime.pipeline import Principal, Request, Response
from atlasguard.runtime.settings import OutputSettings
from tests.dbfixtures import database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with database(request.param, tmp_path) as eng:
        yield eng


def test_restrict_changes_only_the_principals_own_grants_and_is_audited(engine: Engine) -> None:
    identity = IdentityStore.create(engine)
    log = AuditLog.create(engine)
    admin = Admin(identity, Auditor(log))
    key = admin.create_key("ops", "eve", models=["digits"])
    admin.create_key("ops", "group:team", models=["*"])
    identity.add_member("group:team", "eve")
    assert key is not None
    access = Access(identity)
    assert access.resolve(key.secret, "digits").output == ""
    changed = admin.restrict("ops", "eve", rate="2/minute", quota="50/day", output="label")
    assert changed == 1
    principal = access.resolve(key.secret, "digits")
    assert principal.output == "label" and principal.grant_limits == ("2/minute", "50/day")
    team = [g for g in identity.grants_of("group:team") if g.principal == "group:team"]
    assert [(g.rate, g.quota, g.output) for g in team] == [("", "", "")]
    records = [(r.action, r.decision, r.details.get("target")) for _, r in log.recent(3)]
    assert records[0] == (
        "admin.grants.restrict",
        "allow",
        "eve rate=2/minute quota=50/day output=label",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": "fast"}, "not a rate"),
        ({"quota": "5/hour"}, "per day"),
        ({"output": "blur"}, "unknown output policy"),
        ({}, "say what to restrict"),
    ],
)
def test_restrict_refuses_what_it_cannot_mean_and_records_the_refusal(
    engine: Engine, kwargs: dict[str, str], message: str
) -> None:
    identity = IdentityStore.create(engine)
    log = AuditLog.create(engine)
    admin = Admin(identity, Auditor(log))
    admin.create_key("ops", "eve", models=["digits"])
    with pytest.raises(UsageError, match=message):
        admin.restrict("ops", "eve", **kwargs)
    last = log.recent(1)[0][1]
    assert (last.action, last.decision) == ("admin.grants.restrict", "deny")
    with pytest.raises(UsageError, match="no grant of its own"):
        admin.restrict("ops", "nobody", rate="1/minute")


def test_revoke_keys_of_revokes_every_active_key(engine: Engine) -> None:
    identity = IdentityStore.create(engine)
    admin = Admin(identity, Auditor(AuditLog.create(engine)))
    admin.create_key("ops", "eve", models=["digits"])
    identity.create_key("eve")
    assert len(admin.revoke_keys_of("ops", "eve")) == 2
    assert not any(k.active for k in identity.list_keys("eve"))
    with pytest.raises(UsageError, match="no active key"):
        admin.revoke_keys_of("ops", "eve")


def test_the_output_guard_applies_a_grants_own_policy_first() -> None:
    guard = OutputGuard.from_settings(
        OutputSettings(enabled=True, default="round", roles={"user": "top_k"})
    )
    scores = np.array([[0.1, 0.7, 0.2]], dtype=np.float32)
    response = Response(outputs={"probabilities": scores})

    def seen(principal: Principal) -> np.ndarray:
        request = Request(model="m", inputs={}, principal=principal)
        return np.asarray(guard.after(request, response).outputs["probabilities"])

    assert seen(Principal("a", roles=frozenset({"user"}))).dtype.kind == "f"
    labelled = seen(Principal("a", roles=frozenset({"user"}), output="label"))
    assert labelled.dtype.kind in "iu" and labelled.tolist() == [1]
    # a policy this version does not know is read as the strictest, never as "full"
    assert seen(Principal("a", output="everything")).dtype.kind in "iu"


def test_recent_reads_the_newest_records_first(engine: Engine) -> None:
    from atlasguard.audit.records import AuditRecord

    log = AuditLog.create(engine)
    for i in range(7):
        log.append(AuditRecord(time=float(i), principal=f"p{i}", action="infer", decision="allow"))
    assert [idx for idx, _ in log.recent(3)] == [6, 5, 4]
    assert [r.principal for _, r in log.recent(2, before=2)] == ["p1", "p0"]
    assert log.recent(5, before=0) == []


def test_console_audit_pages_cover_the_log_once_across_read_chunks(engine: Engine) -> None:
    from atlasguard.audit.records import AuditRecord
    from atlasguard.gateway.console.views import audit_page

    log = AuditLog.create(engine)
    for i in range(1300):
        log.submit(
            AuditRecord(time=float(i), principal=f"p{i % 3}", action="infer", decision="allow")
        )
    log.append(AuditRecord(time=2000.0, principal="p0", action="infer", decision="allow"))
    seen: list[int] = []
    before = None
    while True:
        page = audit_page(log, principal="p1", before=before, size=100)
        seen += [r["idx"] for r in page["records"]]
        if page["next"] is None:
            break
        before = page["next"]
    assert seen == sorted((i for i in range(1300) if i % 3 == 1), reverse=True)
    assert [i for i, _ in log.newest_first(chunk=7)][:3] == [1300, 1299, 1298]
