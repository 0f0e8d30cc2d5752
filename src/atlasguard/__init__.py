"""atlasguard: the MITRE ATLAS mitigations as working, tested, measured software.

>>> import atlasguard
>>> atlasguard.__version__
'0.1.0'
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
