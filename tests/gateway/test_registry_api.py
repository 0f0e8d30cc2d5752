"""``/v1/registry`` over HTTP: the same identities, deny by default, every read audited."""

from __future__ import annotations

import io
import tarfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from atlasguard.gateway.app import create_app
from atlasguard.gateway.demo import init_project
from atlasguard.gateway.service import Gateway
from atlasguard.policy import load_policy


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("reg") / "demo"
    init_project(root, demo=True)
    policy = load_policy(root / "atlasguard.toml")
    gateway = Gateway.from_policy(policy)
    assert gateway.registry is not None
    ops = gateway.identity.create_key("ops", admin=True).secret
    ann = gateway.identity.create_key("ann").secret
    bob = gateway.identity.create_key("bob").secret
    gateway.registry.push("ops", "digits", root / "models/digits", "model")
    gateway.registry.grant("ops", "ann", "digits", "reader")
    # A real Uvicorn server on a free loopback port, in a thread of this process.
    server = uvicorn.Server(
        uvicorn.Config(create_app(gateway), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield {"client": client, "ops": ops, "ann": ann, "bob": bob, "gateway": gateway}
    server.should_exit = True
    thread.join(timeout=30)


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_list_and_show_need_credentials_and_a_grant(setup: dict[str, Any]) -> None:
    client = setup["client"]
    assert client.get("/v1/registry").status_code == 401
    assert [o["name"] for o in client.get("/v1/registry", headers=_h(setup["ann"])).json()] == [
        "digits"
    ]
    assert client.get("/v1/registry", headers=_h(setup["bob"])).json() == []
    shown = client.get("/v1/registry/digits@1", headers=_h(setup["ann"]))
    assert shown.status_code == 200
    assert len(shown.json()["version"]["digest"]) == 64  # hex SHA-256 of the manifest
    real = client.get("/v1/registry/digits@1", headers=_h(setup["bob"]))
    ghost = client.get("/v1/registry/ghost@1", headers=_h(setup["bob"]))
    assert real.status_code == ghost.status_code == 403
    assert real.json()["error"].replace("digits", "X") == ghost.json()["error"].replace(
        "ghost", "X"
    )


def test_content_is_the_verified_object(setup: dict[str, Any]) -> None:
    client = setup["client"]
    res = client.get("/v1/registry/digits@1/content", headers=_h(setup["ann"]))
    assert res.status_code == 200, res.text
    with tarfile.open(fileobj=io.BytesIO(res.content)) as tar:
        names = tar.getnames()
    assert "digits/model.onnx" in names
    assert client.get("/v1/registry/digits@1/content", headers=_h(setup["bob"])).status_code == 403


def test_promote_needs_a_manager(setup: dict[str, Any]) -> None:
    client = setup["client"]
    assert (
        client.post(
            "/v1/registry/digits@1/promote", json={"alias": "production"}, headers=_h(setup["ann"])
        ).status_code
        == 403
    )
    ok = client.post(
        "/v1/registry/digits@1/promote", json={"alias": "production"}, headers=_h(setup["ops"])
    )
    assert ok.status_code == 200, ok.text
    shown = client.get("/v1/registry/digits@production", headers=_h(setup["ann"])).json()
    assert shown["version"]["number"] == 1


def test_every_read_is_audited(setup: dict[str, Any]) -> None:
    actions = [r.action for _, r in setup["gateway"].audit.records()]
    assert "registry.pull" in actions and "registry.list" in actions


def test_bad_refs_are_4xx(setup: dict[str, Any]) -> None:
    res = setup["client"].get("/v1/registry/bad@@ref", headers=_h(setup["ann"]))
    assert 400 <= res.status_code < 500
