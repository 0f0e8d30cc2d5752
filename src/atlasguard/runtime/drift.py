"""Drift of the data a model sees (AML.M0008): is this window of inputs still from the
distribution the model was validated on?

:class:`DriftDetector` compares a window of inputs (and, optionally, the model's
scores on them) with reference ones by three families of tests:

* **features**: per feature, a two-sample Kolmogorov-Smirnov test (a chi-squared
  test for features with at most ``categorical_max`` distinct values), combined
  with a Bonferroni correction; the population stability index (PSI, ten
  reference-quantile bins) is reported beside each;
* **mmd**: the maximum mean discrepancy between the two sets under a Gaussian
  kernel (bandwidth: the median distance between reference rows), with a
  permutation p-value: multivariate shifts no single feature shows;
* **predictions**: black-box shift detection (Lipton et al., 2018; Rabanser et
  al., 2019): per class, a KS test on the model's scores, Bonferroni over classes.

A window has drifted when a family's p-value, Bonferroni-corrected over the
families, is under ``alpha``: ``alpha`` bounds the false alarms per window
tested. :class:`DriftGuard` runs it over sliding windows of served traffic
(``[controls.drift]``); each drift found is an audit record.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> d = DriftDetector(permutations=100).fit(rng.normal(size=(300, 3)))
>>> d.test(rng.normal(size=(100, 3))).drifted, d.test(rng.normal(1.0, size=(100, 3))).drifted
(False, True)
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from atlasguard.errors import ConfigurationError
from atlasguard.runtime.obfuscation import score_array
from atlasguard.runtime.pipeline import Arrays, Request, Response
from atlasguard.runtime.settings import DEFAULT_SCORE_OUTPUTS

if TYPE_CHECKING:
    from atlasguard.policy import Policy

__all__ = ["DriftDetector", "DriftGuard", "DriftResult", "FeatureDrift"]

FloatArray = npt.NDArray[np.float64]
logger = logging.getLogger("atlasguard")


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's test: its name, the test, its p-value and PSI."""

    feature: str
    test: str
    p_value: float
    psi: float


@dataclass(frozen=True)
class DriftResult:
    """The verdict on one window, each family's corrected p-value, the most shifted features."""

    drifted: bool
    p_values: dict[str, float]
    rows: int
    features: tuple[FeatureDrift, ...] = field(default=())

    def reason(self) -> str:
        shown = ", ".join(f"{k} p={v:.2g}" for k, v in self.p_values.items())
        top = ", ".join(f"{f.feature} (PSI {f.psi:.2f})" for f in self.features[:3])
        return f"drift over {self.rows} rows: {shown}" + (f"; most shifted: {top}" if top else "")


