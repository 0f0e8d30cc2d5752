"""Property test of the HTTP API from its own OpenAPI document (schemathesis).

Generated requests, with a valid user key, an admin key, and no credentials:
the gateway never answers 5xx, and never answers 2xx to a request without
valid credentials on anything but the public health, server-metadata and
metrics routes.
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

PUBLIC = {"/v2/health/live", "/v2/health/ready", "/v2", "/metrics", "/openapi.json"}
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
    response = case.call()
    assert response.status_code < 500, (case.path, case.body, response.text)
    if who == "none" and case.path not in PUBLIC:
        assert not 200 <= response.status_code < 300, (case.path, response.status_code)
