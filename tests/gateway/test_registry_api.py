"""``/v1/registry`` over HTTP: the same identities, deny by default, every read audited."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from atlasguard.artifacts.keys import load_private_key
from atlasguard.artifacts.signing import sign_model
from atlasguard.gateway.app import create_app
from atlasguard.gateway.demo import init_project
from atlasguard.gateway.service import Gateway
from atlasguard.policy import load_policy
from tests.corpus.malicious import build_pickle_tricks

DEFAULT_MAX_PUSH_BYTES = 2 << 30  # [controls.registry] max_push_bytes by default


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("reg") / "demo"
    init_project(root, demo=True)
    policy = load_policy(root / "atlasguard.toml")
    gateway = Gateway.from_policy(policy)
    assert gateway.registry is not None
    ops = gateway.deployment.identity.create_key("ops", admin=True).secret
    ann = gateway.deployment.identity.create_key("ann").secret
    bob = gateway.deployment.identity.create_key("bob").secret
    eve = gateway.deployment.identity.create_key("eve").secret
    gateway.registry.push("ops", "digits", root / "models/digits", "model")
    gateway.registry.grant("ops", "ann", "digits", "reader")
    gateway.registry.grant("ops", "eve", "up-*", "editor")
    # A real Uvicorn server on a free loopback port, in a thread of this process.
    with _served(gateway) as (client, port):
        yield {
            "client": client,
            "ops": ops,
            "ann": ann,
            "bob": bob,
            "eve": eve,
            "gateway": gateway,
            "port": port,
            "root": root,
        }


@contextmanager
def _served(gateway: Gateway) -> Iterator[tuple[httpx.Client, int]]:
    """The gateway's app on a real Uvicorn server, on a free loopback port in a thread."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(gateway), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client, port
    finally:
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
    actions = [r.action for _, r in setup["gateway"].deployment.audit.records()]
    assert "registry.pull" in actions and "registry.list" in actions


def test_bad_refs_are_4xx(setup: dict[str, Any]) -> None:
    res = setup["client"].get("/v1/registry/bad@@ref", headers=_h(setup["ann"]))
    assert 400 <= res.status_code < 500


# -- push -------------------------------------------------------------------------


