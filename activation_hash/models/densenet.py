"""CIFAR DenseNet-BC (Huang et al. 2017, "Densely connected convolutional networks", Sec. 3–4),
structured as in kuangliu/pytorch-cifar (`models/densenet.py`) and the authors' CIFAR code.

A 3×3 stem of 2k channels (k = growth rate), then dense blocks separated by transitions.
A bottleneck layer is BN → ReLU → 1×1 conv (4k) → BN → ReLU → 3×3 conv (k), and its output is
concatenated to its input; without `bottleneck` a layer is BN → ReLU → 3×3 conv (k). A transition
is BN → ReLU → 1×1 conv (channels × `reduction`) → 2×2 average pool. The network ends with
BN → ReLU → global average pool → Linear.

`depth` L gives three dense blocks of (L − 4) / 6 bottleneck layers (DenseNet-BC-100, k = 12, is
the default) or (L − 4) / 3 plain layers; `block_config` sets the blocks explicitly, e.g.
kuangliu's `densenet_cifar` is `block_config=[6, 12, 24, 16]`. Every ReLU is its own `nn.ReLU`
module, so the code holds each pre-activated (batch-normalised) feature map, including the
concatenated inputs of every layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .resnet import norm2d


class DenseLayer(nn.Module):
    def __init__(self, in_planes: int, growth_rate: int, bottleneck: bool = True, batch_norm: bool = True):
        super().__init__()
        self.bn1 = norm2d(in_planes, batch_norm)
        self.relu1 = nn.ReLU()
        if bottleneck:
            self.conv1 = nn.Conv2d(in_planes, 4 * growth_rate, 1, bias=not batch_norm)
            self.bn2 = norm2d(4 * growth_rate, batch_norm)
            self.relu2 = nn.ReLU()
            self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=not batch_norm)
        else:
            self.conv1 = nn.Conv2d(in_planes, growth_rate, 3, padding=1, bias=not batch_norm)
        self.bottleneck = bottleneck

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu1(self.bn1(x)))
        if self.bottleneck:
            out = self.conv2(self.relu2(self.bn2(out)))
        return torch.cat([x, out], dim=1)


class Transition(nn.Sequential):
    def __init__(self, in_planes: int, out_planes: int, batch_norm: bool = True):
        super().__init__()
        self.bn = norm2d(in_planes, batch_norm)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=not batch_norm)
        self.pool = nn.AvgPool2d(2)


def dense_blocks(depth: int, bottleneck: bool) -> list[int]:
    """Layers per dense block for a three-block CIFAR DenseNet of `depth` layers."""
    per_layer = 2 if bottleneck else 1  # conv layers in one dense layer
    if depth < 4 or (depth - 4) % (3 * per_layer):
        raise ValueError(f"model.depth={depth}: a CIFAR DenseNet{'-BC' if bottleneck else ''} needs depth = "
                         f"{3 * per_layer}n + 4 with n >= 1 (e.g. {3 * per_layer * 16 + 4}); "
                         "or give model.block_config")
    n = (depth - 4) // (3 * per_layer)
    if n < 1:
        raise ValueError(f"model.depth={depth} gives empty dense blocks; use depth >= {3 * per_layer + 4}")
    return [n, n, n]


class DenseNet(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int, depth: int = 100, growth_rate: int = 12,
                 block_config: Sequence[int] | None = None, reduction: float = 0.5, bottleneck: bool = True,
                 batch_norm: bool = True):
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"DenseNet needs image inputs (C, H, W); got input_shape={tuple(input_shape)}")
        if growth_rate < 1 or not 0 < reduction <= 1:
            raise ValueError(f"model.growth_rate={growth_rate} must be >= 1 and model.reduction={reduction} in (0, 1]")
        blocks = [int(n) for n in block_config] if block_config is not None else dense_blocks(depth, bottleneck)
        if not blocks or any(n < 1 for n in blocks):
            raise ValueError(f"model.block_config={blocks}: need at least one block of >= 1 layer")

        planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(int(input_shape[0]), planes, 3, padding=1, bias=not batch_norm)
        stages: list[nn.Module] = []
        for i, n in enumerate(blocks):
            layers = []
            for _ in range(n):
                layers.append(DenseLayer(planes, growth_rate, bottleneck, batch_norm))
                planes += growth_rate
            stages.append(nn.Sequential(*layers))
            if i < len(blocks) - 1:
                out_planes = int(math.floor(planes * reduction))
                stages.append(Transition(planes, out_planes, batch_norm))
                planes = out_planes
        self.features = nn.Sequential(*stages)
        self.bn = norm2d(planes, batch_norm)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn(self.features(self.conv1(x))))
        return self.linear(self.pool(out).flatten(1))
