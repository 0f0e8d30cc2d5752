"""The class behind issue 11's first finding, over every route of the OpenAPI document:
nothing is read, parsed or validated before the caller is authenticated, every body is
bounded, and every refusal is an audit record."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

pytest.importorskip("onnxruntime")

from atlasguard.gateway.app import create_app
from atlasguard.gateway.demo import init_project
from atlasguard.gateway.protocol import GuardedHttpToolsProtocol
from atlasguard.gateway.service import Gateway
from atlasguard.policy import load_policy

# Liveness, readiness and server metadata name no model and need no credential (probes).
PUBLIC = {("get", "/v2/health/live"), ("get", "/v2/health/ready"), ("get", "/v2")}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    project = init_project(tmp_path_factory.mktemp("pre") / "demo", demo=True)
    gateway = Gateway.from_policy(load_policy(project.policy_path))
    app = create_app(gateway)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="error", http=GuardedHttpToolsProtocol
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield {"port": port, "app": app, "gateway": gateway, "user": project.demo_key}
    finally:
        server.should_exit = True
        thread.join(30)


def _routes(app: Any) -> list[tuple[str, str]]:
    out = []
    for path, item in app.openapi()["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        out += [(method, concrete) for method in item if (method, path) not in PUBLIC]
    return sorted(out)


def _raw(port: int, method: str, path: str, headers: str, body: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"{method.upper()} {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        if body:
            sock.sendall(body)
        return sock.recv(65536)  # times out (fails) if the server waits for the rest


def test_the_document_lists_the_routes_this_test_covers(served: dict[str, Any]) -> None:
    routes = _routes(served["app"])
    assert ("post", "/v2/models/x/infer") in routes
    assert ("post", "/v1/registry/x/promote") in routes
    assert ("post", "/v1/admin/keys") in routes
    assert ("get", "/metrics") in routes
    assert len(routes) >= 12


def test_no_route_waits_for_a_body_before_authentication(served: dict[str, Any]) -> None:
    """A declared 1 GiB body, of which 1 KiB is sent: the answer is 401 at once."""
    for method, path in _routes(served["app"]):
        headers = (
            "Content-Type: application/json\r\n"
            f"Content-Length: {1 << 30}\r\n"
            "X-Atlasguard-Signature: !!!\r\n"
        )
        answer = _raw(served["port"], method, path + "?kind=zz&tags=1", headers, b"{" * 1024)
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.endswith((b"401 Unauthorized", b"405 Method Not Allowed")), (
            method,
            path,
            answer[:300],
        )
        # Nothing about the route's parameters or body is revealed.
        for word in (b'"loc"', b'"msg"', b"field required", b"alias", b"schema"):
            assert word not in answer, (method, path, answer[:300])


def test_every_refusal_before_authentication_is_an_audit_record(
    served: dict[str, Any],
) -> None:
    audit = served["gateway"].deployment.audit
    routes = _routes(served["app"])
    before = audit.size()
    for method, path in routes:
        _raw(served["port"], method, path, "Content-Length: 0\r\nConnection: close\r\n")
    new = [r for i, r in audit.records() if i >= before]
    assert len(new) == len(routes)
    assert {(r.principal, r.decision, r.reason) for r in new} == {("-", "deny", "unauthenticated")}


def test_a_credential_does_not_lift_the_body_bounds(served: dict[str, Any]) -> None:
    """Authenticated: bodies past each route's bound are refused with 413 before they arrive."""
    user = served["user"]
    for path, limit in (
        ("/v2/models/digits/infer", 8 << 20),
        ("/v1/registry/x/promote", 4096),
        ("/v1/admin/keys", 64 * 1024),
    ):
        headers = (
            f"Authorization: Bearer {user}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {limit + 1}\r\n"
        )
        answer = _raw(served["port"], "post", path, headers, b"{")
        first = answer.split(b"\r\n", 1)[0]
        # The demo user may not promote or administer: those are refused before the body.
        assert first.endswith((b"413 Request Entity Too Large", b"403 Forbidden")), (path, answer)
