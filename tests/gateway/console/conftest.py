"""The console's fixtures: a demo deployment, its app in process, and signing in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("jinja2")
pytest.importorskip("onnxruntime")

from starlette.testclient import TestClient

from atlasguard.gateway.app import create_app
from atlasguard.gateway.demo import Project, init_project
from atlasguard.gateway.service import Gateway
from atlasguard.policy import load_policy

BASE = "http://127.0.0.1:8000"


@dataclass
class Site:
    project: Project
    gateway: Gateway
    client: TestClient

    def key(
        self, principal: str, *, admin: bool = False, models: tuple[str, ...] = ("digits",)
    ) -> str:
        issued = self.gateway.deployment.admin.create_key(
            "tests", principal, models=list(models) if not admin else [], admin=admin
        )
        assert issued is not None
        return issued.secret

    def sign_in(self, key: str) -> str:
        """Sign in through the form; the CSRF token of the session."""
        page = self.client.get("/console/login")
        nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
        assert nonce is not None
        answer = self.client.post(
            "/console/login",
            data={"nonce": nonce[1], "credential": key},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/console/coverage"
        return self.csrf()

    def csrf(self) -> str:
        page = self.client.get("/console/alerts")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None, page.text
        return token[1]


def digit(index: int = 0, noise: float = 0.0, seed: int = 0) -> dict[str, object]:
    """An inference request for one of scikit-learn's digits (scaled to [0, 1])."""
    import numpy as np
    from sklearn.datasets import load_digits

    x = load_digits().data[index] / 16.0
    if noise:
        x = np.clip(x + np.random.default_rng(seed).normal(0, noise, x.shape), 0, 1)
    data = [float(v) for v in x]
    return {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": data}]}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return init_project(tmp_path_factory.mktemp("console") / "demo", demo=True)


@pytest.fixture
def site(project: Project) -> Iterator[Site]:
    gateway = Gateway.from_policy(load_policy(project.policy_path))
    with TestClient(create_app(gateway), base_url=BASE) as client:
        yield Site(project, gateway, client)


@pytest.fixture
def demo_dir(project: Project) -> Path:
    return project.policy_path.parent
