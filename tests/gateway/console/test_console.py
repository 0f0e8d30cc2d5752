"""The console over HTTP, in process: who may see it, sessions, CSRF, actions, audit."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route
from starlette.testclient import TestClient

from atlasguard.gateway.app import create_app
from atlasguard.gateway.console.base import COOKIE, CSP, router
from atlasguard.gateway.console.sessions import SessionStore
from atlasguard.gateway.service import Gateway
from atlasguard.policy import load_policy_text
from tests.gateway.console.conftest import BASE, Site, digit


def _console_routes() -> list[tuple[str, str]]:
    """Every (method, path) of the console's router, path parameters filled in."""
    found = []
    for route in router.routes:
        if not isinstance(route, Route):
            continue
        path = re.sub(r"\{index[^}]*\}", "0", route.path)
        path = re.sub(r"\{name[^}]*\}", "console.css", path)
        path = re.sub(r"\{verb[^}]*\}", "revoke", path)
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((method, path))
    return found


def test_every_console_route_refuses_a_non_admin_with_403(site: Site) -> None:
    routes = _console_routes()
    assert len(routes) >= 18  # every page, export, action, asset
    user = site.project.demo_key
    assert user is not None
    for method, path in routes:
        for header in ({"X-API-Key": user}, {"Authorization": f"Bearer {user}"}):
            answer = site.client.request(
                method, path, headers=header, data={"principal": "demo"}, follow_redirects=False
            )
            assert answer.status_code == 403, (method, path, answer.status_code)
            assert user not in answer.text