def _tar(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _push(
    setup: dict[str, Any],
    who: str,
    name: str,
    body: bytes,
    media: str,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> httpx.Response:
    return setup["client"].post(
        f"/v1/registry/{name}",
        content=body,
        params=params,
        headers={**_h(setup[who]), "Content-Type": media, **(headers or {})},
    )


def _signed(data: bytes, setup: dict[str, Any], tmp_path: Path) -> str:
    """The demo's signature of ``data`` as one file, for X-Atlasguard-Signature."""
    file = tmp_path / "file"
    file.write_bytes(data)
    key = load_private_key(setup["root"] / "keys/private.pem")
    return base64.b64encode(sign_model(file, key).read_bytes()).decode()


def test_push_a_file_then_pull_it(setup: dict[str, Any], tmp_path: Path) -> None:
    data = b"x,y\n1,2\n3,4\n"
    unsigned = _push(setup, "eve", "up-data", data, "application/octet-stream", kind="dataset")
    assert unsigned.status_code == 422, unsigned.text  # the demo requires signatures
    assert "signature" in unsigned.json()["error"]
    signature = _signed(data, setup, tmp_path)
    forged = _push(
        setup,
        "eve",
        "up-data",
        data + b"5,6\n",
        "application/octet-stream",
        kind="dataset",
        headers={"X-Atlasguard-Signature": signature},
    )
    assert forged.status_code == 422, forged.text
    res = _push(
        setup,
        "eve",
        "up-data",
        data,
        "application/octet-stream",
        headers={"X-Atlasguard-Signature": signature},
        kind="dataset",
        description="two rows",
        tags=["csv", "tiny"],
        metadata=["source=test", "rows=2"],
        lineage=["digits@1"],
    )
    assert res.status_code == 201, res.text
    version = res.json()["version"]
    assert version["number"] == 1 and version["kind"] == "dataset" and version["layout"] == "file"
    assert version["created_by"] == "eve"
    assert version["metadata"] == {"rows": "2", "source": "test"}
    assert version["lineage"] == ["digits@1"]
    client = setup["client"]
    shown = client.get("/v1/registry/up-data", headers=_h(setup["eve"])).json()
    assert shown["object"]["description"] == "two rows"
    assert shown["object"]["tags"] == ["csv", "tiny"]
    listed = client.get("/v1/registry", headers=_h(setup["eve"])).json()
    assert "up-data" in [o["name"] for o in listed]
    pulled = client.get("/v1/registry/up-data@1/content", headers=_h(setup["eve"]))
    assert pulled.status_code == 200, pulled.text
    with tarfile.open(fileobj=io.BytesIO(pulled.content)) as tar:
        member = tar.extractfile("up-data")
        assert member is not None and member.read() == data
    again = _push(
        setup,
        "eve",
        "up-data",
        data,
        "application/octet-stream",
        kind="dataset",
        headers={"X-Atlasguard-Signature": signature},
    )
    assert again.json()["version"]["number"] == 1  # same bytes: the same version


def test_push_a_directory_as_the_tar_content_returns(setup: dict[str, Any]) -> None:
    client = setup["client"]
    original = client.get("/v1/registry/digits@1/content", headers=_h(setup["ann"]))
    res = _push(setup, "eve", "up-model", original.content, "application/x-tar")
    assert res.status_code == 201, res.text
    assert res.json()["version"]["layout"] == "dir"
    digits = client.get("/v1/registry/digits@1", headers=_h(setup["ann"])).json()
    assert res.json()["version"]["digest"] == digits["version"]["digest"]  # the same files
    pulled = client.get("/v1/registry/up-model@1/content", headers=_h(setup["eve"]))
    with tarfile.open(fileobj=io.BytesIO(pulled.content)) as tar:
        assert "up-model/model.onnx" in tar.getnames()
    # A tar of the directory's contents (no top-level folder) is the same object.
    with tarfile.open(fileobj=io.BytesIO(original.content)) as tar:
        flat = {
            m.name.split("/", 1)[1]: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }
    res2 = _push(setup, "eve", "up-model", _tar(flat), "application/x-tar")
    assert res2.json()["version"]["digest"] == digits["version"]["digest"]


def test_push_refused_without_a_writer_grant(setup: dict[str, Any]) -> None:
    client = setup["client"]
    body = b"not allowed"
    assert (
        client.post(
            "/v1/registry/digits",
            content=body,
            headers={"Content-Type": "application/octet-stream"},
        ).status_code
        == 401
    )
    reader = _push(setup, "ann", "digits", body, "application/octet-stream")
    assert reader.status_code == 403, reader.text
    real = _push(setup, "bob", "digits", body, "application/octet-stream")
    ghost = _push(setup, "bob", "ghost", body, "application/octet-stream")
    assert real.status_code == ghost.status_code == 403
    # Pushing to an existing object or creating one: the same answer.
    assert real.json()["error"].replace("digits", "X") == ghost.json()["error"].replace(
        "ghost", "X"
    )
    latest = client.get("/v1/registry/digits", headers=_h(setup["ann"])).json()
    assert latest["version"]["number"] == 1
    denied = [
        r
        for _, r in setup["gateway"].deployment.audit.records()
        if r.action in {"registry.push", "registry.create"} and r.decision == "deny"
    ]
    assert {r.principal for r in denied} >= {"ann", "bob"}


def test_push_of_a_malicious_pickle_is_refused_with_findings(
    setup: dict[str, Any], tmp_path: Path
) -> None:
    canary = tmp_path / "canary" / "CANARY"
    sample = build_pickle_tricks(tmp_path / "m", canary)[0]
    res = _push(setup, "eve", "up-evil", sample.path.read_bytes(), "application/octet-stream")
    assert res.status_code == 422, res.text
    doc = res.json()
    assert doc["reason"] == "unsafe"
    assert doc["findings"], doc
    assert all(f["file"] == "up-evil" for f in doc["findings"]), doc["findings"]
    assert {"rule", "severity", "message"} <= set(doc["findings"][0])
    assert any(f["severity"] in ("high", "critical") for f in doc["findings"])
    assert "atlasguard-push-" not in res.text  # no server paths
    assert tempfile.gettempdir() not in res.text
    assert not canary.exists()
    listed = setup["client"].get("/v1/registry", headers=_h(setup["eve"])).json()
    assert "up-evil" not in [o["name"] for o in listed]
    # The same inside a directory.
    res = _push(
        setup,
        "eve",
        "up-evil",
        _tar({"model/weights.pkl": sample.path.read_bytes()}),
        "application/x-tar",
    )
    assert res.status_code == 422 and res.json()["findings"], res.text


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "device", "fifo"])
def test_push_of_an_unsafe_tar_is_refused(setup: dict[str, Any], kind: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ok = tarfile.TarInfo("model/ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        bad = tarfile.TarInfo(
            {"dotdot": "model/../../escaped.txt", "absolute": "/tmp/escaped.txt"}.get(
                kind, "model/bad"
            )
        )
        if kind in {"dotdot", "absolute"}:
            bad.size = 4
            tar.addfile(bad, io.BytesIO(b"evil"))
        else:
            bad.type = {
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "device": tarfile.CHRTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            bad.linkname = "/etc/passwd"
            tar.addfile(bad)
    res = _push(setup, "eve", f"up-{kind}", buf.getvalue(), "application/x-tar")
    assert res.status_code == 400, res.text
    assert "refused" in res.json()["error"]
    assert not Path(tempfile.gettempdir(), "escaped.txt").exists()
    listed = setup["client"].get("/v1/registry", headers=_h(setup["eve"])).json()
    assert f"up-{kind}" not in [o["name"] for o in listed]


def test_push_needs_a_known_body_type_and_valid_parameters(setup: dict[str, Any]) -> None:
    assert _push(setup, "eve", "up-x", b"data", "text/plain").status_code == 415
    assert _push(setup, "eve", "up-x", b"data", "application/x-tar").status_code == 400
    bad_meta = _push(setup, "eve", "up-x", b"d", "application/octet-stream", metadata=["nokey"])
    assert bad_meta.status_code == 400
    bad_lineage = _push(setup, "eve", "up-x", b"d", "application/octet-stream", lineage=["a@@b"])
    assert bad_lineage.status_code == 400
    bad_kind = _push(setup, "eve", "up-x", b"d", "application/octet-stream", kind="script")
    assert bad_kind.status_code == 400
    too_many = _push(setup, "eve", "up-x", b"d", "application/octet-stream", tags=["t"] * 101)
    assert too_many.status_code == 400
    assert _push(setup, "eve", "bad name", b"d", "application/octet-stream").status_code == 400


def test_push_past_the_declared_limit_is_413_before_the_body(setup: dict[str, Any]) -> None:
    # Only the headers are sent: the answer must come without waiting for 4 GiB.
    with socket.create_connection(("127.0.0.1", setup["port"]), timeout=30) as sock:
        sock.sendall(
            (
                "POST /v1/registry/up-big HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {setup['eve']}\r\n"
                "Content-Type: application/octet-stream\r\n"
                f"Content-Length: {2 * DEFAULT_MAX_PUSH_BYTES}\r\n\r\n"
            ).encode()
        )
        assert sock.recv(4096).split(b"\r\n", 1)[0].endswith(b"413 Request Entity Too Large")


def test_push_past_the_limit_while_streaming_is_413_and_leaves_nothing(
    setup: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    gateway = setup["gateway"]
    policy = gateway.deployment.policy
    small_pushes = policy.settings("registry").model_copy(update={"max_push_bytes": 1000})
    controls = {**policy.controls, "registry": small_pushes}
    monkeypatch.setattr(
        gateway.deployment, "policy", dataclasses.replace(policy, controls=controls)
    )
    app = create_app(gateway)

    signature = _signed(b"y" * 900, setup, tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: only the count can stop it
        for _ in range(10):
            yield b"x" * 500

    async def run() -> tuple[int, httpx.Response]:
        headers = {**_h(setup["eve"]), "Content-Type": "application/octet-stream"}
        signed = {**headers, "X-Atlasguard-Signature": signature}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            big = await client.post("/v1/registry/up-big", content=chunks(), headers=headers)
            small = await client.post("/v1/registry/up-small", content=b"y" * 900, headers=signed)
        return big.status_code, small

    big, small = asyncio.run(run())
    assert big == 413
    assert small.status_code == 201, small.text
    assert list(scratch.iterdir()) == []  # every upload directory removed


def test_push_refused_before_the_upload_is_read(setup: dict[str, Any]) -> None:
    """A reader declaring a 1 GiB body is answered 403 without the server waiting for it."""
    with socket.create_connection(("127.0.0.1", setup["port"]), timeout=10) as sock:
        sock.sendall(
            (
                "POST /v1/registry/digits HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {setup['ann']}\r\n"
                "Content-Type: application/octet-stream\r\n"
                f"Content-Length: {1 << 30}\r\n\r\n"
            ).encode()
            + b"\0" * 1024
        )
        head = sock.recv(4096).decode("latin-1")  # times out (fails) if the server waits
    assert head.startswith("HTTP/1.1 403"), head
    denied = [
        r
        for _, r in setup["gateway"].deployment.audit.records()
        if r.action == "registry.push" and r.principal == "ann" and r.decision == "deny"
    ]
    assert denied


def test_registry_routes_honour_the_groups_a_token_asserts(tmp_path: Path) -> None:
    from tests.gateway.jwtdemo import TestIdp

    root = tmp_path / "demo"
    init_project(root, demo=True)
    idp = TestIdp(root, groups_claim="groups")
    gateway = Gateway.from_policy(load_policy(idp.config))
    assert gateway.registry is not None
    gateway.deployment.identity.ensure_principal("ops", admin=True)
    gateway.registry.push("ops", "digits", root / "models/digits", "model")
    gateway.registry.grant("ops", "group:ml", "digits", "reader")

    def token(groups: list[str]) -> str:
        return idp.token("hana", groups=groups)

    with _served(gateway) as (client, _port):
        member = {"Authorization": f"Bearer {token(['ml'])}"}
        outsider = {"Authorization": f"Bearer {token(['sales'])}"}
        listed = client.get("/v1/registry", headers=member)
        assert [o["name"] for o in listed.json()] == ["digits"]
        assert client.get("/v1/registry", headers=outsider).json() == []
        assert client.get("/v1/registry/digits@1/content", headers=member).status_code == 200
        assert client.get("/v1/registry/digits@1/content", headers=outsider).status_code == 403
        pushed = client.post(
            "/v1/registry/digits",
            content=b"x",
            headers={**member, "Content-Type": "application/octet-stream"},
        )
        assert pushed.status_code == 403  # reader through the group: no push


def test_refusals_decided_before_the_registry_are_audited_too(setup: dict[str, Any]) -> None:
    client = setup["client"]

    def denials() -> list[tuple[str, str, str]]:
        return [
            (r.principal, r.action, r.reason)
            for _, r in setup["gateway"].deployment.audit.records()
            if r.decision == "deny"
        ]

    before = denials()
    assert client.get("/v1/registry/digits@1").status_code == 401
    bad_tar = _push(setup, "eve", "up-badtar", b"not a tar at all", "application/x-tar")
    assert bad_tar.status_code == 400
    wrong_type = _push(setup, "eve", "up-type", b"x", "text/plain")
    assert wrong_type.status_code == 415
    new = denials()[len(before) :]
    assert ("-", "registry.show", "unauthenticated") in new
    assert ("eve", "registry.push", "malformed") in new
    assert ("eve", "registry.push", "unsupported-media") in new
