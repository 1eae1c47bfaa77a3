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
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.nonfinite_loss: str | None = None
        self._epoch_loss_sum: torch.Tensor | None = None

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
        self.train_acc(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        # summed on the device and checked once per epoch: no host sync per step
        detached = loss.detach()
        self._epoch_loss_sum = detached if self._epoch_loss_sum is None else self._epoch_loss_sum + detached
        return loss

    def on_train_epoch_end(self) -> None:
        total, self._epoch_loss_sum = self._epoch_loss_sum, None
        if total is not None and not torch.isfinite(total):
            self.nonfinite_loss = (f"training loss became {total.item()} during epoch {self.current_epoch + 1} "
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
