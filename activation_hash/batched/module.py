"""BatchedClassifier: a LightningModule that trains the M members of a batched network at once.

    trainer = pl.Trainer(max_epochs=..., accelerator=..., devices=1, logger=False)
    trainer.fit(BatchedClassifier(BatchedMLP(solos), optimizer, scheduler), train_dataloaders=ZipLoader(loaders))

One training step is one forward/backward for all members: the loss is the sum of the members'
mean cross-entropies (member m's parameters enter only its own term, so the gradient of the sum
is each member's own gradient), and one optimizer over the stacked parameters is M independent
ones for elementwise optimizers (Adam, AdamW, SGD; `run_group.OPTIMIZERS`). Each member draws its
own minibatches: `ZipLoader` stacks the members' loaders batch by batch, each member cycling its
own loader (a new epoch, i.e. its next order, whenever it is used up), so members of different
training-set sizes can share steps; their batches are then padded to the largest and the padded
rows left out of the loss (`valid`). The scheduler is stepped per Lightning epoch, or per optimizer
step when it says so (`interval`, e.g. `step_lr_in_steps`), as the solo `Classifier` asks Lightning to.

Gradient clipping (`trainer.gradient_clip_val`, Lightning's hook `configure_gradient_clipping`) is
per member: by value it is elementwise, as Lightning does it; by norm each member's gradients are
scaled by `torch.nn.utils.clip_grad_norm_`'s rule on the total norm over its own parameters (every
stacked tensor's member slice; a padded unit's zero gradient adds nothing), `clip_norm_per_member`.

Early stopping per member (`active`): a stopped member leaves the loss (zero gradient) and,
because Adam moves parameters even at zero gradient (its moment estimates), its parameters and
batch-norm statistics are put back after every optimizer step. Per-epoch work (validation,
captures, logging, early stopping) is the group's callback (`run_group._GroupRecorder`), which
takes the members' epoch losses and accuracies from `end_epoch(members)` when their own epochs end.

Loss terms (the batched MLP's Keras L2, `BatchedMLP.member_loss_terms()`: values of shape (M,)) are
added to each member's loss as the solo `Classifier` adds them (`weight * value`), and each term's
mean over the member's batches comes back from `end_epoch` as `train/loss_<name>`; `train/loss`
stays the cross-entropy alone, as the solo run logs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from activation_hash.batched.capture import stack_padded


@torch.no_grad()
def clip_norm_per_member(grads: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_(member's gradients, max_norm)` for every member at once:
    `grads` are stacked tensors whose first dimension is the member; member m's total 2-norm is
    over `g[m]` of every tensor, and its slices are scaled in place by min(1, max_norm / (norm + 1e-6)),
    torch's rule. Returns the members' total norms (M,)."""
    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), 2, dim=1) for g in grads])  # (tensors, M)
    total = torch.linalg.vector_norm(norms, 2, dim=0)
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.to(g.dtype).view(-1, *([1] * (g.dim() - 1))))
    return total


class ZipLoader:
    """`steps` stacked (M, B, ...) batches (default: one epoch of the members' equal loaders).
    Member m's epoch ends after every `len(loaders[m])` steps. Batches of different sizes are
    padded with zeros to the largest and come with `valid`, a (M, B) 0/1 mask of real rows."""

    def __init__(self, loaders: Sequence, steps: int | None = None):
        self.loaders = list(loaders)
        self.lengths = [len(loader) for loader in self.loaders]
        if steps is None and len(set(self.lengths)) > 1:
            raise ValueError(f"members' loaders have {self.lengths} batches: pass steps= to cycle them")
        self.steps = self.lengths[0] if steps is None else int(steps)

    def __len__(self) -> int:
        return self.steps

    def set_epoch(self, epoch: int) -> None:
        """The epoch the members' loaders draw their next order for (TensorBatchLoader.set_epoch)."""
        for loader in self.loaders:
            loader.set_epoch(epoch)

    def __iter__(self):
        iters = [iter(loader) for loader in self.loaders]
        for step in range(self.steps):
            batches = []
            for m, loader in enumerate(self.loaders):
                if step and step % self.lengths[m] == 0:
                    iters[m] = iter(loader)  # the member's next epoch
                batches.append(next(iters[m]))
            x, _ = stack_padded([b[0] for b in batches])
            y, rows = stack_padded([b[1] for b in batches])
            if len(set(rows)) == 1:
                yield x, y
                continue
            valid = (torch.arange(y.shape[1], device=y.device) < torch.tensor(rows, device=y.device)[:, None]).float()
            yield x, y, valid


