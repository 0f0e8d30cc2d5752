"""``[controls.labs]``: the training a deployment expects of its people (AML.M0018).

Declarations only. ``atlasguard labs run`` records each completion in the audit
log; ``atlasguard labs status`` reads them back against ``required``.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from atlasguard.controls import Control, ControlSettings

__all__ = ["CONTROLS", "LabsSettings"]


class LabsSettings(ControlSettings):
    """``required``: the labs each person should complete (empty: every lab);
    ``pass_score``: the quiz answers a completion needs right to count."""

    required: tuple[str, ...] = ()
    pass_score: int = Field(default=2, ge=0)

    @field_validator("required", mode="before")
    @classmethod
    def _listed(cls, value: object) -> object:
        return tuple(value) if isinstance(value, list) else value


CONTROLS = (
    Control(
        key="labs",
        title="Hands-on labs",
        mitigates=frozenset({"AML.M0018"}),
        summary="atlasguard labs: real attacks on digits without and with each mitigation "
        "family, measured, explained and quizzed; completions in the audit log, "
        "`labs status` lists who has done which.",
        enable="set [controls.labs] enabled = true; atlasguard labs run NAME --policy "
        "atlasguard.toml; atlasguard labs status --policy atlasguard.toml",
        settings=LabsSettings,
    ),
)
