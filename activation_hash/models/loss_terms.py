"""Extra loss terms a network contributes beside cross-entropy, and per-epoch weight schedules.

Protocol (duck-typed, no base class needed): a network (or any of its submodules) may define

    def loss_terms(self) -> list[LossTerm]      # called after each training forward pass
    def set_epoch(self, epoch: int) -> None     # called at the start of every training epoch

``Classifier`` adds ``sum(term.weight * term.value)`` to the cross-entropy, logs each term's
epoch mean as ``train/loss_<name>`` and, when ``weight_name`` is set, the weight used in that
epoch as ``train/<weight_name>`` (e.g. ``train/gamma``). Weights that change per epoch come from
a schedule object evaluated in ``set_epoch``:

    class Penalised(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.gamma = nn.Linear(4, 2), Geometric(0.01, 1.05, 1e6)
        def set_epoch(self, epoch): self._weight = self.gamma(epoch)
        def forward(self, x):
            self._z = self.body(x)
            return self._z
        def loss_terms(self):
            return [LossTerm("latent_l2", self._z.pow(2).mean(), self._weight, weight_name="gamma")]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LossTerm:
    name: str                  # logged as train/loss_<name> (unweighted value, epoch mean)
    value: torch.Tensor        # a scalar tensor with grad
    weight: float = 1.0        # multiplies value in the training loss
    weight_name: str | None = None  # if set, the weight is logged each epoch as train/<weight_name>


@dataclass(frozen=True)
class Constant:
    value: float

    def __call__(self, epoch: int) -> float:
        return float(self.value)


@dataclass(frozen=True)
class Geometric:
    """initial x factor**epoch, growing only while below ``maximum`` (the weight of epoch e is the
    previous epoch's times ``factor`` if the previous one was < maximum, else unchanged)."""
    initial: float
    factor: float
    maximum: float = float("inf")

    def __call__(self, epoch: int) -> float:
        value = float(self.initial)
        for _ in range(int(epoch)):
            if value >= self.maximum:
                break
            value *= self.factor
        return value


def weight_matrices(module: nn.Module) -> Iterator[torch.Tensor]:
    """The kernels Keras' `kernel_regularizer` sees: the weight of every Linear and Conv layer,
    never a bias nor a normalization layer's scale or shift."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            yield m.weight


def keras_l2(module: nn.Module, factor: float) -> LossTerm:
    """Keras' `regularizers.l2(factor)` on every weight matrix of `module`, as a loss term:
    factor * sum(W ** 2), whose gradient is 2 * factor * W on weight matrices and 0 on biases.
    (PyTorch's `weight_decay=factor` adds factor * w to the gradient of every parameter: half the
    strength, on biases and batch-norm parameters too.) Logged as train/loss_l2 (the unweighted sum)."""
    value = sum(w.pow(2).sum() for w in weight_matrices(module))
    return LossTerm("l2", value if isinstance(value, torch.Tensor) else torch.zeros(()), float(factor))
