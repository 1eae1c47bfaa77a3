"""The one LightningModule: wraps any `nn.Module` classifier (logits out) with cross-entropy
training, torchmetrics accuracy, and the optimizer / LR schedule from config.

Automatic optimization, as Lightning intends: every Trainer feature (`gradient_clip_val`,
`accumulate_grad_batches`, `fast_dev_run`, per-step callbacks) works unchanged.

Extra loss terms (see `activation_hash.models.loss_terms`): after each training forward pass the
module asks every submodule of the network that defines `loss_terms()` for its terms and adds
`weight * value` of each to the cross-entropy; at the start of every training epoch it calls
`set_epoch(epoch)` on every submodule that defines it (per-epoch weight schedules). Each term's
epoch mean is logged as `train/loss_<name>`, its weight as `train/<weight_name>`.

`epoch` in every logged row is the number of epochs trained (1 after the first epoch), the same
number the code captures use (0 = at initialization); Lightning's own default is 0-based.

Training loss and accuracy are summed on the device and logged once per epoch: a per-step
`self.log` costs as much as a whole optimizer step of the paper's small MLPs (bench/README.md).
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
        # sums over the epoch, on the device: loss x batch size, correct predictions, loss terms
        self._sums: dict[str, torch.Tensor] = {}
        self._samples = 0
        self._batches = 0
        self._weights: dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_fit_start(self) -> None:
        # In-memory datasets live on the accelerator: batches are slices, never copied per step.
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and callable(getattr(datamodule, "to", None)):
            datamodule.to(self.device)

    def _loss_modules(self) -> list[nn.Module]:
        return [m for m in self.net.modules() if callable(getattr(m, "loss_terms", None))]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        terms = [term for m in self._loss_modules() for term in m.loss_terms()]
        for term in terms:
            loss = loss + term.weight * term.value
        with torch.no_grad():  # no host sync per step
            self._add("loss", F.cross_entropy(logits, y).float() * y.shape[0])
            self._add("correct", (logits.argmax(dim=1) == y).sum())
            for term in terms:
                self._add(f"loss_{term.name}", term.value.detach().float())
                if term.weight_name:
                    self._weights[term.weight_name] = float(term.weight)
        self._samples += y.shape[0]
        self._batches += 1
        return loss

    def _add(self, key: str, value: torch.Tensor) -> None:
        self._sums[key] = value if key not in self._sums else self._sums[key] + value

    def on_train_epoch_start(self) -> None:
        self._sums, self._samples, self._batches, self._weights = {}, 0, 0, {}
        for module in self.net.modules():
            if callable(getattr(module, "set_epoch", None)):
                module.set_epoch(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        sums, n, batches = self._sums, self._samples, self._batches
        self._sums, self._samples, self._batches = {}, 0, 0
        if not sums:
            return
        # batch-size-weighted epoch means; the shards of TensorBatchLoader are equally long, so
        # sync_dist's mean over ranks is the global mean
        total = sums.pop("loss")
        self.log("epoch", float(self.current_epoch + 1))  # epochs trained, as in the captures (not 0-based)
        self.log("train/loss", total / n, prog_bar=True, sync_dist=True)
        self.log("train/acc", sums.pop("correct").float() / n, prog_bar=True, sync_dist=True)
        for key, value in sums.items():  # loss terms: mean over batches
            self.log(f"train/{key}", value / batches, sync_dist=True)
        for name, weight in self._weights.items():
            self.log(f"train/{name}", weight)
        if not torch.isfinite(total):
            self.nonfinite_loss = (f"training loss became {(total / n).item()} during epoch {self.current_epoch + 1} "
                                   f"(global step {self.global_step})")
            self.trainer.should_stop = True

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.log("epoch", float(self.current_epoch + 1))

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
        # a scheduler stated in optimizer steps says so (models.schedulers.step_lr_in_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler,
                                                         "interval": getattr(scheduler, "interval", "epoch")}}
