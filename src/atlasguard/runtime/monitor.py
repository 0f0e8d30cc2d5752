"""Query-sequence monitoring (AML.M0015 Adversarial Input Detection, AML.M0004).

Black-box attacks on a served model are sequences: a score- or decision-based
evasion attack (SimBA, HopSkipJump) sends hundreds of near-copies of one input;
a model-extraction attack sends inputs synthesised around a few seeds. Each
query alone looks harmless. Two detectors keep a little state per principal and
look at the sequence:

* :class:`QueryFingerprints`, in the manner of Blacklight (Li et al., USENIX
  Security 2022): each input is quantised, cut into overlapping windows, and the
  smallest hashes of those windows are its fingerprint. A query whose
  fingerprint shares at least ``threshold_`` hashes with one earlier query of the
  same principal is a near-copy of it. Lookups go through a hash table, never a
  scan of the history. Exact repeats (a retry) are not counted: they teach an
  attacker nothing.
* :class:`DistanceNormality`, in the manner of PRADA (Juuti et al., EuroS&P
  2019): the distance of each query to the nearest earlier one of the same
  predicted class; benign inputs give distances that look normally distributed,
  synthetic ones (Jacobian augmentation, small steps) do not. A Shapiro–Wilk
  statistic below ``threshold_`` raises the alarm.

Both follow the estimator contract (``fit`` on clean inputs, ``score_samples``
over a stream, ``calibrate(streams, fpr=...)`` on benign streams, ``predict``).
:class:`QueryMonitor` is the guard: it remembers per principal (bounded), and
when a detector alarms it logs, degrades the principal's outputs to labels, or
refuses the principal (reason ``suspended``) for ``suspend_seconds``.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> fp = QueryFingerprints().fit(rng.random((200, 64)))
>>> x = rng.random(64)
>>> stream = np.stack([x + 0.01 * rng.standard_normal(64) for _ in range(5)])
>>> bool(fp.score_samples(stream)[1:].min() >= fp.threshold_)
True
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from atlasguard.errors import ConfigurationError
from atlasguard.runtime.obfuscation import labels_only, score_array
from atlasguard.runtime.pipeline import Denied, Principal, Request, Response
from atlasguard.runtime.reference import reference_inputs
from atlasguard.runtime.settings import DEFAULT_SCORE_OUTPUTS

if TYPE_CHECKING:
    from atlasguard.policy import Policy
    from atlasguard.runtime.suspensions import SuspensionStore

logger = logging.getLogger("atlasguard")

__all__ = [
    "BoundaryProbing",
    "DistanceNormality",
    "MonitorAction",
    "OffDistribution",
    "PrincipalState",
    "QueryConcentration",
    "QueryFingerprints",
    "QueryMonitor",
    "Watch",
]

FloatArray = npt.NDArray[np.float64]
MonitorAction = Literal["log", "label", "block"]

_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix(h: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser: spreads the window sums over all 64 bits."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * _MIX1
        h = (h ^ (h >> np.uint64(27))) * _MIX2
        return h ^ (h >> np.uint64(31))


class QueryFingerprints:
    """Blacklight-style fingerprints: near-copies of an earlier query share many hashes.

    ``levels`` quantisation steps over the input range learned by ``fit`` (or
    given as ``value_range``), windows of ``window`` values, the ``top``
    smallest window hashes kept. Windows whose values are all equal (a blank
    border) carry no information and are skipped.
    """

    def __init__(
        self,
        *,
        levels: int = 16,
        window: int = 4,
        top: int = 48,
        value_range: tuple[float, float] | None = None,
        threshold: int | None = None,
    ) -> None:
        self.levels = levels
        self.window = window
        self.top = top
        self.value_range = value_range
        self.threshold = threshold

    def fit(self, x: FloatArray) -> QueryFingerprints:
        """Learn the input range from clean inputs; the default threshold is 40% of ``top``."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if not 2 <= self.levels <= 256 or self.window < 1 or self.top < 1:
            raise ValueError("2 <= levels <= 256, window >= 1 and top >= 1 are required")
        lo, hi = self.value_range or (float(x.min()), float(x.max()))
        self.range_ = (lo, hi if hi > lo else lo + 1.0)
        default = max(1, round(0.4 * self.top))
        self.threshold_ = self.threshold if self.threshold is not None else default
        base = self.levels + 1  # values round to 0..levels: a grid point is never a boundary
        self._powers = np.array([pow(base, i, 1 << 64) for i in range(self.window)], np.uint64)
        # the keys of windows whose values are all equal (a blank border): no information
        ones = sum(pow(base, i, 1 << 64) for i in range(self.window)) % (1 << 64)
        self._constant = frozenset(
            int(_mix(np.array([(v * ones) % (1 << 64)], np.uint64))[0]) for v in range(base)
        )
        self._scale = self.levels / (self.range_[1] - self.range_[0])
        return self

    def fingerprint(self, row: npt.ArrayLike) -> frozenset[int]:
        """The ``top`` smallest distinct hashes of one input's informative windows."""
        flat = np.asarray(row, dtype=np.float64).ravel()
        q = (flat - self.range_[0]) * self._scale + 0.5
        np.clip(q, 0, self.levels, out=q)
        values = q.astype(np.uint64)
        if values.size < self.window:
            values = np.pad(values, (0, self.window - values.size))
        n = values.size - self.window + 1
        # each window's key, a polynomial in its values: one multiply-add per position
        # (a few numpy calls, not a strided matrix product: this runs on every request)
        with np.errstate(over="ignore"):
            keys = values[:n] * self._powers[0]
            for i in range(1, self.window):
                keys += values[i : i + n] * self._powers[i]
            hashes = set(_mix(keys).tolist())
        hashes -= self._constant
        return frozenset(sorted(hashes)[: self.top])

    def score_samples(self, stream: FloatArray) -> FloatArray:
        """For each query of one principal's stream, its most hashes shared with one earlier."""
        state = _FingerprintMemory(capacity=len(stream) + 1)
        return np.array([state.add(self.fingerprint(row), _digest(row)) for row in stream], float)

    def calibrate(self, streams: Iterable[FloatArray], *, fpr: float) -> QueryFingerprints:
        """The smallest threshold that flags at most ``fpr`` of the queries of benign streams."""
        scores = np.concatenate([self.score_samples(s) for s in streams])
        self.threshold_ = int(_threshold_above(scores, fpr))
        return self

    def predict(self, stream: FloatArray) -> npt.NDArray[np.bool_]:
        """True for each query that is a near-copy of an earlier one in its stream."""
        return self.score_samples(stream) >= self.threshold_