def test_a_non_admin_cannot_sign_in(site: Site) -> None:
    page = site.client.get("/console/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce is not None
    answer = site.client.post(
        "/console/login",
        data={"nonce": nonce[1], "credential": site.project.demo_key or ""},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert "admin" in answer.text and COOKIE not in answer.headers.get("set-cookie", "")
    assert site.client.get("/console/traffic.json").status_code == 401


def test_without_credentials_pages_lead_to_the_sign_in_and_data_is_401(site: Site) -> None:
    page = site.client.get("/console/audit", follow_redirects=False)
    assert (page.status_code, page.headers["location"]) == (303, "/console/login")
    data = site.client.get("/console/traffic.json")
    assert data.status_code == 401 and data.json()["reason"] == "unauthenticated"
    wrong = site.client.post(
        "/console/login", data={"nonce": "x", "credential": "agk_0_x"}, follow_redirects=False
    )
    assert wrong.status_code == 403  # no sign-in form was ever fetched: a forged post


def test_a_wrong_key_returns_to_the_form_with_the_reason(site: Site) -> None:
    page = site.client.get("/console/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce is not None
    answer = site.client.post(
        "/console/login",
        data={"nonce": nonce[1], "credential": "agk_0123456789abcdef_" + "A" * 43},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login?")
    assert answer.headers["location"] == "/console/login?error=key"
    assert "was not accepted" in site.client.get(answer.headers["location"]).text
    # text in the URL is never shown: a link cannot put words on the sign-in page
    crafted = site.client.get("/console/login?error=Call+555-0100+to+restore+access")
    assert "555-0100" not in crafted.text


def test_the_session_cookie_is_httponly_strict_and_not_the_key(site: Site) -> None:
    admin_key = site.key("ops", admin=True)
    page = site.client.get("/console/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce is not None
    answer = site.client.post(
        "/console/login", data={"nonce": nonce[1], "credential": admin_key}, follow_redirects=False
    )
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}="))
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/console" in flags
    assert admin_key not in cookie
    assert any(f.startswith("max-age=") and 0 < int(f.split("=")[1]) <= 3600 for f in flags)
    for path in ("/console/coverage", "/console/traffic", "/console/alerts", "/console/audit"):
        shown = site.client.get(path)
        assert shown.status_code == 200
        assert admin_key not in shown.text
        assert shown.headers["content-security-policy"] == CSP
        assert "<script>" not in shown.text and " style=" not in shown.text  # nothing inline
        assert not re.search(r'(src|href)="(https?:)?//', shown.text.split("<main>")[0])


def test_actions_need_the_csrf_token_and_the_same_origin(site: Site) -> None:
    site.key("target-1")
    csrf = site.sign_in(site.key("ops2", admin=True))
    no_token = site.client.post(
        "/console/alerts/revoke", data={"principal": "target-1"}, follow_redirects=False
    )
    assert no_token.status_code == 403
    other_site = site.client.post(
        "/console/alerts/revoke",
        data={"principal": "target-1", "csrf": csrf},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert other_site.status_code == 403
    cross = site.client.post(
        "/console/alerts/revoke",
        data={"principal": "target-1", "csrf": csrf},
        headers={"Sec-Fetch-Site": "cross-site"},
        follow_redirects=False,
    )
    assert cross.status_code == 403
    keys = site.gateway.deployment.identity.list_keys("target-1")
    assert all(k.active for k in keys)  # nothing happened


def test_revoke_from_the_console_and_the_principal_next_request_is_401(site: Site) -> None:
    key = site.key("mallory")
    assert (
        site.client.post(
            "/v2/models/digits/infer", json=digit(), headers={"X-API-Key": key}
        ).status_code
        == 200
    )
    csrf = site.sign_in(site.key("ops3", admin=True))
    done = site.client.post(
        "/console/alerts/revoke",
        data={"principal": "mallory", "csrf": csrf},
        headers={"Origin": BASE},
        follow_redirects=False,
    )
    assert done.status_code == 303 and "revoked" in done.headers["location"]
    again = site.client.post("/v2/models/digits/infer", json=digit(), headers={"X-API-Key": key})
    assert again.status_code == 401
    actions = [
        (r.principal, r.action, r.decision) for _, r in site.gateway.deployment.audit.recent(10)
    ]
    assert ("ops3", "admin.keys.revoke", "allow") in actions
    missing = site.client.post(
        "/console/alerts/revoke",
        data={"principal": "mallory", "csrf": csrf},
        follow_redirects=False,
    )
    assert missing.status_code == 400 and "no active key" in missing.text


def test_tighten_quota_and_labels_only_take_effect(site: Site) -> None:
    key = site.key("eve")
    before = site.client.post("/v2/models/digits/infer", json=digit(0), headers={"X-API-Key": key})
    scores = next(o for o in before.json()["outputs"] if o["name"] == "probabilities")
    assert scores["datatype"].startswith("FP")
    csrf = site.sign_in(site.key("ops4", admin=True))
    labelled = site.client.post(
        "/console/alerts/label-only",
        data={"principal": "eve", "csrf": csrf},
        follow_redirects=False,
    )
    assert labelled.status_code == 303
    after = site.client.post("/v2/models/digits/infer", json=digit(10), headers={"X-API-Key": key})
    assert after.status_code == 200
    names = {o["name"]: o for o in after.json()["outputs"]}
    assert "probabilities" not in names or not names["probabilities"]["datatype"].startswith("FP")
    tightened = site.client.post(
        "/console/alerts/tighten",
        data={"principal": "eve", "csrf": csrf, "rate": "2/minute", "quota": "100/day"},
        follow_redirects=False,
    )
    assert tightened.status_code == 303
    codes = [
        site.client.post(
            "/v2/models/digits/infer", json=digit(20 + i), headers={"X-API-Key": key}
        ).status_code
        for i in range(4)
    ]
    assert 429 in codes
    bad = site.client.post(
        "/console/alerts/tighten",
        data={"principal": "eve", "csrf": csrf, "rate": "lots", "quota": ""},
        follow_redirects=False,
    )
    assert bad.status_code == 400 and "not a rate" in bad.text
    refused = [
        r
        for _, r in site.gateway.deployment.audit.recent(20)
        if r.action == "admin.grants.restrict"
    ]
    assert {r.decision for r in refused} == {"allow", "deny"}


def test_a_revoked_admin_key_ends_its_session(site: Site) -> None:
    key = site.key("ops5", admin=True)
    site.sign_in(key)
    assert site.client.get("/console/traffic.json").status_code == 200
    key_id = next(k.key_id for k in site.gateway.deployment.identity.list_keys("ops5"))
    site.gateway.deployment.admin.revoke_key("tests", key_id)
    assert site.client.get("/console/traffic.json").status_code == 401
    page = site.client.get("/console/audit", follow_redirects=False)
    assert page.headers["location"] == "/console/login"


def test_sign_out_ends_the_session_everywhere(site: Site) -> None:
    csrf = site.sign_in(site.key("ops6", admin=True))
    token = site.client.cookies.get(COOKIE)
    out = site.client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert SessionStore(site.gateway.deployment.engine).find(token) is None
    site.client.cookies.set(COOKIE, token or "", path="/console")
    assert site.client.get("/console/traffic.json").status_code == 401


def test_traffic_counts_what_was_sent(site: Site) -> None:
    key = site.key("counted")
    site.sign_in(site.key("ops7", admin=True))
    first = site.client.get("/console/traffic.json").json()
    for i in range(3):
        site.client.post("/v2/models/digits/infer", json=digit(30 + i), headers={"X-API-Key": key})
    site.client.post("/v2/models/digits/infer", json=digit(1), headers={"X-API-Key": "agk_nope"})
    then = site.client.get("/console/traffic.json").json()
    assert then["outcomes"]["allowed"] - first["outcomes"]["allowed"] == 3
    assert then["outcomes"]["401"] - first["outcomes"]["401"] == 1
    mine = next(p for p in then["principals"] if p["principal"] == "counted")
    assert (mine["requests"], mine["today"]) == (3, 3)
    assert mine["daily_limit"] == 10000  # the policy's [controls.quotas] daily
    assert then["latency"]["n"] >= 3 and then["latency"]["p50"] > 0
    assert all(not r["action"].startswith("console.") for r in then["latest"])


def test_alerts_show_a_monitor_alarm_with_its_evidence(site: Site) -> None:
    key = site.key("copier")
    codes = [
        site.client.post(
            "/v2/models/digits/infer", json=digit(5, noise=0.02, seed=i), headers={"X-API-Key": key}
        ).status_code
        for i in range(12)
    ]
    assert 403 in codes  # near-copies: the query monitor suspended it
    site.sign_in(site.key("ops8", admin=True))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the alarm's record is written by a thread
        page = site.client.get("/console/alerts")
        if 'data-principal="copier"' in page.text:
            break
        time.sleep(0.2)
    section = page.text.split('data-principal="copier"')[1].split("</section>")[0]
    assert "Suspended" in section and "alarm" in section
    assert "Lift suspension" in section


def test_audit_page_verifies_the_chain_and_proves_a_record(site: Site) -> None:
    csrf = site.sign_in(site.key("ops9", admin=True))
    signed = site.client.post(
        "/console/audit/checkpoint", data={"csrf": csrf}, follow_redirects=False
    )
    assert signed.status_code == 303
    page = site.client.get("/console/audit?verify=1")
    assert 'id="verified"' in page.text and "Verified:" in page.text
    proof = site.client.get("/console/audit/proof/1")
    assert "Proved" in proof.text and "signature verifies" in proof.text
    beyond = site.client.get("/console/audit/proof/999999")
    assert "no checkpoint covers" in beyond.text
    filtered = site.client.get("/console/audit?action=console&principal=ops9")
    rows = re.findall(r"<td>(console\.[a-z.]+)</td>", filtered.text)
    assert rows and "console.login" in rows and "console.audit.checkpoint" in rows


def test_a_tampered_log_fails_verification_on_the_page(site: Site) -> None:
    csrf = site.sign_in(site.key("ops10", admin=True))
    site.client.post("/console/audit/checkpoint", data={"csrf": csrf}, follow_redirects=False)
    from sqlalchemy import select, update

    from atlasguard.db.schema import audit_records

    engine = site.gateway.deployment.engine
    with engine.begin() as conn:
        original = conn.execute(
            select(audit_records.c.body).where(audit_records.c.idx == 0)
        ).scalar_one()
        forged = json.dumps({"time": 0.0, "principal": "x", "action": "infer", "decision": "allow"})
        conn.execute(update(audit_records).where(audit_records.c.idx == 0).values(body=forged))
    try:
        page = site.client.get("/console/audit?verify=1")
        assert "Verification FAILED" in page.text and "record 0" in page.text
    finally:
        with engine.begin() as conn:
            conn.execute(
                update(audit_records).where(audit_records.c.idx == 0).values(body=original)
            )
    assert "Verified:" in site.client.get("/console/audit?verify=1").text


def test_exports_and_pages_render(site: Site) -> None:
    site.sign_in(site.key("ops11", admin=True))
    layer = site.client.get("/console/coverage/navigator.json")
    assert layer.status_code == 200 and "attachment" in layer.headers["content-disposition"]
    assert layer.json()["domain"]
    misp = site.client.get("/console/coverage/misp.json").json()
    assert misp["values"]
    detail = site.client.get("/console/coverage?m=AML.M0004")
    assert "[controls.quotas] enabled" in detail.text and "Evidence in the policy" in detail.text
    registry = site.client.get("/console/registry")
    assert "digits" in registry.text and "verified" in registry.text
    efficacy = site.client.get("/console/efficacy")
    assert efficacy.status_code == 200
    # a path out of the folder never reaches the route (a name has no "/")...
    escape = site.client.get("/console/results/..%2Fatlasguard.toml")
    assert escape.status_code == 404 and "[controls" not in escape.text
    # ...and the route serves only plain .png names of the folder
    results = site.project.policy_path.parent / "results"
    results.mkdir(exist_ok=True)
    (results / ".hidden.png").write_bytes(b"\x89PNG")
    assert site.client.get("/console/results/.hidden.png").status_code == 404
    assert site.gateway.deployment.audit.recent(1)[0][1].action == "console.plot"
    assert site.client.get("/console/results/x.toml").status_code == 404
    assert site.client.get("/console/results/missing.png").status_code == 404


def test_efficacy_shows_results_files(site: Site, demo_dir: object) -> None:

    results = Path(str(demo_dir)) / "results"
    results.mkdir(exist_ok=True)
    (results / "bench.json").write_text(
        json.dumps(
            {
                "command": "atlasguard bench efficacy --quick",
                "rows": [
                    {"attack": "SimBA", "defence": "query monitor (default [controls.monitor])"},
                    {"attack": "other", "defence": "output policy label"},
                ],
            }
        )
    )
    (results / "broken.json").write_text("{not json")
    site.sign_in(site.key("ops12", admin=True))
    page = site.client.get("/console/efficacy")
    assert "atlasguard bench efficacy --quick" in page.text and "not readable as JSON" in page.text
    detail = site.client.get("/console/coverage?m=AML.M0004").text.split('id="detail"')[1]
    assert "query monitor (default [controls.monitor])" in detail and "output policy" not in detail
    (results / "bench.json").unlink()
    (results / "broken.json").unlink()


def test_the_console_can_be_switched_off(project: object, tmp_path: object) -> None:

    policy_path = Path(str(project.policy_path))
    text = policy_path.read_text().replace("\nconsole = true\n", "\nconsole = false\n", 1)
    assert "console = false" in text
    policy = load_policy_text(text, path=policy_path)
    with TestClient(create_app(Gateway.from_policy(policy)), base_url=BASE) as client:
        assert client.get("/console/login").status_code == 404


@pytest.mark.services
def test_sessions_live_in_postgresql(tmp_path: object) -> None:

    from atlasguard.db.migrate import migrate
    from tests.dbfixtures import database

    with database("postgresql", Path(str(tmp_path))) as engine:
        migrate(engine)
        one, other = SessionStore(engine), SessionStore(engine)  # two workers
        opened = one.open("ops", "key:0123456789abcdef", seconds=60)
        assert other.find(opened.token) == opened.session
        assert other.close(opened.token) and one.find(opened.token) is None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=3000),
    path=st.sampled_from(["/console/login", "/console/alerts/revoke", "/console/logout"]),
)
def test_hostile_form_bodies_never_fail_the_server(site: Site, body: bytes, path: str) -> None:
    answer = site.client.post(
        path,
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert answer.status_code in (303, 400, 401, 403, 413), answer.status_code


def test_an_oversized_form_is_refused(site: Site) -> None:
    answer = site.client.post(
        "/console/login",
        content=b"credential=" + b"a" * 100_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 413


def test_hostile_names_from_urls_are_shown_as_text(site: Site) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    site.client.post(f"/v2/models/{hostile}/infer", json=digit(0))
    site.sign_in(site.key("ops13", admin=True))
    for path in ("/console/audit", "/console/traffic"):
        page = site.client.get(path)
        assert hostile not in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text


def test_unknown_actions_and_crowded_forms_are_refused_without_new_names(site: Site) -> None:
    csrf = site.sign_in(site.key("ops14", admin=True))
    unknown = site.client.post(
        "/console/alerts/explode", data={"principal": "x", "csrf": csrf}, follow_redirects=False
    )
    assert unknown.status_code == 404
    last = site.gateway.deployment.audit.recent(1)[0][1]
    assert last.action == "console.alerts.unknown"
    crowded = site.client.post(
        "/console/alerts/revoke",
        content="&".join(f"f{i}=1" for i in range(50)).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert crowded.status_code == 400


def test_traffic_says_when_the_scan_covers_less_than_the_window(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atlasguard.gateway.console import views

    for i in range(6):
        site.client.post(
            "/v2/models/digits/infer", json=digit(50 + i), headers={"X-API-Key": "agk_x"}
        )
    monkeypatch.setattr(views, "TRAFFIC_SCAN", 5)
    data = views.traffic_view(site.gateway.deployment.audit, site.gateway.policy, {})
    assert data["covered_seconds"] is not None and data["total"] <= 5
    monkeypatch.setattr(views, "TRAFFIC_SCAN", 20_000)
    assert (
        views.traffic_view(site.gateway.deployment.audit, site.gateway.policy, {})[
            "covered_seconds"
        ]
        is None
    )


def test_guessing_keys_at_the_sign_in_is_throttled_with_retry_after(site: Site) -> None:
    page = site.client.get("/console/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce is not None
    for i in range(200):
        guess = f"agk_{i:016x}_" + "B" * 43
        answer = site.client.post(
            "/console/login",
            data={"nonce": nonce[1], "credential": guess},
            follow_redirects=False,
        )
        if answer.status_code == 429:
            break
        assert answer.status_code == 303  # back to the form, with the reason
    assert answer.status_code == 429, "200 wrong keys from one address were never throttled"
    assert int(answer.headers["retry-after"]) >= 1 and "throttled" in answer.text


def test_alerts_show_an_input_detector_hit_with_its_evidence(site: Site) -> None:
    key = site.key("prober")
    flat = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]}
    answer = site.client.post("/v2/models/digits/infer", json=flat, headers={"X-API-Key": key})
    assert answer.status_code == 200  # the demo's detectors answer a detection with the label only
    site.sign_in(site.key("ops15", admin=True))
    page = site.client.get("/console/alerts").text
    section = page.split('data-principal="prober"')[1].split("</section>")[0]
    assert "detected:" in section and "1 refused or flagged" in section


def test_coverage_counts_a_command_once_its_run_is_on_record(site: Site) -> None:
    from atlasguard.runtime.auditor import Outcome

    site.sign_in(site.key("ops16", admin=True))

    def status(mitigation: str) -> str:
        page = site.client.get("/console/coverage").text
        row = page.split(f"?m={mitigation}#detail")[1].split("</tr>")[0]
        found = re.search(r'<span class="status">([^<]+)</span>', row)
        assert found is not None
        return found[1]

    assert status("AML.M0018") == "available"
    detail = site.client.get("/console/coverage?m=AML.M0018").text
    assert "no run is on record" in detail and "atlasguard labs run" in detail
    outcome = Outcome(action="labs.completed", principal="ops16", details={"lab": "poison"})
    site.gateway.deployment.auditor.record(outcome)
    site.client.app.state.console_evidence = None  # type: ignore[attr-defined]
    assert status("AML.M0018") == "enabled"
    detail = site.client.get("/console/coverage?m=AML.M0018").text
    assert "`atlasguard labs run` ran on" in detail
