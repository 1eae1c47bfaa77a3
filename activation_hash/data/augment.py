"""Training-batch augmentations for the in-memory loaders (``data.augment``).

``flip_crop``: random horizontal flip (p = 0.5) and a random crop of the image zero-padded by
``pad`` pixels on each side (the standard CIFAR recipe, torchvision's RandomHorizontalFlip +
RandomCrop(32, padding=4)), applied per sample to a whole (N, C, H, W) batch on its device. The
random numbers come from a numpy Generator the loader seeds with (seed, epoch), so a run is
reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

Augment = Callable[[torch.Tensor, np.random.Generator], torch.Tensor]
AUGMENTS = ("none", "flip_crop")


def flip_crop(x: torch.Tensor, rng: np.random.Generator, pad: int = 4) -> torch.Tensor:
    n, _, h, w = x.shape
    flip = torch.from_numpy(rng.random(n) < 0.5).to(x.device)
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = rng.integers(0, 2 * pad + 1, size=(2, n))
    out = torch.empty_like(x)
    for oy, ox in set(zip(dy.tolist(), dx.tolist())):
        idx = torch.from_numpy(np.flatnonzero((dy == oy) & (dx == ox))).to(x.device)
        out[idx] = padded[idx, :, oy:oy + h, ox:ox + w]
    return out


def make_augment(name: str | None) -> Augment | None:
    if name in (None, "none"):
        return None
    if name == "flip_crop":
        return flip_crop
    raise ValueError(f"data.augment={name}: allowed {list(AUGMENTS)}")
