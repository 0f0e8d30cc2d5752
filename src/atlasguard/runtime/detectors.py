"""Per-input detectors (AML.M0015): is this one input adversarial, or out of place?

Each detector follows the estimator contract: hyper-parameters in ``__init__``,
``fit(X)`` on clean inputs, ``score_samples(X)`` (higher = more suspect),
``calibrate(X_clean, fpr=...)`` setting ``threshold_`` so that a share ``fpr``
of clean inputs score above it, and ``predict(X)`` (True = detected). Fit and
calibration data must be disjoint; :func:`cross_calibrate` scores each clean
row with a detector fit on the others.

* :class:`SqueezingDetector` (Xu et al., 2018): the L1 distance between the
  model's scores on the input and on squeezed copies of it (bit-depth
  reduction, median smoothing). Adversarial inputs sit close to a decision
  boundary that squeezing crosses back; natural ones rarely do.
* :class:`MahalanobisDetector` (Lee et al., 2018): the distance to the nearest
  class of the clean inputs, with one shrunk covariance, in input space or in
  the model's output space.
* :class:`KnnDetector`: the mean distance to the ``k`` nearest clean inputs.
* :class:`StripDetector` (Gao et al., 2019): an input whose answer survives
  being blended with clean inputs carries a backdoor trigger (AML.M0008 at run
  time).
* :class:`DisagreementDetector`: how much the members of an ensemble disagree
  (:mod:`atlasguard.runtime.ensemble`).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> clean = rng.normal(size=(400, 5))
>>> knn = KnnDetector(k=3).fit(clean[:200]).calibrate(clean[200:], fpr=0.05)
>>> bool(knn.predict(np.full((1, 5), 6.0))[0]), float(knn.predict(clean[200:]).mean()) <= 0.06
(True, True)
"""

from __future__ import annotations

import copy
import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from atlasguard.errors import ConfigurationError
from atlasguard.runtime.obfuscation import labels_only, score_array
from atlasguard.runtime.pipeline import Arrays, Denied, Request, Response
from atlasguard.runtime.restoration import bit_depth, median_smooth
from atlasguard.runtime.settings import DEFAULT_SCORE_OUTPUTS

if TYPE_CHECKING:
    from atlasguard.policy import Policy

__all__ = [
    "Detector",
    "DetectorGuard",
    "DisagreementDetector",
    "KnnDetector",
    "MahalanobisDetector",
    "SqueezingDetector",
    "StripDetector",
    "build_detectors",
    "cross_calibrate",
    "threshold_for",
]

FloatArray = npt.NDArray[np.float64]
Scores = Callable[[FloatArray], FloatArray]  # rows -> [n, classes] probabilities
DetectorAction = Literal["log", "flag", "label", "block"]

logger = logging.getLogger("atlasguard")


class Detector(Protocol):
    """The estimator contract every per-input detector follows."""

    threshold_: float

    def fit(self, x: FloatArray) -> Detector: ...

    def score_samples(self, x: FloatArray) -> FloatArray: ...

    def calibrate(self, x: FloatArray, *, fpr: float) -> Detector: ...

    def predict(self, x: FloatArray) -> npt.NDArray[np.bool_]: ...


def threshold_for(scores: FloatArray, fpr: float) -> float:
    """The score above which a share ``fpr`` of ``scores`` (clean) lies."""
    if not 0.0 < fpr < 1.0:
        raise ValueError("fpr must be in (0, 1)")
    if len(scores) == 0:
        raise ValueError("calibration needs clean inputs")
    return float(np.quantile(np.asarray(scores, np.float64), 1.0 - fpr, method="higher"))


class _Calibrated:
    """``calibrate`` and ``predict`` over a subclass's ``score_samples``."""

    threshold_: float

    def score_samples(self, x: FloatArray) -> FloatArray:  # pragma: no cover - abstract
        raise NotImplementedError

    def calibrate(self, x: FloatArray, *, fpr: float) -> Any:
        self.threshold_ = threshold_for(self.score_samples(x), fpr)
        return self

    def predict(self, x: FloatArray) -> npt.NDArray[np.bool_]:
        """True for each row scored above the threshold, or not scored at all (NaN)."""
        if not hasattr(self, "threshold_"):
            raise ValueError(f"{type(self).__name__} is not calibrated: call calibrate first")
        return np.asarray(~(self.score_samples(x) <= self.threshold_))


