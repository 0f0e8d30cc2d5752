"""Model hardening (AML.M0003): adversarial training, TRADES, defensive distillation.

:func:`harden` trains a PyTorch network on the user's data with one of

* ``pgd``: Madry et al. (2018) adversarial training, on an even mix of clean
  inputs and PGD examples (``steps`` steps of size 2.5 x epsilon / steps from a
  random start), so clean accuracy is kept;
* ``trades``: Zhang et al. (2019), cross-entropy on clean inputs plus ``beta``
  times the KL divergence between the answers on clean and PGD (KL) inputs;
* ``distillation``: Papernot et al. (2016), a teacher and then a student both
  trained at ``temperature``, the student on the teacher's soft labels (known
  to give little against adaptive attacks; here for comparison);
* ``standard``: plain training, the baseline.

The learning rate follows a one-cycle schedule (Smith & Topin, 2019: up to
``learning_rate`` over the first 30% of the steps, then annealed to nearly zero;
``schedule="constant"`` keeps it flat), which converges within the epochs given
where a flat rate is still improving at its last epoch. The perturbation budget
grows over the first third of the epochs. The weights
scored and kept are an exponential moving average of the trained ones
(``average``; averaging is known to steady robust accuracy). After the warm-up,
every epoch is scored on the validation data by PGD-10 at ``epsilon``; the
epoch with the best robust accuracy is kept among those within 0.05 of the best
clean accuracy so far (early stopping on robust validation accuracy;
``patience`` epochs without improvement end training; ``standard`` and
``distillation`` keep the best clean accuracy).
:func:`robustness` measures clean, FGSM and PGD-40 accuracy at stated epsilons;
:func:`export_onnx` writes the network with its softmax, taking flat rows, for
the gateway. Needs the ``torch`` extra; torch is imported only when called.

>>> # net, report = harden(small_cnn(8), x, y, x_val, y_val, settings=HardeningSettings(),
>>> #                        shape=(1, 8, 8))
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "HardeningReport",
    "HardeningSettings",
    "export_onnx",
    "harden",
    "robustness",
    "small_cnn",
    "small_mlp",
    "standardized",
]

Method = Literal["pgd", "trades", "distillation", "standard"]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class HardeningSettings:
    """How to harden. ``epsilon`` is the L-infinity budget the model is scored at;
    ``train_epsilon`` (default 1.25 x epsilon) the one it trains against."""

    method: Method = "pgd"
    epsilon: float = 0.2
    train_epsilon: float | None = None
    steps: int = 7
    epochs: int = 40
    beta: float = 6.0
    temperature: float = 20.0
    batch_size: int = 64
    learning_rate: float = 1e-2  # the one-cycle schedule's peak (Adam)
    schedule: Literal["onecycle", "constant"] = "onecycle"
    patience: int | None = None
    average: float = 0.98  # weight averaging (EMA) per step; 0 keeps the raw weights
    low: float = 0.0
    high: float = 1.0
    random_state: int = 0


@dataclass
class HardeningReport:
    """What training did, and the validation figures of the epoch kept."""

    method: str
    epsilon: float
    epochs_run: int
    best_epoch: int
    seconds: float
    validation_clean: float
    validation_robust: float  # PGD-10 at epsilon on the validation data
    history: list[tuple[int, float, float]] = field(default_factory=list)
    robustness: dict[str, float] = field(default_factory=dict)  # on held-out test data

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def small_cnn(side: int, classes: int = 10, width: int = 32) -> Any:
    """Three 3x3 convolutions, a pooling and two linear layers; input [N, 1, side, side]."""
    from torch import nn

    pooled = side // 2
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * width * pooled * pooled, 128),
        nn.ReLU(),
        nn.Linear(128, classes),
    )


def small_mlp(features: int, classes: int, width: int = 256) -> Any:
    """Two hidden ReLU layers; input [N, features]."""
    from torch import nn

    return nn.Sequential(
        nn.Linear(features, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, classes),
    )


def standardized(net: Any, x: npt.ArrayLike, *, per_feature: bool) -> Any:
    """``net`` behind a fixed layer that standardizes its input with ``x``'s mean and
    spread, per feature (tables, whose columns have their own units) or over all values
    (images). The layer is part of the network, so attacks, epsilons and the exported
    ONNX model stay in the data's own units; its statistics are buffers, not trained.
    A constant feature is divided by 1."""
    import torch
    from torch import nn

    rows = np.asarray(x, np.float64).reshape(len(np.asarray(x)), -1)
    if per_feature:
        mean, spread = rows.mean(axis=0), rows.std(axis=0)
    else:
        mean, spread = np.asarray(rows.mean()), np.asarray(rows.std())
    spread = np.where(spread > 1e-12, spread, 1.0)

    class Standardize(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("spread", torch.as_tensor(spread, dtype=torch.float32))

        def forward(self, inputs: Any) -> Any:
            return (inputs - self.mean) / self.spread

    return nn.Sequential(Standardize(), net)


def _tensor(x: npt.ArrayLike, shape: tuple[int, ...]) -> Any:
    import torch

    return torch.from_numpy(np.asarray(x, np.float32).reshape(-1, *shape))


def _margin(logits: Any, y: Any) -> Any:
    """Carlini-Wagner's margin: the best other logit less the true one (scale-free, so a
    saturated softmax, as defensive distillation makes, does not hide the gradient)."""
    import torch

    true = logits.gather(1, y[:, None])[:, 0]
    others = logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), -1e9)
    return (others.max(dim=1).values - true).sum()


def _pgd(
    net: Any,
    x: Any,
    y: Any,
    eps: float,
    steps: int,
    low: float,
    high: float,
    loss: str = "ce",
) -> Any:
    import torch
    import torch.nn.functional as f

    if eps <= 0:
        return x
    step = 2.5 * eps / steps
    delta = (torch.rand_like(x) * 2 - 1) * eps
    delta = (x + delta).clamp(low, high) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        logits = net(x + delta)
        objective = _margin(logits, y) if loss == "margin" else f.cross_entropy(logits, y)
        (grad,) = torch.autograd.grad(objective, delta)
        delta = (delta + step * grad.sign()).clamp(-eps, eps)
        delta = ((x + delta).clamp(low, high) - x).detach()
    return (x + delta).detach()


def _pgd_kl(net: Any, x: Any, eps: float, steps: int, low: float, high: float) -> Any:
    import torch
    import torch.nn.functional as f

    with torch.no_grad():
        clean = f.softmax(net(x), dim=1)
    delta = 0.001 * torch.randn_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        kl = f.kl_div(
            f.log_softmax(net((x + delta).clamp(low, high)), dim=1), clean, reduction="batchmean"
        )
        (grad,) = torch.autograd.grad(kl, delta)
        delta = (delta + 2.5 * eps / steps * grad.sign()).clamp(-eps, eps).detach()
    return (x + delta).clamp(low, high).detach()


def _accuracy(net: Any, x: Any, y: Any) -> float:
    import torch

    with torch.no_grad():
        return float((net(x).argmax(dim=1) == y).float().mean())


def _fit(
    net: Any,
    x: Any,
    y: Any,
    x_val: Any,
    y_val: Any,
    s: HardeningSettings,
    teacher: Any = None,
) -> tuple[int, int, float, float, list[tuple[int, float, float]]]:
    import copy

    import torch
    import torch.nn.functional as f

    torch.manual_seed(s.random_state)
    generator = torch.Generator().manual_seed(s.random_state)
    optimiser = torch.optim.Adam(net.parameters(), lr=s.learning_rate)
    batches = -(-len(x) // s.batch_size)
    schedule = (
        torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=s.learning_rate, total_steps=s.epochs * batches, pct_start=0.3
        )
        if s.schedule == "onecycle" and s.epochs > 0
        else None
    )
    train_eps = s.train_epsilon if s.train_epsilon is not None else 1.25 * s.epsilon
    warm = max(1, s.epochs // 3)
    history: list[tuple[int, float, float]] = []
    best: tuple[float, float, int, dict[str, Any] | None] = (-1.0, 0.0, -1, None)  # score
    soft = None
    if teacher is not None:
        with torch.no_grad():
            soft = f.softmax(teacher(x) / s.temperature, dim=1)
    averaged = copy.deepcopy(net) if s.average > 0 else net
    best_robust = 0.0
    epoch = 0
    for epoch in range(s.epochs):
        eps = train_eps * min(1.0, (epoch + 1) / warm) if s.method in ("pgd", "trades") else 0.0
        net.train()
        order = torch.randperm(len(x), generator=generator)
        for batch in order.split(s.batch_size):  # type: ignore[no-untyped-call]
            inputs, labels = x[batch], y[batch]
            if s.method == "pgd":
                net.eval()
                adversarial = _pgd(net, inputs, labels, eps, s.steps, s.low, s.high)
                net.train()
                loss = 0.5 * (
                    f.cross_entropy(net(adversarial), labels) + f.cross_entropy(net(inputs), labels)
                )
            elif s.method == "trades":
                net.eval()
                adversarial = _pgd_kl(net, inputs, eps, s.steps, s.low, s.high)
                net.train()
                logits = net(inputs)
                loss = f.cross_entropy(logits, labels) + s.beta * f.kl_div(
                    f.log_softmax(net(adversarial), dim=1),
                    f.softmax(logits, dim=1),
                    reduction="batchmean",
                )
            elif s.method == "distillation" and soft is not None:
                log_p = f.log_softmax(net(inputs) / s.temperature, dim=1)
                loss = -(soft[batch] * log_p).sum(dim=1).mean()
            elif s.method == "distillation":  # the teacher: hard labels at temperature
                loss = f.cross_entropy(net(inputs) / s.temperature, labels)
            else:
                loss = f.cross_entropy(net(inputs), labels)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            if schedule is not None:
                schedule.step()
            if averaged is not net:
                _average(averaged, net, s.average)
        net.eval()
        if epoch + 1 < warm and s.method in ("pgd", "trades"):
            continue
        judged = averaged.eval()
        clean = _accuracy(judged, x_val, y_val)
        robust = _accuracy(judged, _pgd(judged, x_val, y_val, s.epsilon, 10, s.low, s.high), y_val)
        history.append((epoch, round(clean, 4), round(robust, 4)))
        top_clean = max(c for _, c, _ in history)
        # robust accuracy picks the epoch, among those that kept clean accuracy (a model that
        # answers one class for everything is "robust"); plain training picks by clean accuracy
        score = robust if s.method in ("pgd", "trades") else clean
        if clean >= top_clean - 0.05 and score > best[0]:
            state = {k: v.detach().clone() for k, v in judged.state_dict().items()}
            best = (score, clean, epoch, state)
            best_robust = robust
        elif s.patience is not None and epoch - best[2] >= s.patience:
            break
    if best[3] is not None:
        net.load_state_dict(best[3])
    net.eval()
    return epoch + 1, best[2], best[1], best_robust, history


def _average(averaged: Any, net: Any, keep: float) -> None:
    """``averaged`` <- keep x averaged + (1 - keep) x net, for every floating-point tensor;
    counters (a batch norm's ``num_batches_tracked``) are copied."""
    import torch

    with torch.no_grad():
        for mine, theirs in zip(
            averaged.state_dict().values(), net.state_dict().values(), strict=True
        ):
            if mine.is_floating_point():
                mine.mul_(keep).add_(theirs, alpha=1 - keep)
            else:
                mine.copy_(theirs)


def harden(
    net: Any,
    x_train: npt.ArrayLike,
    y_train: npt.ArrayLike,
    x_val: npt.ArrayLike,
    y_val: npt.ArrayLike,
    *,
    settings: HardeningSettings,
    shape: tuple[int, ...],
) -> tuple[Any, HardeningReport]:
    """Train ``net`` (a ``torch.nn.Module`` taking ``[N, *shape]``) as ``settings`` say and
    keep the epoch with the best robust validation accuracy."""
    import copy

    import torch

    x, y = _tensor(x_train, shape), torch.as_tensor(np.asarray(y_train), dtype=torch.long)
    xv, yv = _tensor(x_val, shape), torch.as_tensor(np.asarray(y_val), dtype=torch.long)
    start = time.perf_counter()
    teacher = None
    if settings.method == "distillation":
        teacher = copy.deepcopy(net)
        _fit(teacher, x, y, xv, yv, settings)
    epochs, best_epoch, clean, robust, history = _fit(net, x, y, xv, yv, settings, teacher)
    report = HardeningReport(
        settings.method,
        settings.epsilon,
        epochs,
        best_epoch,
        round(time.perf_counter() - start, 2),
        round(clean, 4),
        round(robust, 4),
        history,
    )
    return net, report


def robustness(
    net: Any,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    shape: tuple[int, ...],
    epsilons: tuple[float, ...] = (0.1, 0.2),
    low: float = 0.0,
    high: float = 1.0,
    seed: int = 0,
) -> dict[str, float]:
    """Accuracy on clean inputs, and under FGSM and PGD-40 (random start) at each epsilon.

    ``pgd40@eps`` is the worse of two PGD-40 runs, on the cross-entropy and on the
    Carlini-Wagner margin: a model that only hides its gradient (defensive
    distillation) does not pass for robust."""
    import torch

    torch.manual_seed(seed)
    inputs = _tensor(x, shape)
    labels = torch.as_tensor(np.asarray(y), dtype=torch.long)
    net.eval()
    out = {"clean": round(_accuracy(net, inputs, labels), 4)}
    for eps in epsilons:
        fgsm = _fgsm(net, inputs, labels, eps, low, high)
        out[f"fgsm@{eps:g}"] = round(_accuracy(net, fgsm, labels), 4)
        correct = torch.ones(len(labels), dtype=torch.bool)
        for loss in ("ce", "margin"):
            strong = _pgd(net, inputs, labels, eps, 40, low, high, loss)
            with torch.no_grad():
                correct &= net(strong).argmax(dim=1) == labels
        out[f"pgd40@{eps:g}"] = round(float(correct.float().mean()), 4)
    return out


def _fgsm(net: Any, x: Any, y: Any, eps: float, low: float, high: float) -> Any:
    import torch
    import torch.nn.functional as f

    probe = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f.cross_entropy(net(probe), y), probe)
    return (x + eps * grad.sign()).clamp(low, high).detach()


def export_onnx(net: Any, path: Path, shape: tuple[int, ...]) -> None:
    """Write ``net`` as ONNX: input ``input`` [N, prod(shape)] float32, output
    ``probabilities`` [N, classes] (softmax added), batch size free."""
    import torch
    from torch import nn

    features = int(np.prod(shape))
    wrapped = nn.Sequential(nn.Unflatten(1, shape), net, nn.Softmax(dim=1)).eval()
    example = torch.zeros(1, features)
    with warnings.catch_warnings():
        # the TorchScript exporter needs no onnxscript; torch.export's does
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(torch, wrapped, example, path)


def _export(torch: Any, wrapped: Any, example: Any, path: Path) -> None:
    torch.onnx.export(
        wrapped,
        (example,),
        str(path),
        input_names=["input"],
        output_names=["probabilities"],
        dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
        dynamo=False,
    )
