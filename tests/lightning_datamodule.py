"""A DataModule and a callback written as Lightning's docs write them today (`import lightning as L`):
no project code, no pytorch_lightning."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


class LitBlobs(L.LightningDataModule):
    """Three Gaussian blobs in 6 dimensions; `n` training samples."""

    def __init__(self, n: int = 240, batch_size: int = 32, seed: int = 0):
        super().__init__()
        self.n, self.batch_size, self.seed = n, batch_size, seed

    def setup(self, stage: str) -> None:
        g = torch.Generator().manual_seed(self.seed)
        centers = 6 * torch.randn(3, 6, generator=g)

        def split(n: int) -> TensorDataset:
            y = torch.randint(0, 3, (n,), generator=g)
            return TensorDataset(centers[y] + torch.randn(n, 6, generator=g), y)
        self.train, self.test = split(self.n), split(self.n // 2)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=self.batch_size)


class CountEpochs(L.Callback):
    """Writes the number of training epochs it saw to `path`."""

    def __init__(self, path: str):
        self.path, self.epochs = path, 0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs += 1
        with open(self.path, "w") as f:
            f.write(str(self.epochs))
