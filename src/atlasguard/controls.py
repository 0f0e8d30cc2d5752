"""Controls: the parts of atlasguard that implement ATLAS mitigations.

A control is declared beside the code that implements it, as a module-level
``CONTROLS`` tuple of :class:`Control` values. Each names the ATLAS mitigations
it implements (``mitigates``) and the policy table that turns it on
(``[controls.<key>]``), with a pydantic model for that table's settings.
Coverage is computed from these declarations and a policy, never kept by hand:
a mitigation counts as implemented only when a module that exists declares a
control for it.

>>> from atlasguard.controls import implemented_controls
>>> all(c.mitigates for c in implemented_controls())
True
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from pydantic import BaseModel, ConfigDict

__all__ = [
    "CONTROL_MODULES",
    "Control",
    "ControlSettings",
    "control_by_key",
    "implemented_controls",
]


class ControlSettings(BaseModel):
    """Base of every control's policy table: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    enabled: bool = False


@dataclass(frozen=True, slots=True)
class Control:
    """One control: what it is called in the policy and what it mitigates.

    ``key`` is the policy table (``[controls.<key>]``); ``settings`` validates
    that table; ``enable`` tells a person how to turn the control on, in one
    line; ``default`` is the table ``atlasguard policy init`` writes.
    """

    key: str
    title: str
    mitigates: frozenset[str]
    summary: str
    enable: str
    settings: type[ControlSettings] = ControlSettings

    def __post_init__(self) -> None:
        if not self.mitigates:
            raise ValueError(f"control {self.key!r} mitigates nothing")
        for mid in self.mitigates:
            if not mid.startswith("AML.M"):
                raise ValueError(f"control {self.key!r}: {mid!r} is not an ATLAS mitigation id")


# Modules that declare controls: light ones (pydantic and the standard library), so
# that reading a policy imports no server. A module listed here that does not exist
# yet is skipped, so coverage never claims what is not in the package.
CONTROL_MODULES: tuple[str, ...] = (
    "atlasguard.artifacts.settings",
    "atlasguard.artifacts.safe_load",
    "atlasguard.artifacts.manifest",
    "atlasguard.artifacts.signing",
    "atlasguard.artifacts.encryption",
    "atlasguard.runtime.settings",
    "atlasguard.registry.settings",
    "atlasguard.release.settings",
    "atlasguard.labs.settings",
    "atlasguard.offline",
)


def _declared(modules: Iterable[str]) -> tuple[Control, ...]:
    found: list[Control] = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if missing != name and missing.startswith("atlasguard."):
                raise  # a broken package, not an absent capability
            # Not in the package yet, or its extra (e.g. [gateway]) is not installed:
            # this installation does not implement the control.
            continue
        found.extend(getattr(module, "CONTROLS", ()))
    keys = [c.key for c in found]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"controls declared twice: {', '.join(duplicates)}")
    return tuple(sorted(found, key=lambda c: c.key))


@cache
def implemented_controls() -> tuple[Control, ...]:
    """Every control this installation of atlasguard implements, by key."""
    return _declared(CONTROL_MODULES)


def control_by_key() -> dict[str, Control]:
    """The implemented controls indexed by their policy key."""
    return {c.key: c for c in implemented_controls()}
