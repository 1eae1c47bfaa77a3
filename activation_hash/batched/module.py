"""BatchedClassifier: a LightningModule that trains the M members of a batched network at once.

    trainer = pl.Trainer(max_epochs=..., accelerator=..., devices=1, logger=False)
    trainer.fit(BatchedClassifier(BatchedMLP(solos), optimizer, scheduler), train_dataloaders=ZipLoader(loaders))

One training step is one forward/backward for all members: the loss is the sum of the members'
mean cross-entropies (member m's parameters enter only its own term, so the gradient of the sum
is each member's own gradient), and one optimizer over the stacked parameters is M independent
ones for elementwise optimizers (Adam, AdamW, SGD; `run_group.OPTIMIZERS`). Each member draws its
own minibatches (`ZipLoader` stacks the members' loaders batch by batch). The scheduler is stepped
per epoch, as the solo `Classifier` asks Lightning to.

Early stopping per member (`active`): a stopped member leaves the loss (zero gradient) and,
because Adam moves parameters even at zero gradient (its moment estimates), its parameters and
batch-norm statistics are put back after every optimizer step. Per-epoch work (validation,
captures, logging, early stopping) is the group's callback (`run_group._GroupRecorder`), which
reads the epoch's per-member loss and accuracy from `epoch_metrics()`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn


class ZipLoader:
    """The members' train loaders as one iterable of stacked (M, B, ...) batches, one per step."""

    def __init__(self, loaders: Sequence):
        if len({len(loader) for loader in loaders}) > 1:
            raise ValueError(f"members' loaders have {[len(loader) for loader in loaders]} batches: must be equal")
        self.loaders = list(loaders)

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self):
        for batches in zip(*self.loaders, strict=True):
            yield torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])


class BatchedClassifier(pl.LightningModule):
    def __init__(self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None):
        super().__init__()
        self.net = net
        self.members = int(net.members)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.active = [True] * self.members
        self._sums = self._correct = None
        self._count = 0
        self._saved: list[torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, keep: list | None = None) -> torch.Tensor:
        return self.net(x, keep)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=[p for p in self.net.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def on_train_epoch_start(self) -> None:
        self._sums = torch.zeros(self.members, device=self.device)
        self._correct = torch.zeros(self.members, device=self.device)
        self._count = 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        stopped = self.stopped()
        if stopped:  # runs before the optimizer step (Lightning's closure), restored after it
            self._saved = [t.detach()[stopped].clone() for t in self._state()]
        logits = self.net(x)
        per_member = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
        with torch.no_grad():  # summed as the solo Classifier sums them: float32 loss x batch size
            self._sums += per_member.detach() * y.shape[1]
            self._correct += (logits.argmax(-1) == y).sum(1)
        self._count += y.shape[1]
        weights = torch.tensor([float(a) for a in self.active], device=self.device)
        return (per_member * weights).sum()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._saved is not None:
            stopped = self.stopped()
            with torch.no_grad():
                for tensor, saved in zip(self._state(), self._saved):
                    tensor[stopped] = saved
            self._saved = None

    def epoch_metrics(self) -> tuple[list[float], list[float]]:
        """Each member's mean training loss and accuracy over the epoch (nan for stopped members)."""
        losses, accs = (self._sums / self._count).tolist(), (self._correct / self._count).tolist()
        return ([v if a else float("nan") for v, a in zip(losses, self.active)],
                [v if a else float("nan") for v, a in zip(accs, self.active)])

    def stopped(self) -> list[int]:
        return [m for m, a in enumerate(self.active) if not a]

    def _state(self) -> list[torch.Tensor]:
        return [*self.net.parameters(), *self.net.buffers()]
