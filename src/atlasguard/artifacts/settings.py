"""``[controls.scan]``, the model-file scan's policy table (a declaration: pydantic only).

Kept apart from :mod:`atlasguard.artifacts.scan` so that scanning imports no
policy machinery and reading a policy imports no scanner.

>>> ScanSettings().fail_on
'high'
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from atlasguard.artifacts.allowlist import parse_allow_entry
from atlasguard.controls import Control, ControlSettings
from atlasguard.errors import UsageError

__all__ = ["CONTROLS", "ScanSettings"]


class ScanSettings(ControlSettings):
    """``[controls.scan]``: the threshold that fails a scan, what the user allowed.

    ``allow`` holds ``module.Name`` pickle imports and ``sha256:<digest>`` entries
    that allow the code of a model folder (the digest a ``model-code`` finding names).
    """

    fail_on: Literal["critical", "high", "medium", "low"] = "high"
    allow: tuple[str, ...] = ()

    @field_validator("allow")
    @classmethod
    def _valid_entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return tuple(parse_allow_entry(v) for v in value)
        except UsageError as exc:
            raise ValueError(str(exc)) from None


CONTROLS = (
    Control(
        key="scan",
        title="Model-file scanning",
        mitigates=frozenset({"AML.M0016"}),
        summary="Scans model files of every common format by content, with an allow-list "
        "pickle analysis, and fails on findings at or above a threshold.",
        enable="run `atlasguard scan PATH` in CI, or set [controls.scan] enabled = true",
        settings=ScanSettings,
    ),
)
