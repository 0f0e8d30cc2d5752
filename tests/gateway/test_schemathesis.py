"""Property test of the HTTP API from its own OpenAPI document (schemathesis).

Generated requests, with a valid user key, an admin key, and no credentials:
the gateway never answers 5xx; without credentials every route but the public
health and server-metadata ones answers exactly 401 — nothing in the request
was parsed or validated first, and nothing about its shape is revealed; and
every request to a non-public route leaves exactly one audit record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("onnxruntime")

from hypothesis import HealthCheck, settings  # noqa: E402

from atlasguard.gateway.app import create_app  # noqa: E402
from atlasguard.gateway.demo import init_project  # noqa: E402
from atlasguard.gateway.service import Gateway  # noqa: E402
from atlasguard.policy import load_policy  # noqa: E402

PUBLIC = {"/v2/health/live", "/v2/health/ready", "/v2", "/openapi.json"}
_STATE: dict[str, Any] = {}


def _app() -> Any:
    if "app" not in _STATE:
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="ag-schemathesis-")) / "demo"
        project = init_project(root, demo=True)
        text = project.policy_path.read_text(encoding="utf-8")
        # quotas out of the way: this test is about the API's answers, not its limits
        text = text.replace('rate = "10/second"', 'rate = "100000/second"')
        text = text.replace("burst = 20", "burst = 100000")
        project.policy_path.write_text(text, encoding="utf-8")
        gateway = Gateway.from_policy(load_policy(project.policy_path))
        _STATE.update(
            app=create_app(gateway), gateway=gateway, user=project.demo_key, admin=project.admin_key
        )
    return _STATE["app"]


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@pytest.mark.parametrize("who", ["none", "user", "admin"])
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_no_unauthorised_2xx(case: Any, who: str) -> None:
    headers = dict(case.headers or {})
    headers.pop("Authorization", None)
    if who != "none":
        headers["Authorization"] = f"Bearer {_STATE[who]}"
    case.headers = headers
    audit = _STATE["gateway"].deployment.audit
    before = audit.size()
    response = case.call()
    assert response.status_code < 500, (case.path, case.body, response.text)
    if response.status_code == 405:  # a method no route takes: the framework answers
        assert audit.size() == before
        return
    public = case.path in PUBLIC
    if who == "none" and not public:
        assert response.status_code == 401, (case.method, case.path, response.text)
        assert '"loc"' not in response.text and '"msg"' not in response.text
    assert audit.size() - before == (0 if public else 1), (case.method, case.path, who)
