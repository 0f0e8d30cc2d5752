"""atlasguard: the MITRE ATLAS mitigations as working, tested, measured software.

>>> import atlasguard
>>> atlasguard.__version__
'0.1.0'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["__version__", "protect"]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from atlasguard.runtime.protect import protect


def __getattr__(name: str) -> Any:
    # ``atlasguard.protect`` without importing the runtime (numpy, SQLAlchemy) on
    # ``import atlasguard``.
    if name == "protect":
        from atlasguard.runtime.protect import protect

        return protect
    raise AttributeError(f"module 'atlasguard' has no attribute {name!r}")
