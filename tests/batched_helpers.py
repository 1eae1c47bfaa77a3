"""Test and benchmark helpers for batched training (not part of the package): `fit` trains a
batched network's members through `BatchedClassifier` and a Lightning Trainer, the module the
batched launcher's groups train with; `train_solo` is the per-batch reference a member must equal;
`build_member` builds a member as run(cfg) does (activation_hash.runs.build); `member_metrics`
scores a BatchedMLP's members from one forward; `max_relative_difference` compares weights.

    fit(BatchedMLP(solos), loaders, torch.optim.Adam, epochs=3, stop_epoch=[3, 1, 2])

`stop_epoch[m]` is the number of epochs member m trains (early stopping by a fixed schedule):
after it, the member leaves the loss and its parameters are put back after every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from activation_hash.batched.mlp import BatchedMLP
from activation_hash.batched.module import BatchedClassifier, ZipLoader
from activation_hash.metrics import encoding_metrics
from activation_hash.runs.build import build


@dataclass
class Member:
    cfg: DictConfig
    datamodule: Any
    net: nn.Sequential


def build_member(cfg: DictConfig) -> Member:
    built = build(cfg, verbose=False)
    return Member(cfg, built.datamodule, built.net)


@torch.no_grad()
def member_metrics(model: BatchedMLP, datamodules: Sequence, **metric_kwargs: Any) -> list[dict[str, Any]]:
    was_training = model.training
    model.eval()
    codes, acc = {}, {}
    for split in ("train", "test"):
        x = torch.stack([getattr(dm, f"x_{split}") for dm in datamodules])
        y = torch.stack([getattr(dm, f"y_{split}") for dm in datamodules])
        codes[split] = [np.packbits(c.cpu().numpy(), axis=1) for c in model.member_codes(x)]
        acc[split] = (model(x).argmax(-1) == y).float().mean(1).tolist()
    model.train(was_training)
    out = []
    for m, dm in enumerate(datamodules):
        n_bits = sum(model.widths[m][:-1])
        metrics = encoding_metrics(codes["train"][m], dm.y_train.cpu().numpy(), codes["test"][m],
                                   dm.y_test.cpu().numpy(), n_bits, **metric_kwargs)
        metrics.update({"train/net_acc": acc["train"][m], "test/net_acc": acc["test"][m]})
        out.append(metrics)
    return out


def rounding_noise_keys(solo: nn.Sequential) -> set[str]:
    """State keys of a solo MLP whose values are rounding noise: a Linear bias right before
    BatchNorm has true gradient 0 (the norm removes it), so its value and the running mean it
    shifts are float noise that Adam scales up to lr-sized steps, in a solo run as much as in a
    batched one. The training-mode function does not depend on them."""
    keys, modules = set(), list(solo)
    for i, (a, b) in enumerate(zip(modules, modules[1:])):
        if isinstance(a, nn.Linear) and isinstance(b, nn.BatchNorm1d):
            keys |= {f"{i}.bias", f"{i + 1}.running_mean"}
    return keys


def max_relative_difference(a: nn.Sequential, b: nn.Sequential) -> float:
    """max over float state tensors (except rounding_noise_keys) of max|a - b| / max|b|."""
    worst, skip = 0.0, rounding_noise_keys(b)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        if name not in skip and p.dtype.is_floating_point:
            worst = max(worst, ((p - q).abs().max() / q.abs().max().clamp_min(1e-12)).item())
    return worst


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
    batch (zero_grad, forward, cross-entropy plus the network's loss terms as `Classifier` adds
    them, backward, step), for `epochs` passes over `loader`."""
    net.train()
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(net(x), y)
            for module in net.modules():
                if callable(getattr(module, "loss_terms", None)):
                    for term in module.loss_terms():
                        loss = loss + term.weight * term.value
            loss.backward()
            optimizer.step()
    return net