class BatchedClassifier(pl.LightningModule):
    def __init__(self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None):
        super().__init__()
        self.net = net
        self.members = int(net.members)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.active = [True] * self.members
        self._sums = self._correct = self._count = self._batches = None
        self._terms: dict[str, torch.Tensor] = {}
        self._saved: tuple[list[int], list[torch.Tensor]] | None = None
        self._weight_key: tuple[bool, ...] | None = None
        self._weight: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, keep: list | None = None) -> torch.Tensor:
        return self.net(x, keep)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=[p for p in self.net.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": getattr(scheduler, "interval", "epoch")}}

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Lightning's clipping per member: by value (elementwise) as Lightning does it, by norm on
        each member's own total norm (`clip_norm_per_member`), as a solo run's `clip_grad_norm_`."""
        if not gradient_clip_val:
            return
        if str(getattr(gradient_clip_algorithm, "value", gradient_clip_algorithm) or "norm").lower() != "norm":
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            clip_norm_per_member(grads, float(gradient_clip_val))

    def on_train_start(self) -> None:
        self._sums, self._correct, self._count, self._batches = (torch.zeros(self.members, device=self.device)
                                                                 for _ in range(4))
        self._terms = {}

    def _loss_terms(self) -> list:
        terms = getattr(self.net, "member_loss_terms", None)
        return terms() if callable(terms) else []

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, *valid = batch
        stopped = self.stopped()
        if stopped:  # runs before the optimizer step (Lightning's closure), restored after it
            self._saved = stopped, [t.detach()[stopped].clone() for t in self._state()]
        logits = self.net(x)
        per_sample = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
        right = logits.argmax(-1) == y
        if valid:  # padded rows: out of the loss, the sums and the counts
            rows = valid[0].sum(1)
            per_member = (per_sample * valid[0]).sum(1) / rows
            right = right & valid[0].bool()
        else:
            rows = torch.full((self.members,), float(y.shape[1]), device=self.device)
            per_member = per_sample.mean(1)
        terms = self._loss_terms()
        loss = per_member
        for term in terms:  # as the solo Classifier: weight x value added to each member's loss
            loss = loss + term.weight * term.value
        with torch.no_grad():  # summed as the solo Classifier sums them: float32 loss x batch size
            self._sums += per_member.detach() * rows
            self._correct += right.sum(1)
            self._count += rows
            self._batches += 1
            for term in terms:  # the unweighted value, a mean over batches at the epoch's end
                if term.name not in self._terms:
                    self._terms[term.name] = torch.zeros(self.members, device=self.device)
                self._terms[term.name] += term.value.detach().float()
        return (loss * self._weights()).sum()

    def _weights(self) -> torch.Tensor:
        """1 for a training member, 0 for a stopped one; rebuilt (a host-to-device copy) only when
        `active` changes, not at every step."""
        key = tuple(self.active)
        if self._weight_key != key:
            self._weight_key = key
            self._weight = torch.tensor([float(a) for a in key], device=self.device)
        return self._weight

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._saved is not None:  # the members stopped when the step began (not one stopping now)
            stopped, saved = self._saved
            with torch.no_grad():
                for tensor, old in zip(self._state(), saved):
                    tensor[stopped] = old
            self._saved = None

    def end_epoch(self, members: list[int]) -> list[tuple[float, float, dict[str, float]]]:
        """Each of `members`' mean training loss and accuracy since its last epoch end, and its loss
        terms' means over its batches ({"train/loss_<name>": mean}) (one copy to the host for all
        of them); starts their next epoch."""
        idx = torch.tensor(members, device=self.device)
        count, batches = self._count[idx], self._batches[idx]
        names = list(self._terms)
        stats = torch.stack([self._sums[idx] / count, self._correct[idx] / count,
                             *(self._terms[name][idx] / batches for name in names)], 1).tolist()
        for t in (self._sums, self._correct, self._count, self._batches, *self._terms.values()):
            t[idx] = 0
        return [(loss, acc, {f"train/loss_{name}": v for name, v in zip(names, rest)})
                for loss, acc, *rest in stats]

    def stopped(self) -> list[int]:
        return [m for m, a in enumerate(self.active) if not a]

    def _state(self) -> list[torch.Tensor]:
        return [*self.net.parameters(), *self.net.buffers()]
