"""CIFAR-sized VGG (Simonyan & Zisserman 2015) with batch norm, as in kuangliu/pytorch-cifar
(`models/vgg.py`): 3×3 convolutions with padding 1, each followed by BatchNorm and ReLU, 2×2 max
pooling at every 'M' of the config list, and a single Linear layer on the 512 features.

Differences from kuangliu, none of which changes CIFAR-10 (32×32) behaviour:
- one `nn.ReLU` module per position, not in-place, so a forward hook sees every unit;
- max pooling with `ceil_mode=True`, so a 28×28 MNIST image shrinks 28→14→7→4→2→1 instead of
  reaching 0×0 at the fifth pool (on 32×32 every pooled size is even and nothing changes);
- adaptive average pooling to 1×1 before the classifier (kuangliu's AvgPool2d(1) is a no-op);
- `classifier_widths` adds hidden Linear+ReLU layers before the output layer (He et al. 2021,
  Table 3, list an fc-4096 layer for their VGG-19), `width_multiplier` scales every conv width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# Layer configs of Simonyan & Zisserman, Table 1 (A, B, D, E); ints are conv widths, "M" a max pool.
CONFIGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int, depth: int = 19,
                 cfg: Sequence[int | str] | None = None, width_multiplier: float = 1.0,
                 batch_norm: bool = True, classifier_widths: Sequence[int] = ()):
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"VGG needs image inputs (C, H, W); got input_shape={tuple(input_shape)}")
        if cfg is None:
            if depth not in CONFIGS:
                raise ValueError(f"model.depth={depth}: VGG depth must be one of {sorted(CONFIGS)} "
                                 "(or give model.cfg, a list of conv widths and 'M')")
            cfg = CONFIGS[depth]
        if width_multiplier <= 0:
            raise ValueError(f"model.width_multiplier={width_multiplier}: must be > 0")

        layers: list[nn.Module] = []
        channels = int(input_shape[0])
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
                continue
            width = max(1, round(int(item) * width_multiplier))
            layers.append(nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU())
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

        head: list[nn.Module] = [nn.Flatten()]
        for width in classifier_widths:
            head += [nn.Linear(channels, int(width)), nn.ReLU()]
            channels = int(width)
        head.append(nn.Linear(channels, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))
