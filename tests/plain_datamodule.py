"""A plain LightningDataModule, as a user would write one: no project code in it."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


class BlobsDataModule(pl.LightningDataModule):
    """Three Gaussian blobs in 6 dimensions; `n` samples per split."""

    def __init__(self, n: int = 240, batch_size: int = 32, seed: int = 0):
        super().__init__()
        self.n, self.batch_size, self.seed = n, batch_size, seed

    def setup(self, stage: str | None = None) -> None:
        g = torch.Generator().manual_seed(self.seed)
        centers = 6 * torch.randn(3, 6, generator=g)
        def split(n: int) -> TensorDataset:
            y = torch.randint(0, 3, (n,), generator=g)
            return TensorDataset(centers[y] + torch.randn(n, 6, generator=g), y)
        self.train, self.val, self.test = split(self.n), split(self.n // 4), split(self.n // 2)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=self.batch_size)