def _rows(x: npt.ArrayLike) -> FloatArray:
    array = np.asarray(x, np.float64)
    return array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1)


def _squeeze_median(x: FloatArray, shape: tuple[int, ...], size: int) -> FloatArray:
    return median_smooth(x.reshape(len(x), *shape), size).reshape(len(x), -1)


class SqueezingDetector(_Calibrated):
    """Feature squeezing: the largest L1 change of the scores under each squeezer.

    ``scores`` maps input rows to class probabilities; ``bits`` is the bit depth
    of the first squeezer (over ``value_range``), ``median`` the window of the
    second (images only: ``shape`` given); either may be ``0`` to leave it out.
    """

    def __init__(
        self,
        scores: Scores,
        *,
        bits: int = 3,
        median: int = 2,
        shape: tuple[int, ...] = (),
        value_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        self.scores = scores
        self.bits = bits
        self.median = median
        self.shape = shape
        self.value_range = value_range

    def fit(self, x: FloatArray) -> SqueezingDetector:
        if not self.bits and not (self.median and self.shape):
            raise ValueError("feature squeezing needs a bit depth, or a median and a shape")
        self.n_features_ = _rows(x).shape[1]
        return self

    def squeezed(self, x: FloatArray) -> list[FloatArray]:
        rows = _rows(x)
        out = []
        if self.bits:
            out.append(bit_depth(rows, self.bits, *self.value_range))
        if self.median and len(self.shape) >= 2:
            out.append(_squeeze_median(rows, self.shape, self.median))
        return out

    def score_samples(self, x: FloatArray, base: FloatArray | None = None) -> FloatArray:
        """``base``: the scores the model already gave on ``x`` (saves one call)."""
        rows = _rows(x)
        p = np.asarray(self.scores(rows) if base is None else base, np.float64)
        squeezed = self.squeezed(rows)
        answers = np.asarray(self.scores(np.concatenate(squeezed)), np.float64)
        parts = answers.reshape(len(squeezed), len(rows), -1)
        return np.asarray(np.abs(parts - p[None]).sum(axis=-1).max(axis=0), np.float64)


class MahalanobisDetector(_Calibrated):
    """Distance to the nearest class of the clean inputs, one shrunk covariance.

    Classes come from ``labels`` (a function of rows, e.g. the model's argmax), or
    the clean inputs form one class. ``embed`` maps rows to the space measured
    (the model's scores for output space; the rows themselves by default).
    ``shrinkage`` pulls the covariance toward its mean variance (Ledoit-Wolf
    style), so few clean inputs in many dimensions still give a stable inverse.
    """

    def __init__(
        self,
        *,
        labels: Callable[[FloatArray], npt.NDArray[np.int64]] | None = None,
        embed: Callable[[FloatArray], FloatArray] | None = None,
        shrinkage: float = 0.001,
    ) -> None:
        self.labels = labels
        self.embed = embed
        self.shrinkage = shrinkage

    def _space(self, x: FloatArray) -> FloatArray:
        rows = _rows(x)
        return _rows(self.embed(rows)) if self.embed is not None else rows

    def fit(self, x: FloatArray) -> MahalanobisDetector:
        z = self._space(x)
        classes = (
            np.asarray(self.labels(_rows(x))) if self.labels is not None else np.zeros(len(z), int)
        )
        keep = [c for c in np.unique(classes) if (classes == c).sum() >= 2]
        if not keep:
            raise ValueError("Mahalanobis needs at least two clean inputs of one class")
        self.means_ = np.stack([z[classes == c].mean(axis=0) for c in keep])
        centred = np.concatenate([z[classes == c] - z[classes == c].mean(axis=0) for c in keep])
        cov = centred.T @ centred / max(1, len(centred) - len(keep))
        target = np.trace(cov) / len(cov) * np.eye(len(cov))
        shrunk = (1 - self.shrinkage) * cov + self.shrinkage * target
        self.precision_ = np.linalg.pinv(shrunk + 1e-9 * np.eye(len(cov)))
        return self

    def score_samples(self, x: FloatArray) -> FloatArray:
        z = self._space(x)
        diff = z[:, None, :] - self.means_[None]
        d2 = np.einsum("nkd,de,nke->nk", diff, self.precision_, diff)
        return np.asarray(np.sqrt(np.maximum(d2.min(axis=1), 0.0)), np.float64)

    def gradient(self, x: FloatArray) -> FloatArray:
        """d score / d x in input space (for an attack that knows the detector)."""
        if self.embed is not None:
            raise ValueError("the gradient is known in input space only")
        z = _rows(x)
        diff = z[:, None, :] - self.means_[None]
        d2 = np.einsum("nkd,de,nke->nk", diff, self.precision_, diff)
        nearest = diff[np.arange(len(z)), d2.argmin(axis=1)]
        score = np.sqrt(np.maximum(d2.min(axis=1), 1e-12))
        return np.asarray((nearest @ self.precision_) / score[:, None], np.float64)


class KnnDetector(_Calibrated):
    """The mean Euclidean distance to the ``k`` nearest clean inputs."""

    def __init__(self, *, k: int = 5, embed: Callable[[FloatArray], FloatArray] | None = None):
        self.k = k
        self.embed = embed

    def _space(self, x: FloatArray) -> FloatArray:
        rows = _rows(x)
        return _rows(self.embed(rows)) if self.embed is not None else rows

    def fit(self, x: FloatArray) -> KnnDetector:
        self.reference_ = self._space(x)
        if len(self.reference_) < self.k:
            raise ValueError(f"k-NN needs at least k={self.k} clean inputs")
        self.squares_ = (self.reference_**2).sum(axis=1)
        return self

    def _nearest(self, z: FloatArray) -> tuple[FloatArray, npt.NDArray[np.intp]]:
        d2 = (z**2).sum(axis=1)[:, None] - 2 * z @ self.reference_.T + self.squares_[None]
        index = np.argpartition(d2, self.k - 1, axis=1)[:, : self.k]
        near = np.take_along_axis(d2, index, axis=1)
        return np.sqrt(np.maximum(near, 0.0)), index

    def score_samples(self, x: FloatArray) -> FloatArray:
        distances, _ = self._nearest(self._space(x))
        return np.asarray(distances.mean(axis=1), np.float64)

    def gradient(self, x: FloatArray) -> FloatArray:
        """d score / d x in input space (for an attack that knows the detector)."""
        if self.embed is not None:
            raise ValueError("the gradient is known in input space only")
        z = _rows(x)
        distances, index = self._nearest(z)
        towards = z[:, None, :] - self.reference_[index]
        unit = towards / np.maximum(distances, 1e-12)[..., None]
        return np.asarray(unit.mean(axis=1), np.float64)


class StripDetector(_Calibrated):
    """STRIP (Gao et al., 2019): a backdoor trigger keeps its answer when the input is
    blended with other clean inputs; a clean input's answer scatters.

    Each input is superimposed on ``samples`` clean inputs drawn from the ones given to
    ``fit`` (the sum, clipped to their range, as in the paper; ``alpha`` below 1 averages
    instead); the score is minus the mean entropy of the
    model's answers on the blends (higher = surer whatever it is mixed with = more
    suspect). It costs ``samples`` extra rows through the model per input.
    """

    def __init__(
        self, scores: Scores, *, samples: int = 16, alpha: float = 1.0, random_state: int = 0
    ) -> None:
        self.scores = scores
        self.samples = samples
        self.alpha = alpha
        self.random_state = random_state

    def fit(self, x: FloatArray) -> StripDetector:
        rows = _rows(x)
        if len(rows) < self.samples:
            raise ValueError(f"STRIP needs at least {self.samples} clean inputs to blend with")
        self.pool_ = rows
        self.low_, self.high_ = float(rows.min()), float(rows.max())
        return self

    def _partners(self, rows: FloatArray) -> npt.NDArray[np.intp]:
        # the same input is always blended with the same partners: a score is repeatable,
        # and sending an input again does not draw new ones
        picks = [
            np.random.default_rng([self.random_state, zlib.crc32(row.tobytes())]).integers(
                0, len(self.pool_), size=self.samples
            )
            for row in np.ascontiguousarray(rows)
        ]
        return np.asarray(picks, np.intp).reshape(len(rows), self.samples)

    def score_samples(self, x: FloatArray) -> FloatArray:
        rows = _rows(x)
        other = self.pool_[self._partners(rows)]
        if self.alpha >= 1.0:
            blends = np.clip(rows[:, None, :] + other, self.low_, self.high_)
        else:
            blends = self.alpha * rows[:, None, :] + (1 - self.alpha) * other
        p = np.asarray(self.scores(blends.reshape(-1, rows.shape[1])), np.float64)
        p = np.clip(p, 1e-12, 1.0).reshape(len(rows), self.samples, -1)
        entropy = -(p * np.log(p)).sum(axis=-1).mean(axis=1)
        return np.asarray(-entropy, np.float64)


class DisagreementDetector(_Calibrated):
    """Ensemble disagreement: the mean L1 distance of each member's scores to their mean."""

    def __init__(self, members: Sequence[Scores]) -> None:
        self.members = members

    def fit(self, x: FloatArray) -> DisagreementDetector:
        if len(self.members) < 2:
            raise ValueError("disagreement needs at least two members")
        return self

    def score_samples(self, x: FloatArray) -> FloatArray:
        rows = _rows(x)
        answers = np.stack([np.asarray(m(rows), np.float64) for m in self.members])
        return np.asarray(np.abs(answers - answers.mean(axis=0)).sum(axis=-1).mean(axis=0))


# -- the guard --------------------------------------------------------------------------


@dataclass
class Watched:
    """The calibrated detectors of one model, and how to reach its scores."""

    detectors: dict[str, Detector]
    input: str = ""  # "" = the first float input


@dataclass
class DetectorGuard:
    """The guard: every input of a watched model judged by its detectors after the model ran.

    A row is detected when any detector scores it above its threshold (each is
    calibrated to ``fpr / len(detectors)`` so the union stays near ``fpr``).
    ``action``: ``log`` (an alarm only), ``flag`` (the response says so in
    ``flags``), ``label`` (scores withheld from the whole response, and
    flagged) or ``block`` (refused with reason ``detected``). ``on_alarm(principal, model,
    why)`` is called for each detection.
    """

    watched: dict[str, Watched]
    action: DetectorAction = "label"
    score_outputs: tuple[str, ...] = DEFAULT_SCORE_OUTPUTS
    on_alarm: Callable[[str, str, str], None] | None = None
    name: str = "detectors"
    mitigates: frozenset[str] = frozenset({"AML.M0015"})
    blocking: bool = False

    @classmethod
    def for_model(
        cls,
        policy: Policy,
        model: str,
        predict: Callable[[Arrays], Arrays],
        *,
        on_alarm: Callable[[str, str, str], None] | None = None,
    ) -> DetectorGuard | None:
        """The detectors ``[controls.detectors]`` gives ``model``, fit and calibrated now.

        ``None`` when the model is not watched (no reference, or not listed).
        Thresholds come from the model's ``calibration`` inputs, else from
        out-of-fold scores of the reference (:func:`cross_calibrate`).
        """
        from atlasguard.runtime.reference import calibration_inputs, reference_inputs
        from atlasguard.runtime.settings import DetectorSettings, OutputSettings

        settings = policy.settings("detectors")
        if not isinstance(settings, DetectorSettings):  # pragma: no cover - plan() checked
            raise ConfigurationError("controls.detectors: unexpected settings")
        if settings.models is not None and model not in settings.models:
            return None
        reference = reference_inputs(policy, model)
        spec = policy.models.get(model)
        if reference is None or spec is None or not spec.inputs:
            if settings.models is not None:
                raise ConfigurationError(
                    f"{policy.where('controls.detectors')}: model {model!r} needs a reference "
                    f'(clean inputs): set reference = "FILE.npy" in [models.{model}]'
                )
            return None
        output = policy.settings("output")
        names = output.score_outputs if isinstance(output, OutputSettings) else None
        declared = spec.inputs[0]
        shape = tuple(d for d in declared.shape[1:])
        width = int(np.prod(shape)) if shape and all(d > 0 for d in shape) else None
        if width != reference.shape[1]:
            raise ConfigurationError(
                f"{policy.where(f'models.{model}')}: the detectors need the input "
                f"{declared.name!r} of a fixed shape matching its reference rows "
                f"({reference.shape[1]} values each); declare its shape, e.g. "
                f"[-1, {reference.shape[1]}], or leave the model out of "
                "[controls.detectors] models"
            )
        value_range = (
            (declared.min, declared.max)
            if declared.min is not None and declared.max is not None
            else (float(reference.min()), float(reference.max()))
        )
        scores = model_scores(predict, declared.name, declared.datatype, shape, names)
        detectors = build_detectors(
            scores,
            reference,
            squeezing=settings.squeezing,
            squeeze_bits=settings.squeeze_bits,
            squeeze_median=settings.squeeze_median,
            mahalanobis=settings.mahalanobis,
            shrinkage=settings.shrinkage,
            knn=settings.knn,
            strip=settings.strip,
            strip_samples=settings.strip_samples,
            fpr=settings.fpr,
            image_shape=shape if len(shape) in (2, 3) else _square(shape),
            value_range=value_range,
            calibration=calibration_inputs(policy, model),
        )
        if not detectors:
            return None
        return cls(
            {model: Watched(detectors, declared.name)},
            action=settings.action,
            score_outputs=names or DEFAULT_SCORE_OUTPUTS,
            on_alarm=on_alarm,
        )

    def before(self, request: Request) -> Request:
        return request

    def after(self, request: Request, response: Response) -> Response:
        watched = self.watched.get(request.model)
        if watched is None:
            return response
        array = request.inputs.get(watched.input) if watched.input else None
        if array is None:
            array = next((a for a in request.inputs.values() if a.dtype.kind in "fiu"), None)
        if array is None or array.ndim == 0 or array.shape[0] == 0:
            return response
        rows = _rows(array)
        found_scores = score_array(response, self.score_outputs)
        base = None if found_scores is None else np.asarray(found_scores, np.float64)
        hits: list[str] = []
        for name, detector in watched.detectors.items():
            if isinstance(detector, SqueezingDetector) and base is not None:
                found = ~(detector.score_samples(rows, base=base) <= detector.threshold_)
            else:
                found = detector.predict(rows)
            if found.any():
                hits.append(f"{name} ({int(found.sum())} of {len(rows)} inputs)")
        if not hits:
            return response
        why = "detected: " + ", ".join(hits)
        if self.on_alarm is not None:
            who = request.principal.name if request.principal is not None else "anonymous"
            self.on_alarm(who, request.model, why)
        if self.action == "block":
            raise Denied(
                f"the input to {request.model!r} looks adversarial or unlike the model's "
                "inputs; it was not answered. If it is a real input, ask the deployment's "
                "administrator to review the detection",
                reason="detected",
            )
        noted = response.with_notes((why,))  # in the request's own audit record
        if self.action == "label":
            labelled = noted.with_outputs(labels_only(response, self.score_outputs))
            return labelled.with_flags(("adversarial-input",))
        if self.action == "flag":
            return noted.with_flags(("adversarial-input",))
        return noted


def cross_calibrate(
    detector: Detector, rows: FloatArray, *, fpr: float, folds: int = 5, random_state: int = 0
) -> Detector:
    """Fit ``detector`` on all of ``rows`` with a threshold from out-of-fold scores.

    Each fold is scored by the detector fit on the other folds, so every clean
    row is judged by a detector that never saw it (disjoint fit and calibration,
    without halving the data either gets); the threshold is their ``1 - fpr``
    quantile, and the detector is then fit on every row.
    """
    rows = _rows(rows)
    if len(rows) < 2 * folds:
        raise ConfigurationError(
            f"the detectors need a reference of at least {2 * folds} clean inputs"
        )
    order = np.random.default_rng(random_state).permutation(len(rows))
    scores = np.empty(len(rows))
    for part in np.array_split(order, folds):
        rest = np.setdiff1d(order, part)
        scores[part] = copy.copy(detector).fit(rows[rest]).score_samples(rows[part])
    detector.fit(rows)
    detector.threshold_ = threshold_for(scores, fpr)
    return detector


def build_detectors(
    scores: Scores,
    reference: FloatArray,
    *,
    squeezing: bool = False,
    squeeze_bits: int = 3,
    squeeze_median: int = 0,
    mahalanobis: bool = True,
    shrinkage: float = 0.001,
    knn: bool = False,
    strip: bool = False,
    strip_samples: int = 16,
    fpr: float = 0.01,
    image_shape: tuple[int, ...] = (),
    value_range: tuple[float, float] = (0.0, 1.0),
    calibration: FloatArray | None = None,
    random_state: int = 0,
) -> dict[str, Detector]:
    """The detectors, fit on ``reference`` and calibrated on ``calibration``.

    ``calibration`` should be clean inputs the model was not trained on: a
    detector that asks the model (feature squeezing) finds the model surer of
    its training rows than of new ones, so thresholds set on training rows let
    through more false positives than they promise. Without it, each detector
    is cross-calibrated on ``reference`` (:func:`cross_calibrate`). Each is
    calibrated to ``fpr / n`` (n detectors), so a row flagged by any of them is
    a false positive on about ``fpr`` of clean inputs. The defaults are the
    ones ``bench/efficacy/tune_detectors.py`` chose on the tuning split.
    """
    detectors: dict[str, Detector] = {}
    if squeezing:
        detectors["feature squeezing"] = SqueezingDetector(
            scores,
            bits=squeeze_bits,
            median=squeeze_median if len(image_shape) >= 2 else 0,
            shape=image_shape,
            value_range=value_range,
        )
    if mahalanobis:
        detectors["mahalanobis"] = MahalanobisDetector(shrinkage=shrinkage)
    if knn:
        detectors["k-nn"] = KnnDetector(k=1)
    if strip:
        detectors["strip"] = StripDetector(scores, samples=strip_samples, random_state=random_state)
    share = fpr / max(1, len(detectors))
    for detector in detectors.values():
        if calibration is not None:
            detector.fit(_rows(reference)).calibrate(_rows(calibration), fpr=share)
        else:
            cross_calibrate(detector, reference, fpr=share, random_state=random_state)
    return detectors


def model_scores(
    predict: Callable[[Arrays], Arrays],
    input_name: str,
    datatype: str,
    shape: tuple[int, ...],
    names: tuple[str, ...] | None,
) -> Scores:
    """Rows -> the model's scores through ``predict`` (the model's own arrays in and out)."""
    from atlasguard.runtime.validate import numpy_dtype

    dtype = numpy_dtype(datatype)
    dims = tuple(d for d in shape)

    def scores(rows: FloatArray) -> FloatArray:
        batch = np.asarray(rows).reshape(len(rows), *dims) if all(d > 0 for d in dims) else rows
        outputs = predict({input_name: batch.astype(dtype)})
        found = score_array(Response(outputs), names or DEFAULT_SCORE_OUTPUTS)
        if found is None:
            raise ConfigurationError(
                "the detectors need a scores output (probabilities); the model returns "
                f"{sorted(outputs)}"
            )
        return np.asarray(found, np.float64)

    return scores


def _square(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A flat input of n*n features is an n x n image for the median squeezer."""
    if len(shape) == 1 and shape[0] > 0:
        side = round(shape[0] ** 0.5)
        if side * side == shape[0] and side >= 4:
            return (side, side)
    return ()
