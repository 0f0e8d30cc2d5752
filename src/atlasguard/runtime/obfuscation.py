"""Output policies per role (AML.M0002 Passive ML Output Obfuscation).

Full confidence scores make model extraction and membership inference cheap. An
output policy reveals less, per role of the principal asking:

* ``full``: the scores unchanged;
* ``top_k``: the k largest scores of each row kept, the others set to 0 (the tensor
  keeps its name, shape and datatype, so it stays a valid Open Inference Protocol
  output of the declared schema);
* ``round``: scores rounded to ``decimals`` decimals;
* ``label``: only the predicted class index (argmax over the last axis), an INT64
  tensor of shape ``scores.shape[:-1]`` under the same output name;
* ``noise``: Laplace (or Gaussian) noise of scale ``noise_scale`` added, then clipped
  to [0, 1] and each row renormalised to sum 1 (for probability outputs).

Steps combine with ``+`` and apply left to right: ``"top_k+round"``, ``"noise+round"``.
``label`` may only come last. Which outputs are scores is configured per model;
every other output passes through unchanged.

>>> import numpy as np
>>> from atlasguard.runtime.obfuscation import OutputPolicy
>>> scores = np.array([[0.6182, 0.3011, 0.0807]], dtype=np.float32)
>>> OutputPolicy.parse("top_k+round", top_k=2, decimals=1).apply(scores)
array([[0.6, 0.3, 0. ]], dtype=float32)
>>> OutputPolicy.parse("label").apply(scores)
array([0])
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from atlasguard.errors import UsageError
from atlasguard.runtime.pipeline import Principal, Request, Response
from atlasguard.runtime.settings import (
    DEFAULT_SCORE_OUTPUTS,
    STEPS,
    OutputSettings,
    Step,
    output_steps,
)

__all__ = [
    "DEFAULT_SCORE_OUTPUTS",
    "STEPS",
    "OutputGuard",
    "OutputPolicy",
    "OutputSettings",
    "add_noise",
    "label_only",
    "labels_only",
    "round_scores",
    "score_array",
    "top_k",
]


FloatArray = npt.NDArray[np.floating]


def top_k(scores: FloatArray, k: int) -> FloatArray:
    """Keep the ``k`` largest scores along the last axis, set the rest to 0.

    Exactly ``k`` entries survive per row even with ties (the lowest indices win).
    """
    if k <= 0:
        raise UsageError(f"top_k must be positive, got {k}")
    if k >= scores.shape[-1]:
        return scores.copy()
    # A stable sort on the negated scores breaks ties by index, deterministically.
    order = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    out = np.zeros_like(scores)
    np.put_along_axis(out, order, np.take_along_axis(scores, order, axis=-1), axis=-1)
    return out


def round_scores(scores: FloatArray, decimals: int) -> FloatArray:
    """Scores rounded to ``decimals`` decimals (``numpy.round``; same dtype)."""
    if decimals < 0:
        raise UsageError(f"decimals must be >= 0, got {decimals}")
    return np.round(scores, decimals)


def label_only(scores: FloatArray) -> npt.NDArray[np.int64]:
    """The predicted class index per row: argmax over the last axis, as int64."""
    labels: npt.NDArray[np.int64] = np.argmax(scores, axis=-1).astype(np.int64)
    return labels


def add_noise(
    scores: FloatArray,
    scale: float,
    rng: np.random.Generator,
    *,
    kind: Literal["laplace", "gaussian"] = "laplace",
) -> FloatArray:
    """Probabilities with calibrated noise: add noise, clip to [0, 1], renormalise rows.

    A row whose every entry clips to 0 becomes the one-hot vector of its original
    argmax (what the ``label`` policy would reveal anyway).
    """
    if not scale >= 0:  # also refuses NaN
        raise UsageError(f"noise_scale must be >= 0, got {scale}")
    values = scores.astype(np.float64)
    if kind == "laplace":
        noise = rng.laplace(0.0, scale, size=values.shape)
    else:
        noise = rng.normal(0.0, scale, size=values.shape)
    noisy = np.clip(np.nan_to_num(values + noise, nan=0.0), 0.0, 1.0)
    total = noisy.sum(axis=-1, keepdims=True)
    empty = total[..., 0] <= 0
    if np.any(empty):
        onehot = np.zeros_like(noisy)
        np.put_along_axis(onehot, np.argmax(values, axis=-1)[..., None], 1.0, axis=-1)
        noisy[empty] = onehot[empty]
        total = noisy.sum(axis=-1, keepdims=True)
    out: FloatArray = np.clip(noisy / total, 0.0, 1.0)
    return out.astype(scores.dtype if np.issubdtype(scores.dtype, np.floating) else np.float32)


@dataclass(frozen=True, slots=True)
class OutputPolicy:
    """A sequence of steps with their parameters; ``apply`` runs them in order."""

    steps: tuple[Step, ...] = ("full",)
    top_k: int = 3
    decimals: int = 2
    noise_scale: float = 0.02
    noise: Literal["laplace", "gaussian"] = "laplace"

    def __post_init__(self) -> None:
        if not self.steps:
            raise UsageError("an output policy needs at least one step")
        for step in self.steps:
            if step not in STEPS:
                raise UsageError(f"unknown output policy {step!r}; expected one of {STEPS}")
        if "full" in self.steps and len(self.steps) > 1:
            raise UsageError("'full' cannot be combined with other output policies")
        if "label" in self.steps[:-1]:
            raise UsageError("'label' leaves no scores: it can only be the last step")
        if self.top_k <= 0 or self.decimals < 0 or not self.noise_scale >= 0:
            raise UsageError("top_k must be > 0, decimals and noise_scale >= 0")

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        top_k: int = 3,
        decimals: int = 2,
        noise_scale: float = 0.02,
        noise: Literal["laplace", "gaussian"] = "laplace",
    ) -> OutputPolicy:
        """``"top_k+round"`` -> the policy that keeps the top k, then rounds."""
        return cls(
            output_steps(text), top_k=top_k, decimals=decimals, noise_scale=noise_scale, noise=noise
        )

    @property
    def name(self) -> str:
        """The policy as written in the policy file (``"top_k+round"``)."""
        return "+".join(self.steps)

    def apply(
        self, scores: npt.NDArray[Any], rng: np.random.Generator | None = None
    ) -> npt.NDArray[Any]:
        """The obfuscated scores (last axis = classes). ``rng`` is needed for ``noise``."""
        if self.steps == ("full",):
            return scores
        out: npt.NDArray[Any] = np.asarray(scores)
        if not np.issubdtype(out.dtype, np.floating):
            out = out.astype(np.float32)
        if out.ndim == 0:
            raise UsageError("scores must have at least one axis (the classes)")
        for step in self.steps:
            if step == "top_k":
                out = top_k(out, self.top_k)
            elif step == "round":
                out = round_scores(out, self.decimals)
            elif step == "label":
                out = label_only(out)
            elif step == "noise":
                if rng is None:
                    raise UsageError("the 'noise' output policy needs a random generator")
                out = add_noise(out, self.noise_scale, rng, kind=self.noise)
        return out


class OutputGuard:
    """The pipeline guard: rewrites score outputs per the principal's role.

    ``roles`` maps role -> policy in priority order: the first role the principal
    holds wins (put the more privileged roles first); principals with none of them
    get ``default``. ``score_outputs`` maps a model to the names of its score
    outputs; models it does not list use ``default_score_outputs``.
    ``random_state`` seeds the noise: leave it ``None`` in production, since an
    attacker who knows the seed can subtract the noise.
    """

    name = "output"
    mitigates = frozenset({"AML.M0002"})
    blocking = False

    def __init__(
        self,
        *,
        default: OutputPolicy,
        roles: Mapping[str, OutputPolicy] | None = None,
        score_outputs: Mapping[str, tuple[str, ...]] | None = None,
        default_score_outputs: tuple[str, ...] = DEFAULT_SCORE_OUTPUTS,
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        self.default = default
        self.roles = dict(roles or {})
        self.score_outputs = dict(score_outputs or {})
        self.default_score_outputs = default_score_outputs
        self._rng = np.random.default_rng(random_state)
        self._parse: Callable[[str], OutputPolicy] = OutputPolicy.parse
        self._own: dict[str, OutputPolicy] = {}  # grants' own policies, parsed
        # numpy Generators are not thread-safe; the gateway calls ``after`` from a pool.
        self._rng_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: OutputSettings, *, random_state: int | np.random.Generator | None = None
    ) -> OutputGuard:
        """The guard a policy's ``[controls.output]`` table describes."""

        def parse(text: str) -> OutputPolicy:
            return OutputPolicy.parse(
                text,
                top_k=settings.top_k,
                decimals=settings.decimals,
                noise_scale=settings.noise_scale,
                noise=settings.noise,
            )

        guard = cls(
            default=parse(settings.default),
            roles={role: parse(name) for role, name in (settings.roles or {}).items()},
            score_outputs=settings.models,
            default_score_outputs=settings.score_outputs,
            random_state=random_state,
        )
        guard._parse = parse
        return guard

    def _granted(self, text: str) -> OutputPolicy:
        """A grant's own output policy, parsed once."""
        policy = self._own.get(text)
        if policy is None:
            try:
                policy = self._parse(text)
            except UsageError:  # not one this version knows: the strictest there is
                policy = OutputPolicy.parse("label")
            self._own[text] = policy
        return policy

    def policy_for(self, principal: Principal | None) -> OutputPolicy:
        """A grant's own policy (an admin's restriction), else the policy of the first
        configured role ``principal`` holds, else the default."""
        if principal is not None:
            if principal.output:
                return self._granted(principal.output)
            for role, policy in self.roles.items():
                if role in principal.roles:
                    return policy
        return self.default

    def before(self, request: Request) -> Request:
        return request

    def after(self, request: Request, response: Response) -> Response:
        policy = self.policy_for(request.principal)
        if policy.steps == ("full",):
            return response
        names = self.score_outputs.get(request.model, self.default_score_outputs)
        outputs = dict(response.outputs)
        for name in names:
            if name in outputs and outputs[name].dtype.kind in "iu" and outputs[name].ndim == 1:
                continue  # already labels (a guard withheld the scores): nothing to obfuscate
            if name in outputs:
                if "noise" in policy.steps:
                    with self._rng_lock:
                        outputs[name] = policy.apply(outputs[name], self._rng)
                else:
                    outputs[name] = policy.apply(outputs[name])
        return response.with_outputs(outputs)


def score_array(
    response: Response, names: tuple[str, ...] = DEFAULT_SCORE_OUTPUTS
) -> npt.NDArray[np.generic] | None:
    """The scores output: the first of ``names`` (the output policy's score outputs) that
    the response holds, else its first two-dimensional float output."""
    for name in names:
        array = response.outputs.get(name)
        if array is not None and array.dtype.kind == "f" and array.ndim == 2:
            return array
    for array in response.outputs.values():
        if array.dtype.kind == "f" and array.ndim == 2:
            return array
    return None


def labels_only(
    response: Response, names: tuple[str, ...] = DEFAULT_SCORE_OUTPUTS
) -> dict[str, npt.NDArray[np.generic]]:
    """The response's outputs with its scores output replaced by labels (``label_only``)."""
    scores = score_array(response, names)
    return {
        name: label_only(np.asarray(array, np.float64)) if array is scores else array
        for name, array in response.outputs.items()
    }
