"""Train a BatchedMLP's members together: each its own loader (its seeded order and labels),
one optimizer over the stacked parameters, the summed per-member mean cross-entropy.

Why this equals M solo runs: member m's parameters enter only member m's loss term, so the
gradient of the sum is each member's own gradient; Adam/AdamW/SGD (momentum, weight decay) are
elementwise, so one optimizer over stacked tensors is M independent ones. Gradient clipping by
norm couples the elements of a tensor, so it is refused here (`trainer.gradient_clip_val`).

Early stopping per member: `stop_epoch[m]` is the number of epochs member m trains. A stopped
member leaves the loss (zero gradient) and, since Adam moves parameters even at zero gradient
(its moment estimates), its parameters are restored after every optimizer step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from activation_hash.batched.mlp import BatchedMLP


def train_epoch(model: BatchedMLP, loaders: Sequence, optimizer: torch.optim.Optimizer,
                active: Sequence[bool]) -> tuple[list[float], list[float]]:
    """One epoch; each member's mean training loss and accuracy (nan for stopped members), summed
    as the solo Classifier sums them (float32 loss x batch size, correct predictions)."""
    model.train()
    stopped = [m for m, a in enumerate(active) if not a]
    device = next(model.parameters()).device
    sums, correct, count = torch.zeros(model.members, device=device), torch.zeros(model.members, device=device), 0
    weights = torch.tensor([float(a) for a in active], device=device)
    for batches in zip(*loaders, strict=True):
        x = torch.stack([b[0] for b in batches])
        y = torch.stack([b[1] for b in batches])
        # a stopped member's parameters and batch-norm statistics are put back after the step
        state = [*model.parameters(), *model.buffers()]
        saved = [t.detach()[stopped].clone() for t in state] if stopped else None
        optimizer.zero_grad()
        logits = model(x)
        per_member = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
        (per_member * weights).sum().backward()
        optimizer.step()
        if saved is not None:
            with torch.no_grad():
                for p, s in zip(state, saved):
                    p[stopped] = s
        with torch.no_grad():
            sums += per_member.detach() * y.shape[1]
            correct += (logits.argmax(-1) == y).sum(1)
        count += y.shape[1]
    losses, accs = (sums / count).tolist(), (correct / count).tolist()
    return ([loss if a else float("nan") for loss, a in zip(losses, active)],
            [acc if a else float("nan") for acc, a in zip(accs, active)])


def fit(model: BatchedMLP, loaders: Sequence, optimizer_factory: Callable[..., torch.optim.Optimizer],
        epochs: int, stop_epoch: Sequence[int] | None = None,
        on_epoch_end: Callable[[int, list[bool]], None] | None = None) -> torch.optim.Optimizer:
    if len(loaders) != model.members:
        raise ValueError(f"{len(loaders)} loaders for {model.members} members")
    stop = list(stop_epoch) if stop_epoch is not None else [epochs] * model.members
    optimizer = optimizer_factory(params=[p for p in model.parameters() if p.requires_grad])
    for epoch in range(epochs):
        active = [epoch < s for s in stop]
        if not any(active):
            break
        train_epoch(model, loaders, optimizer, active)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, active)
    return optimizer


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