def _threshold_above(scores: FloatArray, fpr: float) -> float:
    """The least value ``t`` with ``mean(scores >= t) <= fpr`` (scores are small integers)."""
    for t in np.unique(np.concatenate([scores, [scores.max(initial=0) + 1]])):
        if float(np.mean(scores >= t)) <= fpr:
            return float(t)
    return float(scores.max(initial=0) + 1)  # pragma: no cover - the last candidate fits


def _digest(row: npt.ArrayLike) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=12).digest()


class _FingerprintMemory:
    """One principal's fingerprints: hash -> the ids of recent queries that had it.

    Bounded: the last ``capacity`` queries count (ids are consecutive, so an id
    below ``next_id - capacity`` is simply ignored), ``per_hash`` ids per hash,
    and the table is rebuilt from the live queries when it outgrows them. A
    lookup costs the fingerprint's size times ``per_hash``, whatever the
    history's length.
    """

    def __init__(self, *, capacity: int = 10_000, per_hash: int = 4) -> None:
        self.capacity = capacity
        self.per_hash = per_hash
        self.table: dict[int, tuple[int, ...]] = {}
        self.queries: deque[frozenset[int]] = deque(maxlen=capacity)
        self.exact: OrderedDict[bytes, None] = OrderedDict()
        self.next_id = 0
        self.live = 0  # hashes of the live queries, counted with repeats

    @property
    def oldest(self) -> int:
        """The id of the oldest query that still counts."""
        return self.next_id - len(self.queries)

    def repeat(self, digest: bytes) -> bool:
        """Whether this exact input was seen recently (then it is only marked as seen again)."""
        if digest in self.exact:
            self.exact.move_to_end(digest)
            return True
        return False

    def remember(self, digest: bytes) -> None:
        """Note an input seen (when no fingerprint is kept for it)."""
        self.exact[digest] = None
        while len(self.exact) > self.capacity:
            self.exact.popitem(last=False)

    def add(self, fingerprint: frozenset[int], digest: bytes) -> int:
        """Record a query; return the most hashes it shares with one earlier query."""
        if digest in self.exact:
            self.exact.move_to_end(digest)
            return 0  # an exact repeat (a retry) teaches an attacker nothing
        table = self.table
        found = [ids for ids in map(table.get, fingerprint) if ids]
        best = 0
        if found:
            oldest = self.oldest
            counts = Counter(chain.from_iterable(found))
            top_id, best = max(counts.items(), key=itemgetter(1))  # in C, no generator
            if top_id < oldest:  # the best match was forgotten: the live ones only
                best = max((n for i, n in counts.items() if i >= oldest), default=0)
        qid = self.next_id
        self.next_id += 1
        if len(self.queries) == self.capacity:
            self.live -= len(self.queries[0])  # about to be forgotten
        self.queries.append(fingerprint)
        self.live += len(fingerprint)
        self.exact[digest] = None
        keep = 1 - self.per_hash  # tuples of ints: the garbage collector stops tracking them
        for h in fingerprint:
            ids = table.get(h)
            table[h] = (qid,) if ids is None else (*ids[keep:], qid) if keep else (qid,)
        if len(table) > max(4096, 2 * self.live):  # amortised: at most every `live` adds
            self._rebuild()
        while len(self.exact) > self.capacity:
            self.exact.popitem(last=False)
        return best

    def _rebuild(self) -> None:
        """The table of the live queries only (hashes of forgotten ones dropped)."""
        table: dict[int, tuple[int, ...]] = {}
        keep = 1 - self.per_hash
        for qid, fingerprint in enumerate(self.queries, start=self.oldest):
            for h in fingerprint:
                ids = table.get(h)
                table[h] = (qid,) if ids is None else (*ids[keep:], qid) if keep else (qid,)
        self.table = table


