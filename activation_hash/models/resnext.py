"""CIFAR ResNeXt-29 (Xie et al. 2017, "Aggregated residual transformations"), structured as in
kuangliu/pytorch-cifar (`models/resnext.py`, e.g. `ResNeXt29_8x64d`).

Three stages of 3 bottleneck blocks (3 × 3 × 3 + 2 = 29 layers). A block is
1×1 conv → BN → ReLU → grouped 3×3 conv (`cardinality` groups, stride) → BN → ReLU →
1×1 conv → BN, added to the shortcut (identity, or 1×1 conv + BN when the shape changes), then
ReLU. The group width is `cardinality * bottleneck_width` and doubles each stage; a block outputs
`expansion * group width` channels.

Defaults follow kuangliu: a 1×1 stem of 64 channels and expansion 2. Xie et al.'s own CIFAR
widths (stage outputs 256, 512, 1024 for 8×64d) are `expansion=0.5, stem_kernel=3`.
Each ReLU is its own `nn.ReLU` module (three per block, one in the stem); global adaptive
average pooling replaces kuangliu's fixed 8×8 pooling so 28×28 inputs work.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .resnet import StagedNet, norm2d


class ResNeXtBlock(nn.Module):
    def __init__(self, in_planes: int, cardinality: int, bottleneck_width: int, stride: int = 1,
                 expansion: float = 2.0, batch_norm: bool = True):
        super().__init__()
        group_width = cardinality * bottleneck_width
        out_planes = max(1, round(expansion * group_width))
        self.conv1 = nn.Conv2d(in_planes, group_width, 1, bias=not batch_norm)
        self.bn1 = norm2d(group_width, batch_norm)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(group_width, group_width, 3, stride=stride, padding=1, groups=cardinality,
                               bias=not batch_norm)
        self.bn2 = norm2d(group_width, batch_norm)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(group_width, out_planes, 1, bias=not batch_norm)
        self.bn3 = norm2d(out_planes, batch_norm)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=not batch_norm),
                                          norm2d(out_planes, batch_norm))
        self.relu3 = nn.ReLU()
        self.out_planes = out_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + self.shortcut(x))


class ResNeXt(StagedNet):
    def __init__(self, input_shape: Sequence[int], num_classes: int, cardinality: int = 8,
                 bottleneck_width: int = 64, num_blocks: Sequence[int] = (3, 3, 3), expansion: float = 2.0,
                 stem_width: int = 64, stem_kernel: int = 1, batch_norm: bool = True):
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"ResNeXt needs image inputs (C, H, W); got input_shape={tuple(input_shape)}")
        if cardinality < 1 or bottleneck_width < 1 or stem_width < 1 or expansion <= 0:
            raise ValueError(f"model.cardinality={cardinality}, model.bottleneck_width={bottleneck_width}, "
                             f"model.stem_width={stem_width} must be >= 1 and model.expansion={expansion} > 0")
        if stem_kernel not in (1, 3):
            raise ValueError(f"model.stem_kernel={stem_kernel}: use 1 (kuangliu) or 3 (Xie et al.)")
        if not num_blocks or any(int(n) < 1 for n in num_blocks):
            raise ValueError(f"model.num_blocks={list(num_blocks)}: need at least one stage of >= 1 block")
        self.conv1 = nn.Conv2d(int(input_shape[0]), stem_width, stem_kernel, padding=stem_kernel // 2,
                               bias=not batch_norm)
        self.bn1 = norm2d(stem_width, batch_norm)
        self.relu = nn.ReLU()

        in_planes, width = stem_width, bottleneck_width
        stages = []
        for i, n in enumerate(num_blocks):
            blocks = []
            for j in range(int(n)):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(ResNeXtBlock(in_planes, cardinality, width, stride, expansion, batch_norm))
                in_planes = blocks[-1].out_planes
            width *= 2
            stages.append(blocks)
        self._add_stages(stages, in_planes, num_classes)
