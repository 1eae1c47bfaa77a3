"""TensorBatchLoader: mini-batches sliced straight out of in-memory tensors.

No per-sample Python and no torch DataLoader: each epoch draws one permutation (from a generator
seeded with (seed, epoch), so every rank draws the same one) and yields `x[idx]`, `y[idx]` per
batch on whatever device the tensors live on. Without shuffling, batches are plain slices.

Distributed training: when torch.distributed is initialized (or rank / world_size are given),
each epoch's order is cut to a multiple of world_size and rank r takes positions r, r + W, ...
The shards are disjoint and equally long, so every rank runs the same number of steps; the up to
W - 1 samples left over are different ones each epoch when shuffling.

Lightning calls `loader.sampler.set_epoch(epoch)` at the start of every epoch (its hook for
distributed samplers), which keeps the order tied to the trainer's epoch, also after a resume.
Used on its own, the loader advances one epoch per pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

Batch = tuple[torch.Tensor, torch.Tensor]


class EpochSampler:
    """The per-epoch sample order of one rank."""

    def __init__(self, shuffle: bool, seed: int):
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, n: int, epoch: int, rank: int, world_size: int) -> np.ndarray | None:
        """Indices this rank visits in `epoch`; None means all n samples in order (slice, no gather)."""
        if not self.shuffle and world_size == 1:
            return None
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        if world_size == 1:
            return order
        usable = n - n % world_size
        return order[rank:usable:world_size]


class TensorBatchLoader:
    """Iterable over (x, y) mini-batches of two aligned tensors.

    `rank` / `world_size` default to torch.distributed's when it is initialized, else 0 / 1;
    pass world_size=1 to always cover the whole set (e.g. for evaluation on one rank).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False, rank: int | None = None,
                 world_size: int | None = None, augment=None):
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be >= 1")
        if (rank is None) != (world_size is None):
            raise ValueError(f"rank={rank}, world_size={world_size}: pass both or neither")
        if world_size is not None and not (world_size >= 1 and 0 <= rank < world_size):
            raise ValueError(f"rank={rank}, world_size={world_size}: need world_size >= 1 and "
                             f"0 <= rank < world_size")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.augment = augment  # data.augment: f(x_batch, numpy Generator) -> x_batch, training only
        self.rank, self.world_size = rank, world_size
        self.sampler = EpochSampler(shuffle, seed)
        self.batch_sampler = None  # Lightning looks for both attributes once `sampler` exists

    @property
    def shuffle(self) -> bool:
        return self.sampler.shuffle

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def rank_and_world_size(self) -> tuple[int, int]:
        if self.world_size is not None:
            return self.rank, self.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def num_samples(self) -> int:
        """Samples this rank sees per epoch (before drop_last)."""
        _, world = self.rank_and_world_size()
        return len(self.x) // world if world > 1 else len(self.x)

    def num_batches(self) -> int:
        n = self.num_samples()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __len__(self) -> int:
        return self.num_batches()

    def __iter__(self) -> Iterator[Batch]:
        # A generator: nothing below runs (and no epoch is used up) until the first batch is asked for.
        rank, world = self.rank_and_world_size()
        epoch = self.sampler.epoch
        self.sampler.epoch = epoch + 1
        order = self.sampler.order(len(self.x), epoch, rank, world)
        n = len(self.x) if order is None else len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        rng = np.random.default_rng([self.sampler.seed, epoch, rank, 1]) if self.augment else None
        if order is None:
            for start in range(0, stop, self.batch_size):
                x = self.x[start:start + self.batch_size]
                yield (self.augment(x, rng) if rng else x), self.y[start:start + self.batch_size]
            return
        index = torch.from_numpy(order).to(self.x.device)
        for start in range(0, stop, self.batch_size):
            idx = index[start:start + self.batch_size]
            x = self.x.index_select(0, idx)
            yield (self.augment(x, rng) if rng else x), self.y.index_select(0, idx)

    def to(self, device: torch.device | str) -> TensorBatchLoader:
        """Move the held tensors (in place); returns self."""
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def __repr__(self) -> str:
        return (f"TensorBatchLoader(n={len(self.x)}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, device={self.x.device})")
