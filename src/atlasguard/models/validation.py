"""Model validation (AML.M0008): is there a backdoor in this model?

:func:`neural_cleanse` (Wang et al., 2019) reverse-engineers, for every label, the
smallest trigger (a mask and a pattern, ``x' = (1 - m) x + m p``) that sends clean
inputs to that label. A backdoored label needs a much smaller mask than the others.
Two figures judge the smallest mask. The anomaly index is its distance below the
median, in units of the median absolute deviation times 1.4826, taken on the
*logarithm* of the norms (a trigger is a multiplicatively smaller mask); the
ratio is the smallest norm over the median norm. A model is flagged when both
say so: ratio below ``ratio_threshold`` (0.55) *and* index above ``threshold``
(3). The index alone, with the 5 chosen on 8 tuning models earlier, found 6-8 of 10
backdoored bench models: with ten labels the deviation is itself a noisy
estimate, and on digits one label (3) is always the easiest to reach, so a
clean model's index reached 4.4 while a backdoored one's sat at 3.1. The ratio
does not divide by that noisy estimate. Both thresholds were set on 20 tuning
models (``python bench/training/backdoor_tuning.py``: 10 backdoored with triggers
drawn with seed 7, 10 clean, training seeds 7000-7009; the bench's models use
seed 2026 and training seeds 100-109): clean models' ratios were 0.66–0.80
(mean 0.73, sd 0.05), backdoored ones 0.24–0.50; clean indices 1.4–4.4,
backdoored 3.6–11.2. The index condition keeps a model
whose labels differ widely in how easy they are to reach from being flagged
on the ratio alone.

Gradients come from the model itself: a PyTorch module (autograd), or any
function from rows to probabilities (an ONNX model through ONNX Runtime),
whose gradient is estimated by antithetic Gaussian probes (NES), at a higher
cost in model calls. Needs the ``torch`` extra; torch is imported only here.

>>> # report = neural_cleanse(net, x_clean, shape=(1, 8, 8), classes=10)
>>> # report.flagged, report.label, report.anomaly_index
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["BackdoorReport", "neural_cleanse"]

FloatArray = npt.NDArray[np.float64]


@dataclass
class BackdoorReport:
    """The smallest trigger found for each label, and the verdict."""

    norms: list[float]  # L1 norm of the mask per label (pixels covered)
    success: list[float]  # how often each label's trigger sends clean inputs there
    anomaly_index: float  # of the smallest norm, on log norms
    label: int  # the label with the smallest norm
    flagged: bool
    threshold: float
    ratio: float = 1.0  # the smallest norm over the median norm
    ratio_threshold: float = 0.55
    seconds: float = 0.0
    masks: list[list[float]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body.pop("masks")
        return body


def _anomaly(norms: FloatArray) -> tuple[float, int]:
    median = float(np.median(norms))
    mad = 1.4826 * float(np.median(np.abs(norms - median)))
    smallest = int(np.argmin(norms))
    index = (median - float(norms[smallest])) / mad if mad > 0 else 0.0
    return index, smallest


def _torch_trigger(
    net: Any,
    x: FloatArray,
    label: int,
    shape: tuple[int, ...],
    steps: int,
    target_success: float,
    seed: int,
) -> tuple[float, float, FloatArray]:
    import torch
    import torch.nn.functional as f

    torch.manual_seed(seed)
    inputs = torch.from_numpy(np.asarray(x, np.float32).reshape(-1, *shape))
    mask_shape = (1, *shape[1:]) if len(shape) == 3 else shape
    mask_raw = torch.full(mask_shape, -2.0, requires_grad=True)
    pattern_raw = torch.zeros(shape, requires_grad=True)
    optimiser = torch.optim.Adam([mask_raw, pattern_raw], lr=0.1)
    target = torch.full((len(inputs),), label, dtype=torch.long)
    weight = 1e-3
    best = (float("inf"), 0.0, np.zeros(int(np.prod(mask_shape))))
    for step in range(steps):
        mask = torch.sigmoid(mask_raw)
        stamped = (1 - mask) * inputs + mask * torch.sigmoid(pattern_raw)
        logits = net(stamped)
        loss = f.cross_entropy(logits, target) + weight * mask.sum()
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        with torch.no_grad():
            success = float((logits.argmax(dim=1) == target).float().mean())
            norm = float(mask.sum())
        if success >= target_success and norm < best[0]:
            best = (norm, success, mask.detach().numpy().ravel().astype(np.float64))
        if step % 10 == 9:  # Neural Cleanse's schedule: shrink the mask while it still works
            weight = weight * 1.5 if success >= target_success else weight / 1.5
    if best[0] == float("inf"):
        with torch.no_grad():
            mask = torch.sigmoid(mask_raw)
        return float(mask.sum()), success, mask.numpy().ravel().astype(np.float64)
    return best


def _blackbox_trigger(
    scores: Callable[[FloatArray], FloatArray],
    x: FloatArray,
    label: int,
    steps: int,
    target_success: float,
    seed: int,
    probes: int = 10,
    sigma: float = 0.5,
) -> tuple[float, float, FloatArray]:
    """The same search with NES gradient estimates (antithetic probes) of the loss."""
    rng = np.random.default_rng(seed)
    width = x.shape[1]
    mask_raw = np.full(width, -2.0)
    pattern_raw = np.zeros(width)
    params = np.concatenate([mask_raw, pattern_raw])
    moment, velocity = np.zeros_like(params), np.zeros_like(params)
    weight = 1e-3
    best = (float("inf"), 0.0, np.zeros(width))

    def loss_and_success(p: FloatArray) -> tuple[float, float, float]:
        mask, pattern = 1 / (1 + np.exp(-p[:width])), 1 / (1 + np.exp(-p[width:]))
        stamped = (1 - mask) * x + mask * pattern
        probs = np.clip(scores(stamped), 1e-12, 1.0)
        ce = float(-np.log(probs[:, label]).mean())
        return (
            ce + weight * float(mask.sum()),
            float((probs.argmax(1) == label).mean()),
            float(mask.sum()),
        )

    for step in range(steps):
        noise = rng.normal(size=(probes, len(params)))
        diffs = np.array(
            [
                loss_and_success(params + sigma * n)[0] - loss_and_success(params - sigma * n)[0]
                for n in noise
            ]
        )
        grad = (diffs[:, None] * noise).sum(axis=0) / (2 * sigma * probes)
        moment = 0.9 * moment + 0.1 * grad
        velocity = 0.999 * velocity + 0.001 * grad**2
        params = params - 0.1 * (moment / (1 - 0.9 ** (step + 1))) / (
            np.sqrt(velocity / (1 - 0.999 ** (step + 1))) + 1e-8
        )
        _, success, norm = loss_and_success(params)
        if success >= target_success and norm < best[0]:
            best = (norm, success, 1 / (1 + np.exp(-params[:width])))
        if step % 10 == 9:
            weight = weight * 1.5 if success >= target_success else weight / 1.5
    if best[0] == float("inf"):
        _, success, norm = loss_and_success(params)
        return norm, success, 1 / (1 + np.exp(-params[:width]))
    return best


def neural_cleanse(
    model: Any,
    x: npt.ArrayLike,
    *,
    shape: tuple[int, ...],
    classes: int,
    steps: int = 500,
    samples: int = 128,
    target_success: float = 0.95,
    threshold: float = 3.0,
    ratio_threshold: float = 0.55,
    random_state: int = 0,
) -> BackdoorReport:
    """Search every label's smallest trigger on clean inputs ``x`` (rows, flat) and judge.

    ``model`` is a ``torch.nn.Module`` taking ``[N, *shape]`` and returning logits, or a
    function from flat rows to probabilities (black box, gradient estimated).
    """
    rows = np.asarray(x, np.float64).reshape(len(np.asarray(x)), -1)
    rng = np.random.default_rng(random_state)
    rows = rows[rng.choice(len(rows), size=min(samples, len(rows)), replace=False)]
    start = time.perf_counter()
    norms, success, masks = [], [], []
    is_torch = hasattr(model, "parameters") and hasattr(model, "forward")
    if is_torch:
        model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
    for label in range(classes):
        if is_torch:
            found = _torch_trigger(model, rows, label, shape, steps, target_success, random_state)
        else:
            found = _blackbox_trigger(model, rows, label, steps, target_success, random_state)
        norms.append(round(found[0], 3))
        success.append(round(found[1], 3))
        masks.append([round(v, 3) for v in found[2].tolist()])
    positive = np.maximum(np.asarray(norms), 1e-6)
    index, smallest = _anomaly(np.log(positive))
    ratio = float(positive[smallest] / np.median(positive))
    return BackdoorReport(
        norms=norms,
        success=success,
        anomaly_index=round(index, 3),
        label=smallest,
        flagged=index > threshold and ratio < ratio_threshold,
        threshold=threshold,
        ratio=round(ratio, 3),
        ratio_threshold=ratio_threshold,
        seconds=round(time.perf_counter() - start, 2),
        masks=masks,
    )
