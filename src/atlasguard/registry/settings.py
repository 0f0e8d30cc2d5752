"""The registry's policy table, ``[controls.registry]`` (a declaration: pydantic only).

>>> RegistrySettings().store
'registry'
"""

from __future__ import annotations

from pydantic import Field

from atlasguard.controls import Control, ControlSettings

__all__ = ["CONTROLS", "RegistrySettings"]


class RegistrySettings(ControlSettings):
    """``[controls.registry]``: encryption at rest and where the blobs live."""

    encrypt: bool = False  # with the deployment's [keys] keyring
    store: str = "registry"  # directory under the state directory, or s3://BUCKET/PREFIX
    s3_endpoint_url: str = ""  # an S3-compatible service (MinIO, Ceph...); empty: AWS
    s3_region: str = ""  # empty: boto3's default (AWS_DEFAULT_REGION, profile)
    max_push_bytes: int = Field(default=2 << 30, gt=0)  # largest upload over HTTP


CONTROLS = (
    Control(
        key="registry",
        title="Registry under access control",
        mitigates=frozenset({"AML.M0005"}),
        summary="Deny-by-default registry of models and data sets: roles on names or "
        "patterns, every push scanned, hashed (and signature-checked), every pull "
        "re-verified, every read and write in the audit log; optional encryption at rest.",
        enable="set [controls.registry] enabled = true; atlasguard registry push NAME PATH",
        settings=RegistrySettings,
    ),
)
