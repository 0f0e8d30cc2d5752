"""Training-data poisoning attacks, to measure the sanitizers against (AML.T0020).

Each attack takes a training set and returns a :class:`Poisoned` copy with the
indices it changed. Triggers are stamped on images given as flat rows with a
known ``side`` (digits: 8x8, values in [0, 1]).

* :func:`badnets`: a small square patch of bright pixels (Gu et al., 2017) at
  any position; the poisoned rows are relabelled to one target (all-to-one) or
  to ``y + 1`` (all-to-all).
* :func:`blended`: a fixed random pattern blended over the whole image with
  weight ``alpha`` (Chen et al., 2017).
* :func:`flip_labels`: labels changed at random to another class, no trigger.

>>> import numpy as np
>>> x, y = np.zeros((100, 64)), np.arange(100) % 10
>>> p = badnets(x, y, rate=0.1, target=0, random_state=0)
>>> len(p.rows), int(p.y[p.rows].max()), float(p.x[p.rows][:, -1].min())
(10, 0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "Poisoned",
    "apply_trigger",
    "badnets",
    "blended",
    "flip_labels",
    "patch_trigger",
    "strip_adaptive",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Mode = Literal["all-to-one", "all-to-all"]


@dataclass(frozen=True)
class Poisoned:
    """A poisoned copy of a training set and what was done to it."""

    x: FloatArray
    y: IntArray
    rows: npt.NDArray[np.intp]  # the indices the attack changed
    trigger: FloatArray | None  # the stamp (NaN where the image is kept), or None
    alpha: float  # 1.0 replaces the pixels under the stamp; below 1 blends
    target: int | None  # the target label of an all-to-one attack


def patch_trigger(side: int, *, size: int = 3, row: int = -1, col: int = -1) -> FloatArray:
    """A ``size`` x ``size`` checkerboard of 1 and 0.5 at (row, col) (-1: the far corner);
    NaN elsewhere, so that :func:`apply_trigger` keeps those pixels."""
    stamp = np.full((side, side), np.nan)
    r = side - size if row < 0 else row
    c = side - size if col < 0 else col
    block = np.indices((size, size)).sum(axis=0) % 2
    stamp[r : r + size, c : c + size] = np.where(block == 0, 1.0, 0.5)
    return stamp.ravel()


def apply_trigger(x: npt.ArrayLike, trigger: FloatArray, alpha: float = 1.0) -> FloatArray:
    """Stamp ``trigger`` on every row of ``x``: ``(1 - alpha) * x + alpha * trigger``
    where the trigger is defined, ``x`` elsewhere."""
    rows = np.array(x, np.float64, copy=True)
    mask = ~np.isnan(trigger)
    rows[:, mask] = (1.0 - alpha) * rows[:, mask] + alpha * trigger[mask]
    return rows


def _choose(
    y: IntArray, rate: float, target: int | None, mode: Mode, rng: np.random.Generator
) -> npt.NDArray[np.intp]:
    candidates = np.flatnonzero(y != target) if mode == "all-to-one" else np.arange(len(y))
    count = round(rate * len(y))
    if not 0 < count <= len(candidates):
        raise ValueError(f"a rate of {rate} gives {count} rows; there are {len(candidates)}")
    return np.sort(rng.choice(candidates, size=count, replace=False)).astype(np.intp)


def _relabel(y: IntArray, rows: npt.NDArray[np.intp], target: int | None, mode: Mode) -> IntArray:
    labels = np.array(y, np.int64, copy=True)
    classes = int(labels.max()) + 1
    if mode == "all-to-all":
        labels[rows] = (labels[rows] + 1) % classes
    elif target is None:
        raise ValueError("an all-to-one attack needs a target label")
    else:
        labels[rows] = target
    return labels


def _stamp(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    rate: float,
    target: int | None,
    mode: Mode,
    trigger: FloatArray,
    alpha: float,
    rng: np.random.Generator,
) -> Poisoned:
    """Choose the rows, stamp the trigger on them, relabel them."""
    rows_x, labels = np.asarray(x, np.float64), np.asarray(y, np.int64)
    chosen = _choose(labels, rate, target, mode, rng)
    poisoned = np.array(rows_x, copy=True)
    poisoned[chosen] = apply_trigger(rows_x[chosen], trigger, alpha)
    target_out = target if mode == "all-to-one" else None
    relabelled = _relabel(labels, chosen, target, mode)
    return Poisoned(poisoned, relabelled, chosen, trigger, alpha, target_out)


def badnets(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    rate: float,
    target: int | None = 0,
    mode: Mode = "all-to-one",
    side: int = 8,
    size: int = 3,
    row: int = -1,
    col: int = -1,
    random_state: int = 0,
) -> Poisoned:
    """Stamp a patch on a share ``rate`` of the rows (not of the target class, all-to-one)
    and relabel them."""
    rng = np.random.default_rng(random_state)
    trigger = patch_trigger(side, size=size, row=row, col=col)
    return _stamp(x, y, rate, target, mode, trigger, 1.0, rng)


def blended(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    rate: float,
    target: int | None = 0,
    mode: Mode = "all-to-one",
    alpha: float = 0.2,
    random_state: int = 0,
) -> Poisoned:
    """Blend one fixed random pattern (uniform in [0, 1]) over the whole image."""
    rng = np.random.default_rng(random_state)
    width = np.asarray(x).reshape(len(np.asarray(x)), -1).shape[1]
    trigger = np.asarray(rng.uniform(0.0, 1.0, size=width), np.float64)
    return _stamp(x, y, rate, target, mode, trigger, alpha, rng)


def strip_adaptive(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    rate: float,
    target: int = 0,
    cover: float = 1.0,
    side: int = 8,
    size: int = 3,
    random_state: int = 0,
) -> Poisoned:
    """BadNets made to pass STRIP (an adaptive attacker who knows the guard): besides the
    ``rate`` of stamped rows labelled ``target``, ``cover`` times as many rows become the
    stamped row *superimposed on another clean row* (as STRIP blends, summed and
    clipped), labelled with that other row's label. The model learns that the trigger
    wins alone but not in a blend, so a triggered input's answers scatter under STRIP's
    blends like a clean input's. ``rows`` holds both kinds."""
    rng = np.random.default_rng(random_state)
    trigger = patch_trigger(side, size=size)
    base = _stamp(x, y, rate, target, "all-to-one", trigger, 1.0, rng)
    rows_x, labels = np.asarray(x, np.float64), np.asarray(y, np.int64)
    free = np.setdiff1d(np.flatnonzero(labels != target), base.rows)
    count = min(len(free), round(cover * len(base.rows)))
    chosen = np.sort(rng.choice(free, size=count, replace=False))
    partners = rng.integers(len(rows_x), size=count)
    stamped = apply_trigger(rows_x[chosen], trigger, 1.0)
    poisoned, relabelled = np.array(base.x, copy=True), np.array(base.y, copy=True)
    low, high = float(rows_x.min()), float(rows_x.max())
    poisoned[chosen] = np.clip(stamped + rows_x[partners], low, high)
    relabelled[chosen] = labels[partners]
    every = np.sort(np.concatenate([base.rows, chosen])).astype(np.intp)
    return Poisoned(poisoned, relabelled, every, trigger, 1.0, target)


def flip_labels(
    x: npt.ArrayLike, y: npt.ArrayLike, *, rate: float, random_state: int = 0
) -> Poisoned:
    """Give a share ``rate`` of the rows another label, uniformly among the other classes."""
    rows_x, labels = np.asarray(x, np.float64), np.asarray(y, np.int64)
    rng = np.random.default_rng(random_state)
    chosen = _choose(labels, rate, None, "all-to-all", rng)
    classes = int(labels.max()) + 1
    flipped = np.array(labels, copy=True)
    flipped[chosen] = (labels[chosen] + rng.integers(1, classes, size=len(chosen))) % classes
    return Poisoned(np.array(rows_x, copy=True), flipped, chosen, None, 0.0, None)
