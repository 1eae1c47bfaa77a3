"""Each member's solo pieces, built exactly as `activation_hash.run.run(cfg)` builds them.

Same order of random-number use as run(): `pl.seed_everything(cfg.seed, workers=True)`, then the
data module (its subsets and label noise come from numpy streams of its own seed), then the
network from `cfg.model`. So a member's initial weights and its train loader's order (the
TensorBatchLoader seeded with data.seed) are a solo run's bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

# Keys in which the members of one batch may differ; everything else must be equal.
BATCHABLE_KEYS = ("seed", "model.width", "model.widths", "data.label_noise", "data.seed", "output_dir")


@dataclass
class Member:
    cfg: DictConfig
    datamodule: Any
    net: nn.Sequential


def build_member(cfg: DictConfig) -> Member:
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    net = instantiate(cfg.model)(input_shape=tuple(datamodule.input_shape), num_classes=datamodule.num_classes)
    return Member(cfg, datamodule, net)
