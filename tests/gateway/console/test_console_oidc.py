"""Signing in to the console through an OpenID Connect issuer (code flow with PKCE),
against a real provider over HTTP; and in Chromium, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from atlasguard.gateway.app import create_app
from atlasguard.gateway.console.base import COOKIE
from atlasguard.gateway.console.oidc import FLOW_COOKIE
from atlasguard.gateway.demo import init_project
from atlasguard.gateway.service import Gateway
from atlasguard.policy import load_policy
from tests.gateway.console.conftest import BASE
from tests.gateway.console.idp import Provider
from tests.gateway.jwtdemo import TestIdp


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    root = tmp_path_factory.mktemp("oidc") / "demo"
    init_project(root, demo=True)
    idp = TestIdp(root)
    with Provider(idp) as running:
        config = root / "atlasguard.toml"
        config.write_text(running.policy_text(config.read_text()))
        yield running


@pytest.fixture
def client(provider: Provider) -> Iterator[TestClient]:
    provider.forge = ""
    provider.user = ("alice", ["atlas-admins"])
    gateway = Gateway.from_policy(load_policy(provider.idp.config))
    with TestClient(create_app(gateway), base_url=BASE) as test_client:
        yield test_client


def _sign_in(client: TestClient, *, state: str | None = None) -> httpx.Response:
    """The browser's part: start, visit the provider, come back with its code."""
    start = client.get("/console/oidc/start", follow_redirects=False)
    assert start.status_code == 303
    authorize = start.headers["location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    back = httpx.get(authorize, follow_redirects=False, timeout=10)
    assert back.status_code == 302, back.text
    target = urlsplit(back.headers["location"])
    path = f"{target.path}?{target.query}"
    if state is not None:
        path = path.replace(query["state"][0], state)
    return client.get(path, follow_redirects=False)


def test_the_sign_in_page_offers_the_identity_provider(client: TestClient) -> None:
    assert "/console/oidc/start" in client.get("/console/login").text


def test_an_admin_groups_member_signs_in_and_it_is_audited(client: TestClient) -> None:
    done = _sign_in(client)
    assert done.status_code == 200 and "Signed in" in done.text
    assert 'http-equiv="refresh"' in done.text
    cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}="))
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert client.get("/console/traffic.json").status_code == 200
    audit = client.get("/console/audit?action=console.login").text
    assert "jwt:alice" in audit and "via=oidc:group" in audit


def test_a_store_admin_signs_in_without_the_group(client: TestClient, provider: Provider) -> None:
    gateway: Gateway = client.app.state.gateway  # type: ignore[attr-defined]
    gateway.deployment.identity.ensure_principal("jwt:bob", admin=True)
    provider.user = ("bob", [])
    assert _sign_in(client).status_code == 200
    assert client.get("/console/traffic.json").status_code == 200


def test_someone_outside_the_group_gets_403(client: TestClient, provider: Provider) -> None:
    provider.user = ("carol", ["ml"])
    refused = _sign_in(client)
    assert refused.status_code == 403 and "not an admin" in refused.text
    assert COOKIE not in refused.headers.get("set-cookie", "")
    assert client.get("/console/traffic.json").status_code == 401


@pytest.mark.parametrize("forge", ["nonce", "key", "audience"])
def test_a_token_that_is_not_for_this_sign_in_is_refused(
    client: TestClient, provider: Provider, forge: str
) -> None:
    provider.forge = forge
    refused = _sign_in(client)
    assert refused.status_code == 401
    assert client.get("/console/traffic.json").status_code == 401


def test_a_callback_this_browser_did_not_start_is_refused(client: TestClient) -> None:
    assert _sign_in(client, state="forged-state").status_code == 403
    client.cookies.delete(FLOW_COOKIE, path="/console/oidc")
    stray = client.get("/console/oidc/callback?code=x&state=y", follow_redirects=False)
    assert stray.status_code == 403


def test_without_settings_the_flow_is_off(tmp_path: Path) -> None:
    project = init_project(tmp_path / "demo", demo=True)
    gateway = Gateway.from_policy(load_policy(project.policy_path))
    with TestClient(create_app(gateway), base_url=BASE) as plain:
        assert "/console/oidc/start" not in plain.get("/console/login").text
        start = plain.get("/console/oidc/start", follow_redirects=False)
        assert start.headers["location"] == "/console/login"
        assert plain.get("/console/oidc/callback?code=x&state=y").status_code == 404


def test_chromium_signs_in_through_the_provider(provider: Provider, tmp_path: Path) -> None:
    """The real redirects: console -> provider -> callback -> the console, in Chromium."""
    import shutil
    import threading
    import time

    import uvicorn

    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.gateway.console.test_console_e2e import CHROMIUM, SHOTS
    from tests.gateway.test_http import _free_port

    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: `make test` installs it")
    provider.forge = ""
    provider.user = ("alice", ["atlas-admins"])
    port = _free_port()
    app = create_app(Gateway.from_policy(load_policy(provider.idp.config)))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/console/login")
            page.click("text=Sign in with your identity provider")
            page.wait_for_url("**/console/coverage", timeout=15000)
            assert "jwt:alice" in page.inner_text("header")
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "10-signed-in-through-oidc.png"))
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=15)
