"""CIFAR-sized residual networks with BasicBlocks (He et al. 2016, "Deep residual learning").

One class covers both families used by He et al. (2021, Table 3):
- ResNet-18 as in kuangliu/pytorch-cifar (`models/resnet.py`): a 3×3 stem of 64 channels (no
  max pool), four stages of 2 BasicBlocks each with widths 64, 128, 256, 512, strides 1, 2, 2, 2,
  and 1×1-conv + BN projection shortcuts when the shape changes (`shortcut="B"`);
- ResNet-20/32 as in He et al. 2016, Sec. 4.2 and akamaster/pytorch_resnet_cifar10: a 3×3 stem
  of 16 channels, three stages of n = 3 / 5 blocks with widths 16, 32, 64, and parameter-free
  shortcuts that subsample and zero-pad the channels (`shortcut="A"`).

Every ReLU is its own `nn.ReLU` module (not in-place) so that hooks see each unit: two per
block (after the first conv, and after the residual add) plus one in the stem. Global adaptive
average pooling before the classifier lets 28×28 MNIST inputs through.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def norm2d(channels: int, batch_norm: bool) -> nn.Module:
    """BatchNorm2d, or nothing when the study switches batch norm off."""
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class StagedNet(nn.Module):
    """What the CIFAR residual nets share after their stem (conv1, bn1, relu, set by each net):
    stages ``layer1``..``layerN`` of blocks, global average pooling and a linear classifier."""

    def _add_stages(self, stages: list[list[nn.Module]], out_planes: int, num_classes: int) -> None:
        self.stage_names = [f"layer{i + 1}" for i in range(len(stages))]
        for name, blocks in zip(self.stage_names, stages):
            self.add_module(name, nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(out_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        for name in self.stage_names:
            out = getattr(self, name)(out)
        return self.linear(self.pool(out).flatten(1))


class PadShortcut(nn.Module):
    """Option A shortcut: take every `stride`-th pixel and zero-pad the new channels on both sides."""

    def __init__(self, stride: int, extra_channels: int):
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        before = self.extra_channels // 2
        return F.pad(x, (0, 0, 0, 0, before, self.extra_channels - before))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "B",
                 batch_norm: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=not batch_norm)
        self.bn1 = norm2d(planes, batch_norm)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=not batch_norm)
        self.bn2 = norm2d(planes, batch_norm)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                self.shortcut = PadShortcut(stride, planes - in_planes)
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=not batch_norm),
                                              norm2d(planes, batch_norm))
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(StagedNet):
    """`num_blocks[i]` BasicBlocks in stage i, of width `base_width * 2**i`; stride 2 from stage 2 on."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, num_blocks: Sequence[int] = (2, 2, 2, 2),
                 base_width: int = 64, shortcut: str = "B", batch_norm: bool = True):
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"ResNet needs image inputs (C, H, W); got input_shape={tuple(input_shape)}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"model.shortcut={shortcut!r}: use 'A' (zero-padding identity) or 'B' (1x1 projection)")
        if not num_blocks or any(int(n) < 1 for n in num_blocks) or base_width < 1:
            raise ValueError(f"model.num_blocks={list(num_blocks)}, model.base_width={base_width}: "
                             "need at least one stage, every stage >= 1 block, base_width >= 1")
        self.conv1 = nn.Conv2d(int(input_shape[0]), base_width, 3, padding=1, bias=not batch_norm)
        self.bn1 = norm2d(base_width, batch_norm)
        self.relu = nn.ReLU()

        in_planes = base_width
        stages = []
        for i, n in enumerate(num_blocks):
            planes = base_width * 2 ** i
            blocks = []
            for j in range(int(n)):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(in_planes, planes, stride, shortcut, batch_norm))
                in_planes = planes
            stages.append(blocks)
        self._add_stages(stages, in_planes, num_classes)
