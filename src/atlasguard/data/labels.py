"""Mislabeled rows by confident learning: cleanlab on out-of-fold probabilities.

The probabilities come from a logistic regression cross-validated in 5 folds
(features standardised only when their ranges differ more than tenfold:
standardising pixels fit the noisy labels more closely and found fewer errors
on digits' ``tune`` part), so no row is judged by a model that saw it;
cleanlab's ``find_label_issues`` decides which labels to doubt, with per-class
thresholds it derives from the data (no error rate to give).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(300, 2)); y = (x[:, 0] > 0).astype(int)
>>> x[:5, 0] = 3.0; y[:5] = 0
>>> sorted(r for r, *_ in label_issues(x, y))[:5]
[0, 1, 2, 3, 4]
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from atlasguard.errors import DataError

__all__ = ["label_issues", "out_of_fold_probabilities"]


def out_of_fold_probabilities(
    x: npt.ArrayLike, y: npt.ArrayLike, random_state: int = 0, repeats: int = 3
) -> npt.NDArray[np.float64]:
    """Each row's class probabilities from a model fit on the other folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(y)
    folds = int(min(5, np.bincount(labels)[np.bincount(labels) > 0].min()))
    if folds < 2:
        raise DataError("every class needs at least 2 rows to check labels")
    model = LogisticRegression(max_iter=2000)
    ranges = np.ptp(np.asarray(x, np.float64), axis=0)
    spread = ranges[ranges > 0]
    if len(spread) and spread.max() > 10 * np.median(spread):
        model = make_pipeline(StandardScaler(), model)  # features in different units
    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        for repeat in range(repeats):  # averaged over fold draws: one draw is a coin toss
            split = StratifiedKFold(folds, shuffle=True, random_state=random_state + repeat)
            runs.append(cross_val_predict(model, x, labels, cv=split, method="predict_proba"))
    return np.asarray(np.mean(runs, axis=0), np.float64)


def label_issues(
    x: npt.ArrayLike, y: npt.ArrayLike, random_state: int = 0
) -> Iterator[tuple[int, int, int, float]]:
    """(row, given label, likely label, self-confidence) for each doubted row, surest first."""
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:  # pragma: no cover - the data extra installs it
        raise DataError(
            "checking labels needs the data extra: pip install 'atlasguard[data]'"
        ) from None
    labels = np.asarray(y, np.int64)
    present = np.unique(labels)
    dense = np.searchsorted(present, labels)  # cleanlab wants 0..k-1 with every class seen
    probabilities = out_of_fold_probabilities(x, dense, random_state)
    ranked = find_label_issues(dense, probabilities, return_indices_ranked_by="self_confidence")
    for r in ranked:
        given = int(dense[r])
        yield (
            int(r),
            int(present[given]),
            int(present[int(probabilities[r].argmax())]),
            float(probabilities[r, given]),
        )
