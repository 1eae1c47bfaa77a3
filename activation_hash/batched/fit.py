"""fit(): train a batched network's members for some epochs through `BatchedClassifier` and a
Lightning Trainer, the same module the batched launcher's groups train with; and `train_solo`,
the per-batch reference a member must equal (tests and bench/bench_batched.py).

    fit(BatchedMLP(solos), loaders, torch.optim.Adam, epochs=3, stop_epoch=[3, 1, 2])

`stop_epoch[m]` is the number of epochs member m trains (early stopping by a fixed schedule):
after it, the member leaves the loss and its parameters are put back after every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from activation_hash.batched.module import BatchedClassifier, ZipLoader


class _StopAt(pl.Callback):
    def __init__(self, stop_epoch: Sequence[int]):
        self.stop_epoch = list(stop_epoch)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: BatchedClassifier) -> None:
        pl_module.active = [trainer.current_epoch < s for s in self.stop_epoch]

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: BatchedClassifier) -> None:
        if not any(trainer.current_epoch + 1 < s for s in self.stop_epoch):
            trainer.should_stop = True


def fit(model: torch.nn.Module, loaders: Sequence, optimizer_factory: Callable[..., torch.optim.Optimizer],
        epochs: int, stop_epoch: Sequence[int] | None = None, accelerator: str = "cpu") -> BatchedClassifier:
    if len(loaders) != model.members:
        raise ValueError(f"{len(loaders)} loaders for {model.members} members")
    module = BatchedClassifier(model, optimizer_factory)
    trainer = pl.Trainer(max_epochs=epochs, accelerator=accelerator, devices=1, logger=False,
                         enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
                         num_sanity_val_steps=0, limit_val_batches=0,
                         callbacks=[_StopAt(stop_epoch if stop_epoch is not None else [epochs] * model.members)])
    trainer.fit(module, train_dataloaders=ZipLoader(loaders))
    return module


def train_solo(net: torch.nn.Module, loader, optimizer: torch.optim.Optimizer, epochs: int) -> torch.nn.Module:
    """The solo reference a member must equal: what Lightning's automatic optimization does per
    batch (zero_grad, forward, cross-entropy, backward, step), for `epochs` passes over `loader`."""
    net.train()
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimizer.step()
    return net
