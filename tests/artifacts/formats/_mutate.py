"""The one mutation the format scanners' property tests share."""

from __future__ import annotations

from hypothesis import strategies as st


def mutate(seed: bytes, data: st.DataObject, *, keep: int = 0) -> bytes:
    """``seed`` with up to 8 bytes replaced (never the first ``keep``), then truncated."""
    raw = bytearray(seed)
    for _ in range(data.draw(st.integers(0, 8))):
        at = data.draw(st.integers(keep, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    return bytes(raw[: data.draw(st.integers(0, len(raw)))])
