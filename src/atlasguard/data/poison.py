"""Poisoned and backdoor training rows (AML.M0007), found on the last hidden layer.

:class:`PoisonDetector` needs no poison rate. For each class it

1. finds candidate groups on the model's last hidden layer: activation
   clustering (Chen et al., 2018: the class's activations, centred, reduced by
   PCA, split by k-means for each ``k`` in ``clusters``) and spectral
   signatures (Tran et al., 2018: both tails of the top principal direction,
   at each share in ``tails``); candidates, not decisions;
2. for each group *C*, asks a classifier fit on every row but *C* (5 nearest
   neighbours) which class each row of *C* looks like (its source), and
   estimates a trigger from *C* against those sources: the mean offset, and a
   patch of the features *C* holds fixed where its sources vary;
3. stamps each estimate on the rows of the *other* classes and counts how many
   the model trained on all the data now puts in *C*'s class, less the share
   of them whose answer changes when the estimate is taken off. A backdoor
   sends most inputs to its label when added and harms nothing when removed; a
   natural sub-style of a class (a 9 with a straight stem) does neither;
4. the best group of a class is poison when that net success reaches
   ``min_success`` (2/3: chosen on digits' ``tune`` part, where true triggers
   scored 0.79 and up and natural groups 0.55 and down). The rows flagged are
   those of the class that hold the patch, or whose answer changes when the
   trigger is taken off.

A trigger that works only for its own source class (all-to-all, ``y -> y + 1``)
fails step 3: its estimate moves one class, not all. Such a trigger is one
pattern shared by the poison of every class, so, across classes:

5. each group's mean offset from its sources is compared with every other
   class's groups; a group whose best match in the median other class has a
   cosine of at least ``min_shared`` (0.6) is shared. With shared groups in
   three classes or more, their mean offset is the shared trigger, and the rows
   of those groups whose answer changes when it is taken off are flagged.
   ``min_shared`` was chosen on digits' ``tune`` + ``eval`` parts
   (``bench/training/all_to_all_probe.py``): groups on clean data reached at
   most 0.48, groups that are mostly all-to-all poison up to 0.76. A 2x2 patch
   in the middle of the image (0.51) and a faint blend stay unfound.

``bench/training`` reports the figures.

>>> import numpy as np
>>> from atlasguard.models.data import digits_splits
>>> from atlasguard.models.poisoning import badnets
>>> d = digits_splits()
>>> p = badnets(d.x_tune, d.y_tune, rate=0.1, target=0, random_state=0)
>>> det = PoisonDetector(random_state=0).fit(p.x, p.y)
>>> found = set(det.rows_.tolist())
>>> len(found & set(p.rows.tolist())) / len(p.rows) > 0.9
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["PoisonCluster", "PoisonDetector", "mlp_hidden"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Embed = Callable[[FloatArray], FloatArray]


@dataclass(frozen=True)
class PoisonCluster:
    """One tested cluster: its class, its rows, and what the transplant test measured."""

    label: int
    rows: npt.NDArray[np.intp]
    success: float  # share of other rows the trigger sends to ``label``, less those it harms
    looks_like: dict[int, int]  # the classes its rows look like without it, with counts
    poisoned: bool
    shared: float = 0.0  # step 6: how well its offset matches other classes' (when poisoned)


def mlp_hidden(model: Any) -> Embed:
    """The last hidden layer of a fitted scikit-learn ``MLPClassifier`` (ReLU)."""
    from atlasguard.models.attacks import relu_activations

    return lambda x: relu_activations(model, x)[-1]


def _surrogate(x: FloatArray, y: IntArray, random_state: int) -> Any:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=500, random_state=random_state)
    with warnings.catch_warnings():
        # memorising noisy labels takes the full budget; the hidden layer is what we need
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)


def _plain(x: FloatArray, y: IntArray) -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=5).fit(x, y)


class PoisonDetector:
    """Find poisoned rows without knowing the poison rate (see the module's docstring).

    ``predict`` and ``embed`` may come from the user's own model (trained on this
    data); otherwise a small MLP is trained on it and its hidden layer is used.
    """

    def __init__(
        self,
        *,
        clusters: Sequence[int] = (2, 3, 4, 6),
        components: int = 10,
        tails: Sequence[float] = (0.1, 0.25, 0.4),
        min_success: float = 2 / 3,
        min_shared: float = 0.6,
        min_cluster: int = 3,
        predict: Callable[[FloatArray], npt.NDArray[np.int64]] | None = None,
        embed: Embed | None = None,
        random_state: int = 0,
    ) -> None:
        self.clusters = clusters
        self.components = components
        self.tails = tails
        self.min_success = min_success
        self.min_shared = min_shared
        self.min_cluster = min_cluster
        self.predict = predict
        self.embed = embed
        self.random_state = random_state

    def fit(self, x: npt.ArrayLike, y: npt.ArrayLike) -> PoisonDetector:
        """Test every class's clusters; set ``clusters_`` (every test) and ``rows_``."""
        rows_x = np.asarray(x, np.float64)
        labels = np.asarray(y, np.int64)
        if rows_x.ndim != 2 or len(rows_x) != len(labels):
            raise ValueError("x must be 2-D with one label per row")
        predict, embed = self.predict, self.embed
        if predict is None or embed is None:
            model = _surrogate(rows_x, labels, self.random_state)
            predict = predict or model.predict
            embed = embed or mlp_hidden(model)
        hidden = embed(rows_x)
        low, high = rows_x.min(axis=0), rows_x.max(axis=0)
        tested: list[PoisonCluster] = []
        offsets: list[FloatArray] = []
        flagged: list[npt.NDArray[np.intp]] = []
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            best: int | None = None
            best_trigger: _Trigger | None = None
            for group in self._groups(hidden[members]):
                rows = members[group]
                if not self.min_cluster <= len(rows) < len(members):
                    continue
                cluster, trigger, offset = self._test(
                    rows_x, labels, rows, int(label), predict, low, high
                )
                tested.append(cluster)
                offsets.append(offset)
                if best is None or cluster.success > tested[best].success:
                    best, best_trigger = len(tested) - 1, trigger
            if best is None or best_trigger is None or tested[best].success < self.min_success:
                continue
            chosen = tested[best]
            tested[best] = PoisonCluster(
                chosen.label, chosen.rows, chosen.success, chosen.looks_like, True
            )
            # a row carries the trigger when taking the estimate off changes the decision
            flagged.append(members[best_trigger.carries(rows_x[members], predict, label)])
        flagged += self._shared(rows_x, tested, offsets, predict, low, high)
        self.clusters_ = tested
        self.rows_ = np.unique(np.concatenate(flagged)) if flagged else np.empty(0, np.intp)
        return self

    def _shared(
        self,
        x: FloatArray,
        tested: list[PoisonCluster],
        offsets: list[FloatArray],
        predict: Callable[[FloatArray], npt.NDArray[np.int64]],
        low: FloatArray,
        high: FloatArray,
    ) -> list[npt.NDArray[np.intp]]:
        """Step 5: groups of several classes whose offsets from their sources agree (one
        trigger shared by every class's poison), and their rows that carry it."""
        labels = np.array([c.label for c in tested])
        self.shared_classes_ = 0
        if len(np.unique(labels)) < 3:
            return []
        vectors = np.array(offsets)
        unit = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)
        cosine = unit @ unit.T
        classes = np.unique(labels)
        shared = np.array(
            [
                np.median([cosine[i, labels == c].max() for c in classes if c != labels[i]])
                for i in range(len(tested))
            ]
        )
        chosen = shared >= self.min_shared
        self.shared_classes_ = len(np.unique(labels[chosen]))
        if self.shared_classes_ < 3:
            return []
        trigger = _Trigger.offset(vectors[chosen].mean(axis=0), low, high)
        out = []
        for label in np.unique(labels[chosen]):
            picked = np.flatnonzero(chosen & (labels == label))
            rows = np.unique(np.concatenate([tested[i].rows for i in picked]))
            carriers = rows[np.asarray(predict(trigger.remove(x[rows]))) != label]
            for i in picked:
                c = tested[i]
                tested[i] = PoisonCluster(
                    c.label, c.rows, c.success, c.looks_like, True, round(float(shared[i]), 3)
                )
            out.append(carriers)
        return out

    def _groups(self, activations: FloatArray) -> list[npt.NDArray[np.bool_]]:
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA

        centred = activations - activations.mean(axis=0)
        keep = min(self.components, len(centred) - 1, centred.shape[1])
        if keep < 1:
            return []
        reduced = PCA(n_components=keep, random_state=self.random_state).fit_transform(centred)
        groups: list[npt.NDArray[np.bool_]] = []
        for k in self.clusters:
            if len(reduced) <= k:
                continue
            assigned = KMeans(k, n_init=10, random_state=self.random_state).fit_predict(reduced)
            groups.extend(assigned == part for part in range(k))
        # spectral signatures (Tran et al., 2018): the tails of the top direction
        direction = reduced[:, 0]
        for sign in (1.0, -1.0):
            for share in self.tails:
                groups.append(sign * direction >= np.quantile(sign * direction, 1.0 - share))
        return groups

    def _test(
        self,
        x: FloatArray,
        y: IntArray,
        rows: npt.NDArray[np.intp],
        label: int,
        predict: Callable[[FloatArray], npt.NDArray[np.int64]],
        low: FloatArray,
        high: FloatArray,
    ) -> tuple[PoisonCluster, _Trigger | None, FloatArray]:
        """The transplant test of one group, its best trigger estimate, and the group's
        mean offset from its sources."""
        rest = np.ones(len(y), bool)
        rest[rows] = False
        others = np.flatnonzero(rest & (y != label))
        if len(np.unique(y[rest])) < 2 or len(others) == 0:
            return PoisonCluster(label, rows, 0.0, {}, False), None, np.zeros(x.shape[1])
        plain = _plain(x[rest], y[rest])
        sources = np.asarray(plain.predict(x[rows]), np.int64)
        looks = np.unique(sources, return_counts=True)
        looks_like = {int(s): int(n) for s, n in zip(*looks, strict=True)}
        source_rows = {int(s): x[rest & (y == s)] for s in looks[0]}
        centres = {s: source_rows[s].mean(axis=0) for s in source_rows}
        offsets = x[rows] - np.array([centres[int(s)] for s in sources])
        # the sources' own spread at each feature, to find the features the cluster holds fixed
        spread = np.mean([source_rows[int(s)].var(axis=0) for s in sources], axis=0)
        candidates = [_Trigger.offset(offsets.mean(axis=0), low, high)]  # step 3's offset
        fixed = (x[rows].var(axis=0) < 0.1 * spread) & (spread > 1e-3 * (high - low) ** 2)
        if fixed.any():
            fill = x[rest].mean(axis=0)
            candidates.append(_Trigger.patch(fixed, x[rows].mean(axis=0), fill, x[rows], low, high))
        before = np.asarray(predict(x[others]))
        best: tuple[float, _Trigger | None] = (-1.0, None)
        for trigger in candidates:
            sent = float(np.mean(np.asarray(predict(trigger.stamp(x[others]))) == label))
            damage = float(np.mean(np.asarray(predict(trigger.remove(x[others]))) != before))
            if sent - damage > best[0]:
                best = (sent - damage, trigger)
        mean = offsets.mean(axis=0)
        return PoisonCluster(label, rows, best[0], looks_like, False), best[1], mean


