"""Extra loss terms: Classifier adds them to cross-entropy, follows their schedule, logs them."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import Logger
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from activation_hash.models.classifier import Classifier
from activation_hash.models.loss_terms import Geometric, LossTerm


class Latent(nn.Module):
    """A submodule (not the top net) with a scheduled L2 penalty on its output."""

    def __init__(self):
        super().__init__()
        self.linear, self.gamma, self.weight_now, self.epochs_seen = nn.Linear(4, 3), Geometric(0.5, 2.0, 3.0), None, []
        self.values: list[float] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs_seen.append(epoch)
        self.weight_now = self.gamma(epoch)

    def forward(self, x):
        self._z = self.linear(x)
        return self._z

    def loss_terms(self):
        value = self._z.pow(2).mean()
        self.values.append(value.item())
        return [LossTerm("latent_l2", value, self.weight_now, weight_name="gamma")]


class Rec(Logger):
    """Keeps what Lightning hands the loggers, one dict per log_metrics call."""

    def __init__(self):
        super().__init__()
        self.rows = []

    name, version = "rec", 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.rows.append(dict(metrics))


def test_loss_terms_follow_schedule_and_are_logged() -> None:
    torch.manual_seed(0)
    latent = Latent()
    net = nn.Sequential(latent, nn.ReLU(), nn.Linear(3, 2))
    x, y = torch.randn(24, 4), torch.randint(0, 2, (24,))
    seen_losses = []

    class Spy(Classifier):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            seen_losses.append((loss.item(), F.cross_entropy(self(batch[0]), batch[1]).item(), latent.values[-1],
                                latent.weight_now))
            return loss

    module = Spy(net, 2, optimizer=lambda params: torch.optim.SGD(params, lr=0.1))
    rec = Rec()
    trainer = pl.Trainer(max_epochs=4, logger=rec, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", log_every_n_steps=1)
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=8))
    assert latent.epochs_seen == [0, 1, 2, 3]
    # Geometric(0.5, 2, max 3): 0.5, 1, 2, 4 (grows while the previous is below 3)
    assert [r["train/gamma"] for r in rec.rows] == [0.5, 1.0, 2.0, 4.0]
    for e, row in enumerate(rec.rows):
        batch_values = latent.values[3 * e:3 * e + 3]  # 3 equal batches of 8: the epoch mean
        assert math.isclose(row["train/loss_latent_l2"], sum(batch_values) / 3, rel_tol=1e-6)
    assert len(rec.rows) == 4 and all("train/gamma" in r for r in rec.rows)
    # the optimized loss is CE + weight * value (the optimizer steps after training_step returns)
    for loss, ce, value, weight in seen_losses:
        assert math.isclose(loss, ce + weight * value, rel_tol=1e-5)
