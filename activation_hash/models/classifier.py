"""The one LightningModule: wraps any `nn.Module` classifier (logits out) with cross-entropy
training, torchmetrics accuracy, and the optimizer / LR schedule from config.

`steps_per_call=k > 1` fuses k optimizer steps into one Lightning `training_step`: the train loader
of `InMemoryDataModule` then yields chunks of k consecutive batches, and the module steps the
optimizer itself (manual optimization) once per batch, with the same zero_grad / backward /
clipping / step as Lightning's automatic loop. The weights, `global_step`, LR schedule and logged
metrics are those of k = 1 (tests/test_fused_steps.py). What is saved is Lightning's machinery
per `training_step` (hook dispatch, the automatic-optimization closure, progress tracking), which
costs about as much as a whole optimizer step of the paper's MNIST MLPs on a CPU
(bench/bench_training.py); the backward and optimizer-step hooks still run once per batch. What
does change: hooks and counters that run per `training_step` (`on_train_batch_start/end`,
`batch_idx`, `limit_train_batches`, `val_check_interval`, `max_steps` checks, the progress bar)
see one call per chunk.
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
    """`gradient_clip_val` / `gradient_clip_algorithm` are for steps_per_call > 1 only: Lightning
    refuses `Trainer(gradient_clip_val=...)` with manual optimization. With k = 1 set them on the
    Trainer as usual."""

    def __init__(self, net: nn.Module, num_classes: int,
                 optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, steps_per_call: int = 1,
                 gradient_clip_val: float | None = None, gradient_clip_algorithm: str = "norm"):
        super().__init__()
        if not (isinstance(steps_per_call, int) and steps_per_call >= 1):
            raise ValueError(f"steps_per_call={steps_per_call!r}: must be an int >= 1")
        if gradient_clip_val is not None and steps_per_call == 1:
            raise ValueError("gradient_clip_val is for steps_per_call > 1; with steps_per_call=1 pass it to "
                             "the Trainer")
        self.steps_per_call = steps_per_call
        self.automatic_optimization = steps_per_call == 1
        self.gradient_clip_val, self.gradient_clip_algorithm = gradient_clip_val, gradient_clip_algorithm
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
        self._terms: dict = {}  # loss-term name -> (value x batch summed, (weight_name, weight), samples)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if hasattr(datamodule, "steps_per_call"):
            datamodule.steps_per_call = self.steps_per_call  # 1 too: plain batches again if reused
        elif self.steps_per_call > 1:
            raise ValueError(f"steps_per_call={self.steps_per_call} needs a datamodule whose train loader yields "
                             f"chunks of batches (InMemoryDataModule); got {type(datamodule).__name__}")

    def on_fit_start(self) -> None:
        # In-memory datasets live on the accelerator: batches are slices, never copied per step.
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "to"):
            datamodule.to(self.device)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        if self.automatic_optimization:
            return self._train_loss(*batch)
        if not isinstance(batch, list):
            raise TypeError(f"steps_per_call={self.steps_per_call} expects a list of (x, y) batches per "
                            f"training_step, got {type(batch).__name__}")
        optimizer = self.optimizers()
        for x, y in batch:  # what Lightning's automatic optimization does per batch, in the same order
            optimizer.zero_grad()
            self.manual_backward(self._train_loss(x, y))
            if self.gradient_clip_val is not None:
                self.clip_gradients(optimizer, self.gradient_clip_val, self.gradient_clip_algorithm)
            optimizer.step()  # the LightningOptimizer: global_step counts every step
        # The fit loop counts training_step calls as the loggers' step; make it count batches as with
        # k = 1, so epoch metrics keep their step and it stays in line with global_step (W&B drops
        # metrics logged at a step lower than one already logged).
        self.trainer.fit_loop.epoch_loop._batches_that_stepped += len(batch) - 1
        return None

    def _train_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        # interim loss-term protocol (activation_hash/models/loss_terms.py) until the core rewrite lands
        for term in (t for m in self.net.modules() if hasattr(m, "loss_terms") for t in m.loss_terms()):
            loss = loss + term.weight * term.value
            total, weight, count = self._terms.get(term.name, (0.0, term.weight, 0))
            self._terms[term.name] = (total + term.value.detach() * y.shape[0], (term.weight_name, term.weight),
                                      count + y.shape[0])
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
        self._terms = {}
        for module in self.net.modules():
            if hasattr(module, "set_epoch"):
                module.set_epoch(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        total, correct, n = self._epoch_loss_sum, self._epoch_correct, self._epoch_samples
        self._epoch_loss_sum, self._epoch_correct, self._epoch_samples = None, None, 0
        if not self.automatic_optimization and self.scheduler_factory is not None:
            self.lr_schedulers().step()  # Lightning steps schedulers only in automatic optimization
        for name, (term_sum, (weight_name, weight), count) in getattr(self, "_terms", {}).items():
            self.log(f"train/loss_{name}", term_sum / count, sync_dist=True)
            if weight_name:
                self.log(f"train/{weight_name}", float(weight), sync_dist=True)
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
