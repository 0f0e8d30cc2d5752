"""Audit records: one per request and per admin action, serialised canonically.

The canonical form (sorted keys, no spaces, UTF-8) is what the Merkle tree
hashes, so any change to any field of a stored record changes its leaf.

>>> from atlasguard.audit.records import AuditRecord
>>> r = AuditRecord(time=0.0, principal="alice", action="infer", decision="allow", model="digits")
>>> AuditRecord.from_bytes(r.to_bytes()) == r
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from atlasguard.errors import IntegrityError

__all__ = ["AuditRecord"]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """What happened, who asked, what was decided and why.

    ``action`` is ``infer``, ``admin.<verb>``, ``registry.<verb>``...;
    ``decision`` is ``allow`` or ``deny``; ``reason`` says why (``no-grant``,
    ``rate``, ``quota``, ``invalid-input``...). Inputs are never stored, only
    their digest; outputs only as a short summary.
    """

    time: float
    principal: str
    action: str
    decision: str
    reason: str = ""
    model: str | None = None
    input_digest: str | None = None
    output_summary: str | None = None
    latency_ms: float | None = None
    request_id: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # Field by field (not dataclasses.asdict, which deep-copies): this runs per request.
        data = {name: getattr(self, name) for name in _FIELDS}
        data["details"] = dict(self.details)
        return data

    def to_bytes(self) -> bytes:
        """The canonical serialisation: the bytes the Merkle leaf is computed from."""
        return json.dumps(
            self.to_dict(),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        ).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes | str) -> AuditRecord:
        """Parse a stored record; raises :class:`IntegrityError` if it is not one."""
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict):
                raise TypeError("not an object")
            raw["details"] = dict(raw.get("details") or {})
            return cls(**raw)
        except (ValueError, TypeError) as exc:
            raise IntegrityError(f"stored audit record does not parse: {exc}") from None


_FIELDS = tuple(f.name for f in fields(AuditRecord))
