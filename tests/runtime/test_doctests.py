"""The runnable examples in the docstrings of the runtime, gateway and registry modules."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "atlasguard.audit.log",
        "atlasguard.gateway.http",
        "atlasguard.gateway.console.sessions",
        "atlasguard.gateway.console.views",
        "atlasguard.gateway.oip",
        "atlasguard.registry.service",
        "atlasguard.registry.settings",
        "atlasguard.runtime.access",
        "atlasguard.runtime.admin",
        "atlasguard.runtime.auditor",
        "atlasguard.runtime.deployment",
        "atlasguard.runtime.evidence",
        "atlasguard.runtime.monitor",
        "atlasguard.runtime.suspensions",
        "atlasguard.models.attacks",
        "atlasguard.models.blackbox",
        "atlasguard.models.data",
        "atlasguard.artifacts.distributed",
        "atlasguard.runtime.pipeline",
        "atlasguard.runtime.plan",
        "atlasguard.runtime.protect",
        "atlasguard.runtime.quotas",
        "atlasguard.runtime.settings",
        "atlasguard.runtime.validate",
    ],
)
def test_module_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0
    assert result.failed == 0
