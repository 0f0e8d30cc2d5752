"""The registry of models and data sets under access control (AML.M0005).

The names below load their modules on first use, so that importing
:mod:`atlasguard.registry.settings` (as reading a policy does) stays light.

>>> from atlasguard.registry import parse_ref
>>> parse_ref("digits@sha256:" + "0" * 64).digest == "0" * 64
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atlasguard.registry.access import AccessDeniedError, Decision, decide
    from atlasguard.registry.model import Kind, ObjectRef, RegistryObject, Version, parse_ref

__all__ = [
    "AccessDeniedError",
    "Decision",
    "Kind",
    "ObjectRef",
    "RegistryObject",
    "Version",
    "decide",
    "parse_ref",
]

_HOMES = {
    "AccessDeniedError": "atlasguard.registry.access",
    "Decision": "atlasguard.registry.access",
    "decide": "atlasguard.registry.access",
    "Kind": "atlasguard.registry.model",
    "ObjectRef": "atlasguard.registry.model",
    "RegistryObject": "atlasguard.registry.model",
    "Version": "atlasguard.registry.model",
    "parse_ref": "atlasguard.registry.model",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'atlasguard.registry' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
