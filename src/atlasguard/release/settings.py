"""``[controls.release]``: what ``atlasguard release-check`` holds a release to.

Declarations only (pydantic and the standard library), so that reading a policy
imports nothing heavy; the gate itself is :mod:`atlasguard.release.check`.

>>> ReleaseSettings(terms=["Bluebird"]).min_data_rows
200
"""

from __future__ import annotations

from pydantic import Field, field_validator

from atlasguard.controls import Control, ControlSettings

__all__ = ["CONTROLS", "ReleaseSettings"]


class ReleaseSettings(ControlSettings):
    """What a release must not carry, and how big a thing must be to count.

    ``terms``: project code names, people, locations, department names that are
    not for release (matched case-insensitively, across line breaks and
    punctuation). ``internal_domains``: DNS suffixes of the organisation's own
    networks, beside the reserved ones (``.internal``, ``.corp``, ``.lan``...).
    ``allow``: the allow-list file of accepted findings, relative to the policy.
    """

    terms: tuple[str, ...] = ()
    internal_domains: tuple[str, ...] = ()
    allow: str = ".atlasguard-release-allow.toml"
    min_data_rows: int = Field(default=200, gt=0)  # CSV/TSV/JSON-lines rows that make a data set
    min_data_bytes: int = Field(default=256 * 1024, gt=0)  # arrays, tables: a data set above this
    min_images: int = Field(default=100, gt=0)  # images in one folder that make an image set
    min_blob_bytes: int = Field(default=4096, gt=0)  # decoded base64 worth reporting
    secrets: bool = True  # credentials, through detect-secrets (the `release` extra)

    @field_validator("terms", "internal_domains", mode="before")
    @classmethod
    def _listed(cls, values: object) -> object:
        return tuple(values) if isinstance(values, list) else values

    @field_validator("terms", "internal_domains")
    @classmethod
    def _not_blank(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if any(not v.strip() for v in values):
            raise ValueError("entries must not be blank")
        return tuple(v.strip() for v in values)


CONTROLS = (
    Control(
        key="release",
        title="Release gate",
        mitigates=frozenset({"AML.M0000", "AML.M0001", "AML.M0017"}),
        summary="atlasguard release-check: finds model weights, data sets, notebook outputs, "
        "ML configs, internal hosts and storage URIs, image metadata, listed terms and "
        "credentials in a directory, git history, wheel, archive or app bundle before it "
        "is published; accepted findings live in an allow-list with a reason.",
        enable="set [controls.release] enabled = true; run atlasguard release-check PATH "
        "in CI or as a pre-commit hook",
        settings=ReleaseSettings,
    ),
)