@dataclass(frozen=True)
class _Trigger:
    """An estimated trigger: an offset added to every feature, or a patch that replaces some."""

    delta: FloatArray  # offset: added; patch: the pattern
    mask: npt.NDArray[np.bool_] | None  # the features a patch replaces
    fill: FloatArray  # patch: what removing it puts back
    tolerance: float  # patch: how far a row may be from the pattern and still carry it
    low: FloatArray
    high: FloatArray

    @classmethod
    def offset(cls, delta: FloatArray, low: FloatArray, high: FloatArray) -> _Trigger:
        return cls(delta, None, delta, np.inf, low, high)

    @classmethod
    def patch(
        cls,
        mask: npt.NDArray[np.bool_],
        pattern: FloatArray,
        fill: FloatArray,
        carriers: FloatArray,
        low: FloatArray,
        high: FloatArray,
    ) -> _Trigger:
        distance = np.abs(carriers[:, mask] - pattern[mask]).mean(axis=1)
        return cls(pattern, mask, fill, float(distance.max()), low, high)

    def stamp(self, x: FloatArray) -> FloatArray:
        if self.mask is None:
            return np.clip(x + self.delta, self.low, self.high)
        out = np.array(x, copy=True)
        out[:, self.mask] = self.delta[self.mask]
        return out

    def remove(self, x: FloatArray) -> FloatArray:
        if self.mask is None:
            return np.clip(x - self.delta, self.low, self.high)
        out = np.array(x, copy=True)
        out[:, self.mask] = self.fill[self.mask]
        return out

    def carries(
        self, x: FloatArray, predict: Callable[[FloatArray], npt.NDArray[np.int64]], label: int
    ) -> npt.NDArray[np.bool_]:
        """The rows that hold this trigger: a patch's pattern within the tolerance; for an
        offset, the rows whose decision taking it off changes."""
        changed = np.asarray(np.asarray(predict(self.remove(x))) != label)
        if self.mask is None:
            return changed
        distance = np.abs(x[:, self.mask] - self.delta[self.mask]).mean(axis=1)
        return np.asarray(changed | (distance <= self.tolerance))
