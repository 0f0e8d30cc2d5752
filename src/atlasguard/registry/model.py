"""Values of the registry: references, objects and their immutable versions.

A reference names one version of a model or data set: ``name`` (the latest
version), ``name@3`` (version number), ``name@sha256:<root digest>`` (content)
or ``name@production`` (an alias). :func:`parse_ref` raises
:class:`~atlasguard.errors.UsageError` for anything else, and nothing else.

>>> parse_ref("digits@3")
ObjectRef(name='digits', version=3, digest=None, alias=None)
>>> str(parse_ref("digits@production"))
'digits@production'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from atlasguard.errors import UsageError

__all__ = [
    "KINDS",
    "Kind",
    "ObjectRef",
    "RegistryObject",
    "Version",
    "check_alias",
    "check_name",
    "parse_ref",
]

Kind = Literal["model", "dataset"]
KINDS: tuple[Kind, ...] = ("model", "dataset")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_NUMBER = re.compile(r"[1-9][0-9]{0,8}")


def check_name(name: str) -> str:
    """``name`` if it is a valid object name, else :class:`UsageError`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(
            f"invalid object name {name!r}: 1-128 letters, digits and _.- "
            "(starting with a letter or digit)"
        )
    return name


def check_alias(alias: str) -> str:
    """``alias`` if it is a valid alias (``production``, ``staging``...), else UsageError."""
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias) or alias == "sha256":
        raise UsageError(
            f"invalid alias {alias!r}: 1-64 lower-case letters, digits, _ and -, "
            "starting with a letter"
        )
    return alias


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A reference to one version; at most one of ``version``, ``digest``, ``alias`` is set."""

    name: str
    version: int | None = None
    digest: str | None = None  # hex root digest, without "sha256:"
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        if self.digest is not None:
            return f"{self.name}@sha256:{self.digest}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def parse_ref(text: str) -> ObjectRef:
    """Parse ``name``, ``name@3``, ``name@sha256:<hex>`` or ``name@alias``."""
    if not isinstance(text, str):
        raise UsageError(f"a reference is a string, not {type(text).__name__}")
    name, sep, rest = text.partition("@")
    check_name(name)
    if not sep:
        return ObjectRef(name=name)
    if _NUMBER.fullmatch(rest):
        return ObjectRef(name=name, version=int(rest))
    if rest.startswith("sha256:"):
        match = _DIGEST.fullmatch(rest)
        if match is None:
            raise UsageError(f"invalid digest in {text!r}: expected sha256: and 64 lower-case hex")
        return ObjectRef(name=name, digest=match.group(1))
    if rest[:1].isdigit():
        raise UsageError(f"invalid version in {text!r}: expected a number from 1")
    try:
        return ObjectRef(name=name, alias=check_alias(rest))
    except UsageError:
        raise UsageError(
            f"invalid reference {text!r}: expected name, name@3, name@sha256:<hex> or name@alias"
        ) from None


@dataclass(frozen=True, slots=True)
class Version:
    """One immutable version: its number, content digest and what made it."""

    name: str
    number: int
    digest: str
    kind: Kind
    layout: Literal["file", "dir"]
    size: int
    encrypted: bool
    created_by: str
    created_at: float
    lineage: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(name=self.name, version=self.number)


@dataclass(frozen=True, slots=True)
class RegistryObject:
    """A model or data set: its owner (the creator), description and aliases."""

    name: str
    kind: Kind
    owner: str
    description: str = ""
    framework: str = ""
    tags: tuple[str, ...] = ()
    created_at: float = 0.0
    latest: int = 0
    aliases: Mapping[str, int] = field(default_factory=dict)
