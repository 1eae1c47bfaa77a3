"""The one LightningModule: wraps any `nn.Module` classifier (logits out) with cross-entropy
training, torchmetrics accuracy, and the optimizer / LR schedule from config.

Automatic optimization only, as Lightning intends: gradient clipping, gradient accumulation,
`fast_dev_run`, per-step callbacks and strategies are the Trainer's.

Extra loss terms (activation_hash/models/loss_terms.py): after each training forward the module
calls `loss_terms()` on every submodule of the net that defines it and adds
`sum(weight * value)` to the cross-entropy; at each training-epoch start it calls
`set_epoch(current_epoch)` on every submodule that defines it. Each term's epoch mean is logged as
`train/loss_<name>`, and its weight as `train/<weight_name>` when the term names it.
"""

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
        self._reset_epoch_sums()

    def _reset_epoch_sums(self) -> None:
        # training loss x batch size, correct predictions and loss terms x batch size, summed on
        # the device over an epoch and logged once in on_train_epoch_end (no host sync per step)
        self._sums: dict[str, torch.Tensor] = {}
        self._weights: dict[str, float] = {}
        self._epoch_samples = 0

    def _with(self, method: str) -> list[nn.Module]:
        return [m for m in self.net.modules() if callable(getattr(m, method, None))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_fit_start(self) -> None:
        # In-memory datasets live on the accelerator: batches are slices, never copied per step.
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and callable(getattr(datamodule, "to", None)):
            datamodule.to(self.device)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        n = y.shape[0]
        sums = {"loss": loss.detach().float() * n, "correct": (logits.detach().argmax(dim=1) == y).sum()}
        for module in self._with("loss_terms"):
            for term in module.loss_terms():
                loss = loss + term.weight * term.value
                sums[f"loss_{term.name}"] = term.value.detach().float() * n
                if term.weight_name is not None:
                    self._weights[term.weight_name] = float(term.weight)
        for key, value in sums.items():
            self._sums[key] = self._sums[key] + value if key in self._sums else value
        self._epoch_samples += n
        return loss

    def on_train_epoch_start(self) -> None:
        self._reset_epoch_sums()
        for module in self._with("set_epoch"):
            module.set_epoch(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        sums, weights, n = self._sums, self._weights, self._epoch_samples
        self._reset_epoch_sums()
        if not sums:
            return
        # batch-size-weighted epoch means; the shards of TensorBatchLoader are equally long, so
        # sync_dist's mean over ranks is the global mean
        total = sums.pop("loss")
        self.log("train/loss", total / n, prog_bar=True, sync_dist=True)
        self.log("train/acc", sums.pop("correct").float() / n, prog_bar=True, sync_dist=True)
        for key, value in sums.items():
            self.log(f"train/{key}", value / n, sync_dist=True)
        for name, weight in weights.items():
            self.log(f"train/{name}", weight, sync_dist=True)
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
