"""The registry of models and data sets under access control (AML.M0005).

>>> from atlasguard.registry import parse_ref
>>> parse_ref("digits@sha256:" + "0" * 64).digest == "0" * 64
True
"""

from __future__ import annotations

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
