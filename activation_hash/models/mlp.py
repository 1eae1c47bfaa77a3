"""A plain ReLU MLP: `depth` hidden layers, optional batch norm before each ReLU.

`init`: `torch` (PyTorch's default Linear initialization) or `glorot_uniform` (Keras' default, the
authors' code: weights U(-a, a), a = sqrt(6 / (fan_in + fan_out)), and zero biases).
`l2`: Keras-style L2 penalty factor (`kernel_regularizer=l2(l2)`): l2 * sum(W ** 2) over the
weight matrices is added to the loss (activation_hash.models.loss_terms.keras_l2); 0 = none.

Widths: `width` units in every hidden layer, or the authors' convention of splitting a total
width evenly (`split_width=true` gives `width // depth` per layer), or explicit `widths`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from activation_hash.models.loss_terms import LossTerm, keras_l2

INITS = ("torch", "glorot_uniform")


def hidden_widths(depth: int, width: int, split_width: bool = False,
                  widths: Sequence[int] | None = None) -> list[int]:
    """The hidden-layer widths an MLP config describes, validated."""
    if widths is not None:
        widths = [int(w) for w in widths]
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"model.widths={widths}: every layer width must be >= 1 and the list non-empty")
        return widths
    if depth < 1:
        raise ValueError(f"model.depth={depth}: must be >= 1")
    if width < 1:
        raise ValueError(f"model.width={width}: must be >= 1")
    per_layer = width // depth if split_width else width
    if per_layer < 1:
        raise ValueError(f"model.width={width} split over model.depth={depth} layers gives {per_layer} "
                         f"units per layer; need width >= depth when model.split_width=true")
    return [per_layer] * depth


class MLP(nn.Sequential):
    def __init__(self, input_shape: Sequence[int], num_classes: int, depth: int = 1, width: int = 100,
                 split_width: bool = False, widths: Sequence[int] | None = None,
                 batch_norm: bool = False, bias: bool = True, init: str = "torch", l2: float = 0.0):
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = math.prod(input_shape)
        for w in hidden_widths(depth, width, split_width, widths):
            layers.append(nn.Linear(fan_in, w, bias=bias))
            if batch_norm:
                layers.append(nn.BatchNorm1d(w))
            layers.append(nn.ReLU())
            fan_in = w
        layers.append(nn.Linear(fan_in, num_classes))
        super().__init__(*layers)
        if init not in INITS:
            raise ValueError(f"model.init={init!r}: allowed: {', '.join(INITS)}")
        self.l2 = check_l2(l2)
        if init == "glorot_uniform":
            glorot_uniform_(self)

    def loss_terms(self) -> list[LossTerm]:
        return [keras_l2(self, self.l2)] if self.l2 > 0 else []


def check_l2(l2: object) -> float:
    if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not l2 >= 0:
        raise ValueError(f"model.l2={l2!r}: must be a number >= 0 (0: no L2 term)")
    return float(l2)


def glorot_uniform_(module: nn.Module) -> nn.Module:
    """Keras' default initialization on every Linear layer of `module`: Glorot-uniform weights
    (U(-a, a), a = sqrt(6 / (fan_in + fan_out))) and zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module
