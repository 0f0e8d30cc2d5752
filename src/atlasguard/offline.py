"""The controls whose work is a command run before release, not a part of the server.

``[controls.data]`` (``atlasguard data audit``, AML.M0007) and
``[controls.hardening]`` (``atlasguard harden``, AML.M0003) join
``[controls.release]`` and ``[controls.labs]``: a policy turns them on, and
coverage counts them once the deployment's audit log holds a recent run
(:mod:`atlasguard.runtime.evidence`). Declarations only: pydantic and the
standard library, so reading a policy imports no model code.
"""

from __future__ import annotations

from atlasguard.controls import Control, ControlSettings

__all__ = ["CONTROLS", "DataAuditSettings", "HardeningSettings"]


class DataAuditSettings(ControlSettings):
    """``[controls.data]``: audit training data before training (only ``enabled`` so far)."""


class HardeningSettings(ControlSettings):
    """``[controls.hardening]``: harden models before release (only ``enabled`` so far)."""


CONTROLS = (
    Control(
        key="data",
        title="Training-data audit",
        mitigates=frozenset({"AML.M0007"}),
        summary="atlasguard data audit: poisoned and backdoor rows (activation clustering, "
        "spectral signatures), label errors (confident learning), duplicates, outliers, "
        "schema and content checks, before a data set is trained on.",
        enable="set [controls.data] enabled = true; atlasguard data audit DATA --labels COL "
        "--policy atlasguard.toml",
        settings=DataAuditSettings,
    ),
    Control(
        key="hardening",
        title="Model hardening",
        mitigates=frozenset({"AML.M0003"}),
        summary="atlasguard harden: PGD adversarial training, TRADES or defensive "
        "distillation with early stopping on robust accuracy; an ONNX model and a "
        "robustness report.",
        enable="set [controls.hardening] enabled = true; atlasguard harden DATA -o MODEL.onnx "
        "--policy atlasguard.toml",
        settings=HardeningSettings,
    ),
)
