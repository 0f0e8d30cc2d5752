"""Fairness of a model's decisions across groups (AML.M0008), through fairlearn's metrics.

:func:`fairness` returns the demographic parity difference (the largest gap in
positive-decision rate between groups) and the equalized odds difference (the
largest gap in true- or false-positive rate), and for multi-class models the
per-class worst case, with pass/fail against the policy's limits.

>>> import numpy as np
>>> y = np.array([1, 0, 1, 0, 1, 0, 1, 0]); group = np.array(list("aaaabbbb"))
>>> r = fairness(y, np.array([1, 0, 1, 0, 1, 1, 1, 1]), group, max_parity=0.2, max_odds=0.2)
>>> r["demographic_parity_difference"], r["passed"]
(0.5, False)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["fairness"]


def fairness(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    groups: npt.ArrayLike,
    *,
    max_parity: float = 0.1,
    max_odds: float = 0.1,
) -> dict[str, Any]:
    """Both differences (for more than two classes: the worst one-vs-rest class)."""
    try:
        from fairlearn.metrics import (
            demographic_parity_difference,
            equalized_odds_difference,
        )
    except ImportError:  # pragma: no cover - the data extra installs it
        from atlasguard.errors import UsageError

        raise UsageError("fairness needs fairlearn: pip install 'atlasguard[data]'") from None
    truth, pred, group = np.asarray(y_true), np.asarray(y_pred), np.asarray(groups)
    classes = np.union1d(np.unique(truth), np.unique(pred))
    positive = classes if len(classes) > 2 else classes[-1:]
    parity = odds = 0.0
    for c in positive:
        t, p = (truth == c).astype(int), (pred == c).astype(int)
        parity = max(parity, float(demographic_parity_difference(t, p, sensitive_features=group)))
        odds = max(odds, float(equalized_odds_difference(t, p, sensitive_features=group)))
    return {
        "demographic_parity_difference": round(parity, 4),
        "equalized_odds_difference": round(odds, 4),
        "limits": {
            "demographic_parity_difference": max_parity,
            "equalized_odds_difference": max_odds,
        },
        "groups": sorted(str(g) for g in np.unique(group)),
        "passed": parity <= max_parity and odds <= max_odds,
    }
