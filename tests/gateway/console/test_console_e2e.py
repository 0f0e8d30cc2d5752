"""The console end to end: a real server (``atlasguard serve``) over the demo deployment,
driven in headless Chromium (Debian's package, through Playwright) as an admin would.

Sign in, look at each page, watch traffic arrive live, revoke an attacker's key from
its alert and see its next request get 401, sign a checkpoint and verify the chain,
prove a record, and sign out. A screenshot of each page goes to
``build/console-screenshots/`` (or ``$ATLASGUARD_SCREENSHOTS``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

pytest.importorskip("onnxruntime")
playwright = pytest.importorskip("playwright.sync_api")

from atlasguard.gateway.demo import Project, init_project  # noqa: E402
from tests.gateway.console.conftest import digit  # noqa: E402
from tests.gateway.test_http import _start  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(
    os.environ.get(
        "ATLASGUARD_SCREENSHOTS", Path(__file__).parents[3] / "build" / "console-screenshots"
    )
)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atlasguard", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@dataclass
class Server:
    url: str
    project: Project
    directory: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Debian's chromium is not installed: `make test` installs it (apt-get install chromium)"
        )
    directory = tmp_path_factory.mktemp("e2e") / "demo"
    project = init_project(directory, demo=True)
    # What a user would have done before opening the console: a lab run and a model in the registry.
    lab = _cli(
        "labs",
        "run",
        "evasion",
        "--quick",
        "--answers",
        "1,1,1",
        "--who",
        "admin",
        "--policy",
        "atlasguard.toml",
        "-o",
        "results",
        cwd=directory,
    )
    assert lab.returncode == 0, lab.stdout + lab.stderr
    pushed = _cli(
        "registry",
        "push",
        "digits",
        "models/digits",
        "-p",
        "admin",
        "--framework",
        "onnx",
        cwd=directory,
    )
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    proc, port = _start(directory)
    try:
        yield Server(f"http://127.0.0.1:{port}", project, directory)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[object]:
    with playwright.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def _shot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def _infer(
    server: Server, key: str | None, index: int, *, noise: float = 0.0, seed: int = 0
) -> int:
    headers = {"X-API-Key": key} if key else {}
    answer = httpx.post(
        f"{server.url}/v2/models/digits/infer",
        json=digit(index, noise=noise, seed=seed),
        headers=headers,
        timeout=10,
    )
    return answer.status_code


def test_an_admin_walks_through_the_console(server: Server, browser: object) -> None:
    admin_key, user_key = server.project.admin_key, server.project.demo_key
    assert admin_key and user_key
    context = browser.new_context(viewport={"width": 1440, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: d.accept())

    # Sign in: the console sends a stranger to its sign-in page.
    page.goto(f"{server.url}/console/traffic")
    assert page.url.endswith("/console/login")
    _shot(page, "01-login")
    page.fill("#credential", admin_key)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/coverage")
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["atlasguard_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["value"] != admin_key
    assert "atlasguard_console" not in page.evaluate("document.cookie")

    # Coverage: the matrix from the live policy; a mitigation's controls and settings.
    assert page.locator(".matrix .cell").count() > 50
    page.click("text=AML.M0004")
    page.wait_for_selector("#detail")
    assert "[controls.quotas] enabled" in page.inner_text("#detail")
    _shot(page, "02-coverage")

    # Traffic: requests sent now appear without a reload.
    page.click("nav >> text=Traffic")
    page.wait_for_url("**/console/traffic")
    before = int(page.inner_text("#total"))
    for i in range(5):
        assert _infer(server, user_key, 40 + i) == 200
    assert _infer(server, None, 45) == 401
    deadline = time.monotonic() + 15  # polled from here: the page's CSP forbids eval
    while int(page.inner_text("#total")) < before + 6 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert int(page.inner_text("#total")) >= before + 6
    assert page.url.endswith("/console/traffic")  # updated in place
    assert int(page.inner_text("[data-outcome='401']")) >= 1
    assert "demo" in page.inner_text("#principals")
    _shot(page, "03-traffic")

    # Alerts: an attacker sends near-copies; the monitor suspends it; the admin revokes its key.
    created = httpx.post(
        f"{server.url}/v1/admin/keys",
        json={"principal": "mallory", "models": ["digits"]},
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=10,
    )
    assert created.status_code == 201
    mallory = created.json()["key"]
    codes = [_infer(server, mallory, 7, noise=0.02, seed=i) for i in range(12)]
    assert 403 in codes
    alert = page.locator("section.alert[data-principal='mallory']")
    for _ in range(50):
        page.goto(f"{server.url}/console/alerts")
        if alert.count():
            break
        time.sleep(0.2)
    assert "Suspended" in alert.inner_text() and "near-copies" in alert.inner_text()
    assert "Active keys: 1" in alert.inner_text()
    _shot(page, "04-alerts")
    alert.locator("button:has-text('Revoke keys')").click()
    page.wait_for_selector("p.done")
    assert "revoked 1 key(s) of mallory" in page.inner_text("p.done")
    assert _infer(server, mallory, 8) == 401

    # Audit: sign a checkpoint, verify the chain, prove a record.
    page.click("nav >> text=Audit")
    page.click("button:has-text('Sign a checkpoint now')")
    page.wait_for_selector("p.done")
    page.click("text=Verify the chain")
    page.wait_for_selector("#verified")
    assert page.inner_text("#verified").startswith("Verified:")
    page.fill("input[name=principal]", "admin")
    page.fill("input[name=action]", "admin.keys")
    page.click("button:has-text('Filter')")
    assert "admin.keys.revoke" in page.inner_text("table.records")
    _shot(page, "05-audit")
    page.locator("table.records a:has-text('proof')").first.click()
    page.wait_for_selector("#proof-result")
    assert page.inner_text("#proof-result").startswith("Proved")
    _shot(page, "06-proof")

    # Registry: the served model and what the registry holds.
    page.click("nav >> text=Registry")
    assert "digits" in page.inner_text("main") and "passed at push" in page.inner_text("main")
    _shot(page, "07-registry")

    # Efficacy: the lab run recorded in this deployment, its results file and plot.
    page.click("nav >> text=Efficacy")
    text = page.inner_text("main")
    assert "evasion" in text and "atlasguard labs run evasion" in text
    loaded = page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert loaded and page.locator(".plots img").count() >= 1
    _shot(page, "08-efficacy")

    # Sign out: the session ends.
    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/console/login")
    page.goto(f"{server.url}/console/audit")
    assert page.url.endswith("/console/login")
    assert not problems, problems  # no CSP violation, no script error
    context.close()


def test_a_non_admin_gets_403_in_the_browser(server: Server, browser: object) -> None:
    key = server.project.demo_key
    assert key
    context = browser.new_context(extra_http_headers={"X-API-Key": key})  # type: ignore[attr-defined]
    page = context.new_page()
    for path in (
        "/console",
        "/console/coverage",
        "/console/traffic",
        "/console/alerts",
        "/console/audit",
        "/console/registry",
        "/console/efficacy",
        "/console/login",
    ):
        answer = page.goto(f"{server.url}{path}")
        assert answer is not None and answer.status == 403, path
    assert "admin only" in page.inner_text("main")
    _shot(page, "09-forbidden")
    context.close()