def _psi(reference: FloatArray, current: FloatArray, bins: int = 10) -> float:
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 3:
        return 0.0
    edges[0], edges[-1] = -np.inf, np.inf
    expected = np.histogram(reference, edges)[0] / len(reference)
    actual = np.histogram(current, edges)[0] / len(current)
    expected, actual = np.clip(expected, 1e-4, None), np.clip(actual, 1e-4, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _squared_distances(x: FloatArray) -> FloatArray:
    """Pairwise squared distances without an (n, n, features) intermediate."""
    norms = (x**2).sum(axis=1)
    return np.asarray(np.maximum(norms[:, None] + norms[None] - 2 * x @ x.T, 0.0), np.float64)


class DriftDetector:
    """Two-sample drift tests against a reference (see the module's docstring)."""

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        permutations: int = 200,
        categorical_max: int = 10,
        reference_size: int = 500,
        names: tuple[str, ...] = (),
        random_state: int = 0,
    ) -> None:
        self.alpha = alpha
        self.permutations = permutations
        self.categorical_max = categorical_max
        self.reference_size = reference_size
        self.names = names
        self.random_state = random_state

    def fit(self, x: npt.ArrayLike, scores: npt.ArrayLike | None = None) -> DriftDetector:
        rows = np.asarray(x, np.float64)
        if rows.ndim != 2 or len(rows) < 10:
            raise ValueError("the reference needs at least 10 rows of features")
        self.reference_ = rows
        self.scores_ = None if scores is None else np.asarray(scores, np.float64)
        # per feature: its values and their counts in the reference (one unique per fit)
        levels = [np.unique(rows[:, j], return_counts=True) for j in range(rows.shape[1])]
        self.categorical_ = np.array([len(v) <= self.categorical_max for v, _ in levels])
        self.levels_ = [
            (v, c) if cat else None for (v, c), cat in zip(levels, self.categorical_, strict=True)
        ]
        rng = np.random.default_rng(self.random_state)
        take = min(len(rows), self.reference_size)
        self.sample_ = rows[rng.choice(len(rows), size=take, replace=False)]
        self.rng_ = rng
        distances = np.sqrt(_squared_distances(self.sample_))
        positive = distances[distances > 0]
        self.bandwidth_ = float(np.median(positive)) if len(positive) else 1.0
        return self

    def _feature_tests(self, x: FloatArray) -> tuple[float, list[FeatureDrift]]:
        from scipy import stats

        found = []
        for j in range(x.shape[1]):
            ref, cur = self.reference_[:, j], x[:, j]
            name = self.names[j] if j < len(self.names) else f"feature {j}"
            level = self.levels_[j]
            if level is not None:  # a categorical feature
                # Values the reference never took are pooled into one "unseen" category:
                # as categories of their own, each new value (noise makes every one new)
                # adds a column worth only reference/window to the statistic, so the test
                # lost power as the window grew (a diluted shift passed at window 200).
                values, counts = level
                seen = np.searchsorted(values, cur).clip(0, len(values) - 1)
                known = values[seen] == cur
                now = np.bincount(seen[known], minlength=len(values))
                table = np.array([[*counts, 0], [*now, int((~known).sum())]])
                table = table[:, table.sum(axis=0) > 0]
                p = 1.0 if table.shape[1] < 2 else float(stats.chi2_contingency(table)[1])
                share = np.clip(table / table.sum(axis=1, keepdims=True), 1e-4, None)
                psi = float(np.sum((share[1] - share[0]) * np.log(share[1] / share[0])))
                found.append(FeatureDrift(name, "chi-squared", p, psi))
            else:
                p = float(stats.ks_2samp(ref, cur).pvalue)
                found.append(FeatureDrift(name, "ks", p, _psi(ref, cur)))
        found.sort(key=lambda f: f.p_value)
        corrected = min(1.0, found[0].p_value * len(found)) if found else 1.0
        return corrected, found

    def _mmd(self, a: FloatArray, b: FloatArray) -> float:
        both = np.vstack([a, b])
        squared = _squared_distances(both)
        kernel = np.exp(-squared / (2 * self.bandwidth_**2))
        n = len(a)

        def statistic(order: npt.NDArray[np.intp]) -> float:
            k = kernel[np.ix_(order, order)]
            xx, yy, xy = k[:n, :n], k[n:, n:], k[:n, n:]
            m = len(both) - n
            return float(
                (xx.sum() - np.trace(xx)) / (n * (n - 1))
                + (yy.sum() - np.trace(yy)) / (m * (m - 1))
                - 2 * xy.mean()
            )

        observed = statistic(np.arange(len(both)))
        exceed = sum(
            statistic(self.rng_.permutation(len(both))) >= observed
            for _ in range(self.permutations)
        )
        return (1 + exceed) / (1 + self.permutations)

    def _predictions(self, scores: FloatArray) -> float:
        from scipy import stats

        if self.scores_ is None:
            raise ValueError("prediction drift needs the reference's scores: give them to fit")
        classes = scores.shape[1]
        smallest = min(
            float(stats.ks_2samp(self.scores_[:, c], scores[:, c]).pvalue) for c in range(classes)
        )
        return float(min(1.0, smallest * classes))

    def test(self, x: npt.ArrayLike, scores: npt.ArrayLike | None = None) -> DriftResult:
        """Test one window; ``scores``: the model's on it (needs reference scores in fit)."""
        rows = np.asarray(x, np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.reference_.shape[1] or len(rows) < 5:
            raise ValueError(
                f"a window needs at least 5 rows of {self.reference_.shape[1]} features"
            )
        p: dict[str, float] = {}
        p["features"], features = self._feature_tests(rows)
        p["mmd"] = self._mmd(self.sample_, rows)
        if scores is not None and self.scores_ is not None:
            p["predictions"] = self._predictions(np.asarray(scores, np.float64))
        corrected = {k: min(1.0, v * len(p)) for k, v in p.items()}
        drifted = min(corrected.values()) < self.alpha
        return DriftResult(drifted, corrected, len(rows), tuple(features[:10]))


class DriftGuard:
    """Watch served traffic per model over sliding windows; report drift to ``on_drift``.

    Every ``every`` answered rows, the last ``window`` rows (inputs, and the model's
    scores if it returns them) are tested off the request path, in one background
    thread; a drifted window calls ``on_drift(model, why)`` (the deployment records it
    in the audit log). Requests are never refused or changed.
    """

    name = "drift"
    mitigates = frozenset({"AML.M0008"})
    blocking = False

    def __init__(
        self,
        detectors: dict[str, tuple[DriftDetector, str | None]],
        *,
        window: int = 200,
        every: int = 100,
        score_outputs: tuple[str, ...] = DEFAULT_SCORE_OUTPUTS,
        on_drift: Callable[[str, str], None] | None = None,
    ) -> None:
        self.detectors = detectors
        self.window = window
        self.every = every
        self.score_outputs = score_outputs
        self.on_drift = on_drift
        self._rows: dict[str, deque[tuple[FloatArray, FloatArray | None]]] = {
            m: deque(maxlen=window) for m in detectors
        }
        self._since: dict[str, int] = dict.fromkeys(detectors, 0)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atlasguard-drift")
        self.results: deque[tuple[str, DriftResult]] = deque(maxlen=100)  # the latest

    @classmethod
    def from_policy(
        cls,
        policy: Policy,
        models: dict[str, Callable[[Arrays], Arrays]],
        *,
        on_drift: Callable[[str, str], None] | None = None,
    ) -> DriftGuard | None:
        """One detector per model with a reference (``calibration`` inputs if the model has
        them: a model scores its training rows more surely than new ones)."""
        from atlasguard.runtime.detectors import model_scores
        from atlasguard.runtime.reference import calibration_inputs, reference_inputs
        from atlasguard.runtime.settings import DriftSettings, OutputSettings

        settings = policy.settings("drift")
        if not isinstance(settings, DriftSettings):  # pragma: no cover - plan() checked
            raise ConfigurationError("controls.drift: unexpected settings")
        output = policy.settings("output")
        names = output.score_outputs if isinstance(output, OutputSettings) else None
        detectors: dict[str, tuple[DriftDetector, str | None]] = {}
        for name, predict in models.items():
            if settings.models is not None and name not in settings.models:
                continue
            held = calibration_inputs(policy, name)
            reference = held if held is not None else reference_inputs(policy, name)
            spec = policy.models.get(name)
            if reference is None or spec is None or not spec.inputs:
                if settings.models is not None:
                    raise ConfigurationError(
                        f"{policy.where('controls.drift')}: model {name!r} needs a reference: "
                        f'set calibration = "FILE.npy" (or reference) in [models.{name}]'
                    )
                continue
            declared = spec.inputs[0]
            shape = tuple(d for d in declared.shape[1:])
            scores = model_scores(predict, declared.name, declared.datatype, shape, names)
            try:
                reference_scores = scores(reference)
            except Exception:
                reference_scores = None
            detector = DriftDetector(alpha=settings.alpha, permutations=settings.permutations)
            detectors[name] = (detector.fit(reference, reference_scores), declared.name)
        if not detectors:
            return None
        return cls(
            detectors,
            window=settings.window,
            every=settings.every,
            score_outputs=names or DEFAULT_SCORE_OUTPUTS,
            on_drift=on_drift,
        )

    def before(self, request: Request) -> Request:
        return request

    def after(self, request: Request, response: Response) -> Response:
        entry = self.detectors.get(request.model)
        if entry is None:
            return response
        array = request.inputs.get(entry[1]) if entry[1] else None
        if array is None or array.ndim == 0 or array.shape[0] == 0:
            return response
        rows = np.asarray(array, np.float64).reshape(len(array), -1)
        if rows.shape[1] != entry[0].reference_.shape[1]:
            return response
        found = score_array(response, self.score_outputs)
        scores = None if found is None else np.asarray(found, np.float64).reshape(len(rows), -1)
        with self._lock:
            buffer = self._rows[request.model]
            for i, row in enumerate(rows):
                buffer.append((row, None if scores is None else scores[i]))
            self._since[request.model] += len(rows)
            due = len(buffer) >= self.window and self._since[request.model] >= self.every
            if due:
                self._since[request.model] = 0
                window = list(buffer)
        if due:
            self._pool.submit(self._test, request.model, window)
        return response

    def _test(self, model: str, window: list[tuple[FloatArray, FloatArray | None]]) -> None:
        detector = self.detectors[model][0]
        x = np.array([r for r, _ in window])
        have_scores = all(s is not None for _, s in window)
        scores = np.array([s for _, s in window]) if have_scores else None
        try:
            result = detector.test(x, scores)
        except Exception:  # a broken window must not stop the watching
            logger.exception("drift: cannot test a window of %r", model)
            return
        self.results.append((model, result))
        if result.drifted and self.on_drift is not None:
            self.on_drift(model, result.reason())

    def drain(self) -> None:
        """Wait until every window submitted so far is tested (tests, shutdown)."""
        self._pool.submit(lambda: None).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
