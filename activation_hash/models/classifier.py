"""The one LightningModule: wraps any `nn.Module` classifier (logits out) with cross-entropy
training, torchmetrics accuracy, and the optimizer / LR schedule from config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy


class NonFiniteLossError(FloatingPointError):
    """Training loss became NaN or infinite."""


class Classifier(pl.LightningModule):
    def __init__(self, net: nn.Module, num_classes: int,
                 optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None):
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.nonfinite_loss: str | None = None
        # training loss x batch size and correct predictions, summed on the device over an epoch
        self._epoch_loss_sum: torch.Tensor | None = None
        self._epoch_correct: torch.Tensor | None = None
        self._epoch_samples = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_fit_start(self) -> None:
        # In-memory datasets live on the accelerator: batches are slices, never copied per step.
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "to"):
            datamodule.to(self.device)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        # Summed on the device and logged once per epoch in on_train_epoch_end: a per-step self.log
        # costs about 1 ms in Lightning's result collection and a torchmetrics forward 0.1-0.2 ms,
        # as much as a whole optimizer step of the paper's MNIST MLPs (bench/bench_training.py).
        # No host sync per step.
        with torch.no_grad():
            loss_sum = loss.float() * y.shape[0]
            correct = (logits.argmax(dim=1) == y).sum()
        if self._epoch_loss_sum is None:
            self._epoch_loss_sum, self._epoch_correct = loss_sum, correct
        else:
            self._epoch_loss_sum = self._epoch_loss_sum + loss_sum
            self._epoch_correct = self._epoch_correct + correct
        self._epoch_samples += y.shape[0]
        return loss

    def on_train_epoch_start(self) -> None:
        self._epoch_loss_sum, self._epoch_correct, self._epoch_samples = None, None, 0

    def on_train_epoch_end(self) -> None:
        total, correct, n = self._epoch_loss_sum, self._epoch_correct, self._epoch_samples
        self._epoch_loss_sum, self._epoch_correct, self._epoch_samples = None, None, 0
        if total is None:
            return
        # the batch-size-weighted epoch means Lightning's on_epoch=True logging gave; the shards of
        # TensorBatchLoader are equally long, so sync_dist's mean over ranks is the global mean
        self.log("train/loss", total / n, prog_bar=True, sync_dist=True)
        self.log("train/acc", correct.float() / n, prog_bar=True, sync_dist=True)
        if not torch.isfinite(total):
            self.nonfinite_loss = (f"training loss became {(total / n).item()} during epoch {self.current_epoch + 1} "
                                   f"(global step {self.global_step})")
            self.trainer.should_stop = True

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_acc)

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, acc: MulticlassAccuracy) -> None:
        x, y = batch
        logits = self(x)
        acc(logits, y)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), on_epoch=True, prog_bar=stage == "val")
        self.log(f"{stage}/acc", acc, on_epoch=True, prog_bar=stage == "val")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
