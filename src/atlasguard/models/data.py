"""The evaluation data: scikit-learn's digits, split three ways, never mixed.

``fit`` (half) trains models and gives detectors their reference inputs;
``tune`` (a quarter) is where thresholds and settings are chosen; ``eval`` (the
last quarter) is where attacks and benign streams are measured. The tests and
``bench/efficacy`` take their data from here, so a setting is never chosen on
the data it is judged on.

>>> d = digits_splits()
>>> len(d.x_fit) + len(d.x_tune) + len(d.x_eval)
1797
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Splits", "digits_splits"]


@dataclass(frozen=True)
class Splits:
    """Inputs (pixels / 16, in [0, 1]) and labels of the three parts."""

    x_fit: npt.NDArray[np.float64]
    y_fit: npt.NDArray[np.int64]
    x_tune: npt.NDArray[np.float64]
    y_tune: npt.NDArray[np.int64]
    x_eval: npt.NDArray[np.float64]
    y_eval: npt.NDArray[np.int64]


def digits_splits() -> Splits:
    """The fixed, stratified split of digits (random states 0 and 1)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    x_fit, x_rest, y_fit, y_rest = train_test_split(x, y, test_size=0.5, random_state=0, stratify=y)
    x_tune, x_eval, y_tune, y_eval = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=1, stratify=y_rest
    )
    return Splits(x_fit, y_fit, x_tune, y_tune, x_eval, y_eval)
