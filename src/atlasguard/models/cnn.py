"""A small convolutional network for digits (PyTorch, CPU, seconds to train).

Used by the efficacy bench next to the logistic regression and the MLP: the
detectors and attacks see it through the same interface as a scikit-learn
model (``predict_proba``, ``predict``) plus ``input_gradient`` (the
cross-entropy's gradient, by autograd), which
:func:`atlasguard.models.attacks.loss_gradient` uses. Needs the ``torch`` extra;
nothing in the request path imports it.

>>> # cnn = train_cnn(x_fit, y_fit); cnn.predict(x_eval)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DigitsCNN", "train_cnn"]


class DigitsCNN:
    """A trained network: 8x8 inputs (flat, in [0, 1]) to 10 classes."""

    def __init__(self, net: Any, side: int = 8) -> None:
        self.net = net
        self.side = side

    def _tensor(self, x: npt.ArrayLike) -> Any:
        import torch

        rows = np.asarray(x, np.float32).reshape(-1, 1, self.side, self.side)
        return torch.from_numpy(rows)

    def predict_proba(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        import torch

        with torch.no_grad():
            p = torch.softmax(self.net(self._tensor(x)), dim=1)
        return np.asarray(p.numpy(), np.float64)

    def predict(self, x: npt.ArrayLike) -> npt.NDArray[np.int64]:
        return np.asarray(self.predict_proba(x).argmax(axis=1), np.int64)

    def input_gradient(self, x: npt.ArrayLike, y: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """d cross-entropy / d x, summed over the batch, in the input's flat shape."""
        import torch

        inputs = self._tensor(x).requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(
            self.net(inputs), torch.as_tensor(np.asarray(y), dtype=torch.long), reduction="sum"
        )
        (grad,) = torch.autograd.grad(loss, inputs)
        return np.asarray(grad.numpy().reshape(len(inputs), -1), np.float64)


def train_cnn(
    x: npt.ArrayLike, y: npt.ArrayLike, *, epochs: int = 40, random_state: int = 0
) -> DigitsCNN:
    """Two 3x3 convolutions (16, 32 channels), a pooling and a linear layer; Adam."""
    import torch
    from torch import nn

    torch.manual_seed(random_state)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )
    model = DigitsCNN(net)
    inputs = model._tensor(x)
    labels = torch.as_tensor(np.asarray(y), dtype=torch.long)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(random_state)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(net(inputs[batch]), labels[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
    net.eval()
    return model