class DistanceNormality:
    """PRADA-style: are the distances of a principal's queries to its earlier ones normal?

    For each query, the Euclidean distance to the nearest earlier query of the
    same class (at most ``history`` kept per class); the Shapiro–Wilk statistic
    of those distances over the last ``window`` queries, once there are
    ``min_queries``. Synthetic queries (small steps from a few seeds) give a
    statistic far below that of natural inputs.
    """

    def __init__(
        self,
        *,
        min_queries: int = 20,
        window: int = 200,
        history: int = 256,
        every: int = 10,
        near: float = 0.25,
        threshold: float | None = None,
        random_state: int = 0,
    ) -> None:
        self.min_queries = min_queries
        self.window = window
        self.history = history
        self.every = every
        self.near = near
        self.threshold = threshold
        self.random_state = random_state

    def fit(self, x: FloatArray) -> DistanceNormality:
        """Learn the typical distance between distinct clean inputs (their nearest neighbours).

        A query closer than ``near`` times that to an earlier one is a near-copy: it
        is left to the fingerprints and not counted here, so a client that resends a
        slightly different copy of an input does not skew the distribution. The
        threshold defaults to 0.75 (tuned on digits; calibrate it on your streams).
        """
        rows = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        rng = np.random.default_rng(self.random_state)
        sample = rows[rng.choice(len(rows), size=min(len(rows), 500), replace=False)]
        d = np.sqrt(((sample[:, None, :] - sample[None, :, :]) ** 2).sum(-1))
        d[d == 0] = np.inf
        self.n_features_ = rows.shape[1]
        self.scale_ = float(np.median(d.min(axis=1))) if len(sample) > 1 else 1.0
        self.threshold_ = self.threshold if self.threshold is not None else 0.75
        return self

    def score_samples(self, stream: FloatArray, classes: Sequence[int] | None = None) -> FloatArray:
        """For each query of a stream, the statistic after it (1.0 until there are enough)."""
        memory = _DistanceMemory(self)
        labels = classes if classes is not None else [0] * len(stream)
        return np.array([memory.add(row, int(c)) for row, c in zip(stream, labels, strict=True)])

    def calibrate(
        self,
        streams: Iterable[FloatArray],
        *,
        fpr: float,
        classes: Iterable[Sequence[int]] | None = None,
    ) -> DistanceNormality:
        """The threshold under which at most ``fpr`` of benign streams ever alarm."""
        labels = list(classes) if classes is not None else None
        lows = [
            float(self.score_samples(s, labels[i] if labels else None).min())
            for i, s in enumerate(streams)
        ]
        self.threshold_ = float(np.quantile(lows, fpr)) if lows else 0.0
        return self

    def predict(
        self, stream: FloatArray, classes: Sequence[int] | None = None
    ) -> npt.NDArray[np.bool_]:
        """True from the query at which the stream's statistic first falls below the threshold."""
        return np.minimum.accumulate(self.score_samples(stream, classes)) < self.threshold_


class _DistanceMemory:
    def __init__(self, detector: DistanceNormality) -> None:
        self.detector = detector
        self.by_class: dict[int, FloatArray] = {}
        self.sizes: dict[int, int] = {}
        self.distances: deque[float] = deque(maxlen=detector.window)
        self.seen = 0
        self.last = 1.0

    def add(self, row: npt.ArrayLike, cls: int) -> float:
        d = self.detector
        x = np.asarray(row, dtype=np.float32).ravel()
        stored = self.by_class.get(cls)
        n = self.sizes.get(cls, 0)
        if stored is None:  # grown as queries come, up to `history` rows: memory follows use
            stored = np.empty((min(16, d.history), x.size), np.float32)
            self.by_class[cls] = stored
        elif n < d.history and n == len(stored):
            stored = np.concatenate([stored, np.empty((min(n, d.history - n), x.size), np.float32)])
            self.by_class[cls] = stored
        if n:
            diff = stored[: min(n, d.history)] - x
            nearest = float(np.sqrt(np.einsum("ij,ij->i", diff, diff).min()))
            if nearest <= d.near * d.scale_:  # a repeat or near-copy: the fingerprints' job
                return self.last
            self.distances.append(nearest)
        stored[n % d.history] = x
        self.sizes[cls] = n + 1
        self.seen += 1
        if len(self.distances) >= d.min_queries and self.seen % d.every == 0:
            self.last = _shapiro(np.fromiter(self.distances, float))
        return self.last


def _shapiro(values: FloatArray) -> float:
    from scipy.stats import shapiro

    if np.ptp(values) == 0.0:
        return 0.0  # every distance equal: nothing natural looks like that
    return float(shapiro(values).statistic)


class _WindowShare:
    """A detector over a stream that alarms on the share of flagged queries in a window.

    Subclasses say which queries are flagged (:meth:`flags`); ``window``,
    ``min_queries`` and ``threshold_`` are theirs.
    """

    window: int
    min_queries: int
    threshold_: float

    def flags(self, stream: FloatArray) -> npt.NDArray[np.bool_]:  # pragma: no cover
        raise NotImplementedError

    def score_samples(self, stream: FloatArray) -> FloatArray:
        """After each query, the share of the last ``window`` flagged (0 until enough)."""
        flagged = self.flags(stream)
        out = np.zeros(len(flagged))
        recent: deque[bool] = deque(maxlen=self.window)
        for i, flag in enumerate(flagged):
            recent.append(bool(flag))
            if i + 1 >= self.min_queries:
                out[i] = sum(recent) / len(recent)
        return out

    def calibrate(self, streams: Iterable[FloatArray], *, fpr: float) -> Any:
        """The share above which at most ``fpr`` of benign streams ever go."""
        highs = [float(self.score_samples(s).max(initial=0.0)) for s in streams]
        self.threshold_ = float(np.quantile(highs, 1.0 - fpr)) + 1e-9 if highs else 1.0
        return self

    def predict(self, stream: FloatArray) -> npt.NDArray[np.bool_]:
        """True from the query at which the share first reaches the threshold."""
        return np.maximum.accumulate(self.score_samples(stream)) >= self.threshold_


class OffDistribution(_WindowShare):
    """How many of a principal's recent queries lie outside the clean inputs' distribution.

    ``fit`` clusters clean inputs (``clusters`` centres, k-means) and takes, on a
    held-out part of them, the ``quantile`` of each input's distance to its
    nearest centre as the edge of the distribution. ``score_samples`` over a
    stream gives, after each query, the share of the last ``window`` queries
    beyond that edge; random-input extraction (uniform noise, inputs of another
    domain) drives it towards 1, a client with real inputs keeps it near
    ``1 - quantile``. The alarm threshold defaults to 0.5 once ``min_queries``
    were seen.
    """

    def __init__(
        self,
        *,
        clusters: int = 32,
        quantile: float = 0.99,
        window: int = 50,
        min_queries: int = 20,
        threshold: float | None = None,
        random_state: int = 0,
    ) -> None:
        self.clusters = clusters
        self.quantile = quantile
        self.window = window
        self.min_queries = min_queries
        self.threshold = threshold
        self.random_state = random_state

    def fit(self, x: FloatArray) -> OffDistribution:
        from sklearn.cluster import KMeans

        rows = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(len(rows))
        half = max(1, len(rows) // 2)
        fit_rows, held_out = rows[order[:half]], rows[order[half:]]
        k = max(1, min(self.clusters, len(fit_rows)))
        km = KMeans(n_clusters=k, n_init=3, random_state=self.random_state).fit(fit_rows)
        self.centres_ = np.asarray(km.cluster_centers_, dtype=np.float64)
        self._norms = (self.centres_**2).sum(axis=1)
        edge_rows = held_out if len(held_out) else fit_rows
        self.edge_ = float(np.quantile(self.distance(edge_rows), self.quantile))
        self.threshold_ = self.threshold if self.threshold is not None else 0.5
        return self

    def distance(self, rows: FloatArray) -> FloatArray:
        """Each row's distance to its nearest centre."""
        r = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
        d2 = (r**2).sum(axis=1)[:, None] - 2.0 * r @ self.centres_.T + self._norms[None, :]
        return np.asarray(np.sqrt(np.maximum(d2.min(axis=1), 0.0)), dtype=np.float64)

    def flags(self, stream: FloatArray) -> npt.NDArray[np.bool_]:
        """Whether each query lies beyond the edge."""
        return np.asarray(self.distance(stream) > self.edge_)


class QueryConcentration:
    """How tightly a principal's recent queries cluster: the probes of one input.

    Score- and decision-based attacks that hide their near-copies behind large
    random noise (NES-style gradient estimation, noisy SimBA or HopSkipJump)
    still query around one point: the root-mean-square distance of the last
    ``window`` queries to their centroid stays far below what any natural run
    of inputs shows, even inputs of one class. ``fit`` learns that spread on
    clean inputs (``scale_``); the alarm is a spread under ``fraction`` of it
    (``threshold_``), or what :meth:`calibrate` sets on benign streams.
    """

    def __init__(self, *, window: int = 50, fraction: float = 0.35) -> None:
        self.window = window
        self.fraction = fraction

    def fit(self, x: FloatArray) -> QueryConcentration:
        rows = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        self.scale_ = float(np.sqrt(((rows - rows.mean(axis=0)) ** 2).sum(axis=1).mean()))
        self.threshold_ = self.fraction * self.scale_
        return self

    def score_samples(self, stream: FloatArray) -> FloatArray:
        """After each query, the spread of the last ``window`` (infinite until enough)."""
        rows = np.asarray(stream, dtype=np.float64).reshape(len(stream), -1)
        out = np.full(len(rows), np.inf)
        for i in range(self.window, len(rows) + 1):
            win = rows[i - self.window : i]
            out[i - 1] = float(np.sqrt(((win - win.mean(axis=0)) ** 2).sum(axis=1).mean()))
        return out

    def calibrate(self, streams: Iterable[FloatArray], *, fpr: float) -> QueryConcentration:
        """The spread under which at most ``fpr`` of benign streams ever go."""
        lows = [float(self.score_samples(s).min(initial=np.inf)) for s in streams]
        finite = [v for v in lows if np.isfinite(v)]
        self.threshold_ = float(np.quantile(finite, fpr)) if finite else 0.0
        return self

    def predict(self, stream: FloatArray) -> npt.NDArray[np.bool_]:
        """True from the query at which the spread first falls under the threshold."""
        return np.minimum.accumulate(self.score_samples(stream)) < self.threshold_


class _Spread:
    """The running spread of one principal's last ``window`` queries: O(features) a query."""

    __slots__ = ("rows", "squares", "total", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self.rows: deque[FloatArray] = deque()
        self.total: FloatArray | None = None
        self.squares = 0.0

    def add(self, row: FloatArray) -> float:
        x = np.asarray(row, dtype=np.float64).ravel()
        if self.total is None or self.total.shape != x.shape:
            self.rows.clear()
            self.total, self.squares = np.zeros_like(x), 0.0
        self.rows.append(x)
        self.total += x
        self.squares += float(x @ x)
        if len(self.rows) > self.window:
            old = self.rows.popleft()
            self.total -= old
            self.squares -= float(old @ old)
        n = len(self.rows)
        if n < self.window:
            return float("inf")
        mean = self.total / n
        return float(np.sqrt(max(self.squares / n - float(mean @ mean), 0.0)))


class BoundaryProbing(_WindowShare):
    """How many of a principal's recent queries sit on a decision boundary.

    A decision-based attack (HopSkipJump, Boundary) spends almost every query on
    the boundary: binary searches toward it and probes around a point on it. The
    model's margin (top score minus the second) is then tiny; natural inputs
    rarely have one. ``score_samples`` over a stream of the model's scores gives,
    after each query, the share of the last ``window`` whose margin is below
    ``margin``; the alarm threshold defaults to 0.5 once ``min_queries`` were
    seen. It needs the scores (the monitor sees them before any output policy).
    """

    def __init__(
        self,
        *,
        margin: float = 0.2,
        window: int = 50,
        min_queries: int = 20,
        threshold: float | None = None,
    ) -> None:
        self.margin = margin
        self.window = window
        self.min_queries = min_queries
        self.threshold = threshold

    def fit(self, scores: FloatArray) -> BoundaryProbing:
        """Learn how often clean inputs are on the boundary (``scores``: the model's answers
        on clean inputs; none at all leaves the rate unknown, the threshold as set)."""
        rows = np.asarray(scores, np.float64)
        self.clean_rate_ = float(self.near(rows).mean()) if len(rows) else float("nan")
        self.threshold_ = self.threshold if self.threshold is not None else 0.5
        return self

    def near(self, scores: npt.NDArray[np.floating]) -> npt.NDArray[np.bool_]:
        """Whether each row of scores has a margin below ``margin``."""
        if scores.shape[-1] < 2:
            return np.zeros(len(scores), bool)
        top = np.partition(scores, -2, axis=-1)
        return np.asarray(top[:, -1] - top[:, -2] < self.margin)

    def flags(self, stream: FloatArray) -> npt.NDArray[np.bool_]:
        """Whether each answer (a row of scores) has a margin below ``margin``."""
        return self.near(np.asarray(stream, np.float64))


@dataclass
class PrincipalState:
    """What the monitor remembers of one principal (bounded)."""

    fingerprints: _FingerprintMemory
    distances: _DistanceMemory | None
    recent: deque[bool] = field(default_factory=deque)  # near-copy or not, last queries
    near_copies: int = 0
    outside: deque[bool] = field(default_factory=deque)  # beyond the clean inputs' edge or not
    boundary: deque[bool] = field(default_factory=deque)  # on a decision boundary or not
    spread: _Spread | None = None  # the last queries' spread (with a concentration watch)
    seen: int = 0
    alarmed_at: float | None = None
    why: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, seen: Seen, *, window: int, off_window: int) -> Counts | None:
        """Remember one query; what the detectors now count (``None`` for a repeat)."""
        memory = self.fingerprints
        if memory.repeat(seen.digest):
            return None  # a retry of an earlier query: nothing new for any detector
        copy = False
        if seen.fingerprint is None:
            memory.remember(seen.digest)
        else:
            copy = memory.add(seen.fingerprint, seen.digest) >= seen.match
            self.recent.append(copy)
            self.near_copies += copy
            if len(self.recent) > window:
                self.near_copies -= self.recent.popleft()
        low = 1.0
        if self.distances is not None:
            low = self.distances.add(seen.row, seen.cls)
        self.seen += 1
        if seen.outside is not None:
            self.outside.append(seen.outside)
            if len(self.outside) > off_window:
                self.outside.popleft()
        if seen.boundary is not None:
            self.boundary.append(seen.boundary)
            if len(self.boundary) > seen.boundary_window:
                self.boundary.popleft()
        radius = float("inf")
        if seen.spread_window:
            if self.spread is None:
                self.spread = _Spread(seen.spread_window)
            radius = self.spread.add(seen.row)
        return Counts(
            self.near_copies,
            len(self.recent),
            sum(self.outside),
            len(self.outside),
            self.seen,
            low,
            sum(self.boundary),
            len(self.boundary),
            radius,
        )

    def alarm(self) -> tuple[float, str] | None:
        return None if self.alarmed_at is None else (self.alarmed_at, self.why)

    last_alarm = alarm  # in process, always current

    def raise_alarm(self, now: float, why: str) -> bool:
        """Record the alarm; True if it is new (else another request raised it first)."""
        if self.alarmed_at is not None:
            return False
        self.alarmed_at, self.why = now, why
        return True

    def size(self) -> int:
        return len(self.fingerprints.queries)


@dataclass(frozen=True, slots=True)
class Seen:
    """One query as the detectors see it (computed once, whoever remembers it)."""

    row: FloatArray
    digest: bytes
    fingerprint: frozenset[int] | None
    match: int  # hashes a near-copy shares
    cls: int
    outside: bool | None  # beyond the clean inputs' edge (None: not watched)
    boundary: bool | None = None  # on a decision boundary (None: not watched)
    boundary_window: int = 50
    spread_window: int = 0  # queries whose spread is watched (0: not watched)


@dataclass(frozen=True, slots=True)
class Counts:
    """What one principal's (or group's) state counts after a query."""

    near_copies: int
    recent: int
    outside: int
    outside_window: int
    seen: int
    low: float  # the latest Shapiro-Wilk statistic (1.0 before the first test)
    boundary: int = 0
    boundary_window: int = 0
    radius: float = float("inf")  # the spread of the last queries (inf until enough)


@dataclass(frozen=True, slots=True)
class Watch:
    """The detectors watching one model's queries (either may be absent)."""

    fingerprints: QueryFingerprints | None
    distances: DistanceNormality | None
    off: OffDistribution | None = None
    boundary: BoundaryProbing | None = None
    concentration: QueryConcentration | None = None


@dataclass
class QueryMonitor:
    """The guard: watch each principal's queries to each model, act when a detector alarms.

    ``watches`` maps a model name to its detectors (a model without one is not
    watched). ``alarm_after`` near-copies (fingerprints at or above their
    threshold) among the principal's last ``alarm_window`` queries raise the
    alarm, as does a distance statistic below its threshold. ``action``:
    ``log`` (the alarm is only recorded), ``label`` (scores are withheld from
    the principal: only labels), ``block`` (the principal is refused with
    reason ``suspended`` for ``suspend_seconds``). ``on_alarm(principal, model,
    why)`` is called once per alarm (the deployment records it in the audit log).
    State is per (principal, model), in this process, bounded: at most
    ``capacity`` queries per pair, ``max_queries`` queries in all and
    ``max_principals`` pairs (the least recently seen pairs forgotten first). A
    remembered query costs a few kilobytes (its fingerprint, its hash-table
    entries, its row for the distances), so the defaults bound the monitor to
    a few hundred megabytes at worst.
    """

    watches: dict[str, Watch]
    action: MonitorAction = "block"
    alarm_after: int = 3
    alarm_window: int = 50
    suspend_seconds: float = 86_400.0
    max_principals: int = 10_000
    capacity: int = 10_000
    max_queries: int = 100_000
    on_alarm: Callable[[str, str, str], None] | None = None
    score_outputs: tuple[str, ...] = DEFAULT_SCORE_OUTPUTS  # as the output policy names them
    store: SuspensionStore | None = None
    groups: bool = True  # also watch each group a principal reaches the model through
    shared: Any = None  # RedisMonitorStates: state shared by every worker and replica
    refresh_seconds: float = 2.0
    clock: Callable[[], float] = time.time
    name: str = "monitor"
    mitigates: frozenset[str] = frozenset({"AML.M0015", "AML.M0004"})
    blocking: bool = False
    _states: OrderedDict[tuple[str, str], PrincipalState] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _remembered: int = 0  # queries remembered over every state
    # with a store: the suspensions it holds (refreshed), and those being written to it
    _active: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    _pending: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    _read_keys: set[tuple[str, str]] = field(default_factory=set)  # as the last read saw
    _refresher: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def from_policy(
        cls,
        policy: Policy,
        *,
        on_alarm: Callable[[str, str, str], None] | None = None,
        store: SuspensionStore | None = None,
    ) -> QueryMonitor:
        """The monitor ``[controls.monitor]`` describes, one watch per declared model.

        Fingerprints need the input range: the model's declared ``min``/``max``, or
        its reference inputs. Distances need reference inputs (clean ``.npy``, read
        without pickles) to learn what natural distances look like.
        """
        from atlasguard.runtime.settings import MonitorSettings, OutputSettings

        settings = policy.settings("monitor")
        output = policy.settings("output")
        names = output.score_outputs if isinstance(output, OutputSettings) else None
        if not isinstance(settings, MonitorSettings):  # pragma: no cover - plan() checked
            raise ConfigurationError("controls.monitor: unexpected settings")
        watches: dict[str, Watch] = {}
        for name, spec in policy.models.items():
            reference = reference_inputs(policy, name)
            declared = spec.inputs[0] if spec.inputs else None
            value_range = (
                (declared.min, declared.max)
                if declared is not None and declared.min is not None and declared.max is not None
                else None
            )
            fingerprints = None
            if settings.fingerprints and (value_range is not None or reference is not None):
                fingerprints = QueryFingerprints(
                    levels=settings.levels,
                    window=settings.window,
                    top=settings.top,
                    value_range=value_range,
                    threshold=settings.match,
                ).fit(reference if reference is not None else np.array(value_range)[:, None])
            distances = None
            if settings.distances and reference is not None:
                _scipy()
                distances = DistanceNormality(
                    min_queries=settings.min_queries, threshold=settings.normality
                ).fit(reference)
            off = None
            if settings.off_distribution and reference is not None:
                off = OffDistribution(threshold=settings.off_share).fit(reference)
            boundary = None
            if settings.boundary:
                boundary = BoundaryProbing(
                    margin=settings.boundary_margin, threshold=settings.boundary_share
                ).fit(np.empty((0, 2)))
            concentration = None
            if settings.concentration and reference is not None:
                concentration = QueryConcentration(fraction=settings.concentration_fraction).fit(
                    reference
                )
            if fingerprints is not None or distances is not None or off is not None:
                watches[name] = Watch(fingerprints, distances, off, boundary, concentration)
        shared = None
        redis_url = policy.deployment.redis_url
        if settings.state == "redis" and not redis_url:
            raise ConfigurationError(
                f'{policy.where("controls.monitor.state")}: state = "redis" needs '
                "[deployment] redis_url"
            )
        if settings.state == "redis" or (settings.state == "auto" and redis_url):
            from atlasguard.runtime._monitor_redis import RedisMonitorStates
            from atlasguard.runtime.deployment import state_prefix

            shared = RedisMonitorStates.from_url(
                redis_url, state_prefix(policy, "monitor"), ttl=settings.suspend_seconds
            )
            shared.distances = {
                m: w.distances for m, w in watches.items() if w.distances is not None
            }
        monitor = cls(
            blocking=shared is not None,  # a Redis round trip: never on the event loop
            watches=watches,
            action=settings.action,
            alarm_after=settings.alarm_after,
            alarm_window=settings.alarm_window,
            suspend_seconds=settings.suspend_seconds,
            on_alarm=on_alarm,
            score_outputs=names or DEFAULT_SCORE_OUTPUTS,
            store=store,
            groups=settings.groups,
            shared=shared,
        )
        monitor.start()
        return monitor

    def state(self, principal: Principal | None, model: str) -> PrincipalState:
        """What this process remembers of ``principal`` on ``model`` (memory state)."""
        return self.state_for(_pair(principal, model))

    def keys(self, principal: Principal | None, model: str) -> list[tuple[str, str]]:
        """Whose states a query counts in: the principal's, and each group's it reaches
        the model through (with ``groups``), so keys spread over a tenant add up."""
        keys = [_pair(principal, model)]
        if self.groups and principal is not None:
            keys += [(g, model) for g in principal.groups]
        return keys

    def state_for(self, key: tuple[str, str]) -> PrincipalState:
        model = key[1]
        with self._lock:
            found = self._states.get(key)
            if found is None:
                watch = self.watches.get(model)
                distances = watch.distances if watch is not None else None
                found = PrincipalState(
                    _FingerprintMemory(capacity=self.capacity),
                    _DistanceMemory(distances) if distances is not None else None,
                )
                self._states[key] = found
                self._trim()
            else:
                self._states.move_to_end(key)
            return found

    def _trim(self) -> None:
        """Forget the least recently seen pairs while over a bound (call with the lock)."""
        while len(self._states) > 1 and (
            len(self._states) > self.max_principals or self._remembered > self.max_queries
        ):
            _key, old = self._states.popitem(last=False)
            self._remembered -= len(old.fingerprints.queries)

    def suspended(self, principal: Principal | None, model: str) -> str | None:
        """Why ``principal`` is refused on ``model`` now, or ``None``.

        With a store, its suspensions count (whichever worker or process decided
        them), and one that was lifted or has ended also clears what this
        process remembers of the principal, so its next queries start afresh.
        """
        if self.action != "block" or model not in self.watches:
            return None
        now = self.clock()
        if self.store is not None:
            self._refresh(now)
        for key in self.keys(principal, model):
            why = self._suspended(key, now)
            if why is not None:
                return why if key[0] == _pair(principal, model)[0] else f"{key[0]}: {why}"
        return None

    def _suspended(self, key: tuple[str, str], now: float) -> str | None:
        if self.store is None:
            alarm: tuple[float, str] | None = self._state(key).alarm()
            if alarm is None:
                return None
            if now - alarm[0] > self.suspend_seconds:
                self._forget(key)
                return None
            return alarm[1]
        entry = self._pending.get(key) or self._active.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        return None  # a lifted or ended suspension is forgotten when the store is reread

    def _state(self, key: tuple[str, str]) -> Any:
        """The state of ``key``: shared in Redis when configured, else this process's."""
        return self.shared.state(key) if self.shared is not None else self.state_for(key)

    def _forget(self, key: tuple[str, str]) -> None:
        if self.shared is not None:
            self.shared.state(key).forget()
            return
        with self._lock:
            old = self._states.pop(key, None)
            if old is not None:
                self._remembered -= len(old.fingerprints.queries)

    def _refresh(self, now: float) -> None:
        """With ``refresh_seconds <= 0`` (tests, tools), reread on every call; otherwise a
        background thread (:meth:`start`) rereads on a period, off the request's path."""
        if self.store is not None and self.refresh_seconds <= 0:
            self._read(now)

    def start(self) -> None:
        """Read the suspensions in force now, then keep rereading them every
        ``refresh_seconds`` on a daemon thread until :meth:`close`: a lift or a
        suspension decided by another worker is seen within that period, with or
        without traffic."""
        if self.store is None:
            return
        self._read(self.clock())
        if self.refresh_seconds <= 0 or self._refresher is not None:
            return
        self._refresher = threading.Thread(
            target=self._reread,
            args=(self.refresh_seconds,),
            name="atlasguard-suspensions",
            daemon=True,
        )
        self._refresher.start()

    def _reread(self, period: float) -> None:
        while not self._stop.wait(period):
            self._read(self.clock())

    def close(self) -> None:
        """Stop rereading the suspensions; release the shared state's connection."""
        self._stop.set()
        if self.shared is not None:
            self.shared.close()

    def _read(self, now: float) -> None:
        if self.store is None:  # pragma: no cover - checked by the caller
            return
        try:
            rows = self.store.active(now=now)
        except Exception:  # the database is away: keep the last view
            logger.exception("query monitor: cannot read the suspensions")
            return
        self._active = {(r.principal, r.model): (r.until, r.why) for r in rows}
        # A suspension the last read saw and this one does not was lifted or has ended:
        # what is remembered of the pair goes, so its next queries start afresh. Off the
        # request's path (the refresher thread); one decided since the last read stays.
        gone, self._read_keys = self._read_keys - self._active.keys(), set(self._active)
        for key in gone:
            try:
                self._forget(key)
            except Exception:  # a shared store away: its keys expire on their own
                logger.exception("query monitor: cannot clear the state of %r", key[0])

    def _persist(self, key: tuple[str, str], since: float, until: float, why: str) -> None:
        if self.store is None:
            return
        try:
            self.store.suspend(key[0], key[1], since=since, until=until, why=why)
        except Exception:
            logger.exception("query monitor: cannot record the suspension of %r", key[0])
            return  # stays pending: this process keeps refusing the principal
        self._active[key] = (until, why)
        self._pending.pop(key, None)

    def before(self, request: Request) -> Request:
        try:
            why = self.suspended(request.principal, request.model)
        except Exception as exc:
            mapped = self._unavailable(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        if why is not None:
            raise Denied(
                f"queries to {request.model!r} from this principal look like an attack in "
                f"progress ({why}); they are refused until the suspension ends or an "
                "administrator lifts it",
                reason="suspended",
            )
        return request

    def after(self, request: Request, response: Response) -> Response:
        watch = self.watches.get(request.model)
        rows = _rows(request) if watch is not None else None
        if watch is None or rows is None:
            return response
        classes = _classes(response, len(rows), self.score_outputs)
        fp, off, edge = watch.fingerprints, watch.off, watch.boundary
        outside = off.distance(rows) > off.edge_ if off is not None else None
        scores = score_array(response, self.score_outputs) if edge is not None else None
        boundary = (
            edge.near(np.asarray(scores, np.float64))
            if edge is not None and scores is not None and len(scores) == len(rows)
            else None
        )
        seen = [
            Seen(
                row,
                _digest(row),
                fp.fingerprint(row) if fp is not None else None,
                fp.threshold_ if fp is not None else 0,
                classes[i],
                bool(outside[i]) if outside is not None else None,
                bool(boundary[i]) if boundary is not None else None,
                edge.window if edge is not None else 0,
                watch.concentration.window if watch.concentration is not None else 0,
            )
            for i, row in enumerate(rows)
        ]
        alarmed = False
        for key in self.keys(request.principal, request.model):
            try:
                alarmed |= self._observe(key, watch, seen)
            except Exception as exc:
                mapped = self._unavailable(exc)
                if mapped is exc:
                    raise
                raise mapped from exc
        if alarmed and self.action == "label":
            return response.with_outputs(labels_only(response, self.score_outputs))
        return response

    def _unavailable(self, exc: Exception) -> Exception:
        """A shared store that cannot answer refuses the request (fail closed); any other
        error is the monitor's own and propagates."""
        if self.shared is None or not self.shared.is_unavailable(exc):
            return exc
        logger.error("query monitor: the shared state cannot be reached: %s", exc)
        return Denied(
            "the query monitor's store cannot be reached; try again later",
            reason="unavailable",
        )

    def _observe(self, key: tuple[str, str], watch: Watch, seen: list[Seen]) -> bool:
        """Count ``seen`` in ``key``'s state; raise its alarm if a detector trips."""
        state = self._state(key)
        dn, off, edge, conc = watch.distances, watch.off, watch.boundary, watch.concentration
        off_window = off.window if off is not None else 0
        with state.lock:
            before = state.size()
            for query in seen:
                counts = state.observe(query, window=self.alarm_window, off_window=off_window)
                if counts is None or state.last_alarm() is not None:
                    continue
                why = ""
                share = counts.outside / counts.outside_window if counts.outside_window else 0.0
                if off is not None and counts.seen >= off.min_queries and share >= off.threshold_:
                    why = (
                        f"{share:.0%} of the last {counts.outside_window} queries lie outside "
                        "the model's input distribution"
                    )
                elif (
                    edge is not None
                    and counts.seen >= edge.min_queries
                    and counts.boundary_window
                    and counts.boundary / counts.boundary_window >= edge.threshold_
                ):
                    why = (
                        f"{counts.boundary} of the last {counts.boundary_window} queries sit on "
                        "a decision boundary (decision-based probing)"
                    )
                elif conc is not None and counts.radius < conc.threshold_:
                    why = (
                        f"the last {conc.window} queries cluster around one point "
                        f"(spread {counts.radius:.2f}, natural inputs {conc.scale_:.2f})"
                    )
                elif counts.near_copies >= self.alarm_after:
                    why = (
                        f"{counts.near_copies} near-copies of earlier queries among the "
                        f"last {counts.recent}"
                    )
                elif dn is not None and counts.low < dn.threshold_:
                    why = f"query distances not natural (Shapiro-Wilk W={counts.low:.3f})"
                if why:
                    now = self.clock()
                    if state.raise_alarm(now, why):
                        self._act(key, now, why)
            alarmed = state.last_alarm() is not None
            grown = state.size() - before
        if grown and self.shared is None:
            with self._lock:
                if self._states.get(key) is state:
                    self._remembered += grown
                    if self._remembered > self.max_queries:
                        self._states.move_to_end(key)
                        self._trim()
        return bool(alarmed)

    def _act(self, key: tuple[str, str], now: float, why: str) -> None:
        """A new alarm: suspend (with a store and ``block``), and tell ``on_alarm``."""
        if self.store is not None and self.action == "block":
            until = now + self.suspend_seconds
            self._pending[key] = (until, why)
            threading.Thread(target=self._persist, args=(key, now, until, why), daemon=True).start()
        if self.on_alarm is not None:
            self.on_alarm(key[0], key[1], why)


def _scipy() -> None:
    try:
        import scipy.stats  # noqa: F401
    except ModuleNotFoundError as exc:  # pragma: no cover - scikit-learn brings it
        raise ConfigurationError(
            "[controls.monitor] distances = true needs SciPy: pip install 'atlasguard[onnx]'"
        ) from exc


def _pair(principal: Principal | None, model: str) -> tuple[str, str]:
    """The key of what the monitor remembers: (principal name, model)."""
    return (principal.name if principal is not None else "anonymous", model)


def _rows(request: Request) -> npt.NDArray[np.float64] | None:
    for array in request.inputs.values():
        if array.dtype.kind in "fiub" and array.ndim >= 1 and array.shape[0] > 0:
            return np.asarray(array, dtype=np.float64).reshape(array.shape[0], -1)
    return None


def _classes(response: Response, n: int, names: tuple[str, ...]) -> list[int]:
    scores = score_array(response, names)
    if scores is not None and len(scores) == n:
        return [int(c) for c in np.argmax(scores, axis=-1)]
    for array in response.outputs.values():
        if array.dtype.kind in "iu" and array.shape[:1] == (n,):
            return [int(c) for c in array.reshape(n, -1)[:, 0]]
    return [0] * n
