"""Seed -> data -> network -> code layers, in this order, for a solo run and each member of a
batched group alike: a member's initial weights and data order are a solo run's bit for bit (the
data module draws no torch randomness; its subsets and label noise use numpy streams of its own)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from activation_hash.codes.capture import describe_units, parse_layers
from activation_hash.codes.select import parse_selections, selection_specs
from activation_hash.data.protocol import DataInfo
from activation_hash.data.protocol import describe as describe_data
from activation_hash.validate import check_against_data

log = logging.getLogger(__name__)


@dataclass
class Built:
    datamodule: Any
    data: DataInfo
    net: nn.Module
    units: list[tuple[str, int]]   # (layer name, ReLU units per input) of every code layer
    layers: list[int]              # the selected code layers (codes.layers), checked before training


def set_up_data(data_cfg: DictConfig) -> Any:
    datamodule = instantiate(data_cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def build(cfg: DictConfig, datamodule: Any = None, verbose: bool = True) -> Built:
    """The run's pieces; `datamodule`: one already set up from this cfg.data (a group's shared one)."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if datamodule is None:
        datamodule = set_up_data(cfg.data)
    data = describe_data(datamodule)
    check_against_data(cfg, data.n_train)
    net = instantiate(cfg.model)(input_shape=data.input_shape, num_classes=data.num_classes)
    units = describe_units(net, data.input_shape)
    # bad layer selections fail here, not mid-training
    layers = parse_layers(cfg.codes.layers, len(units), names=[name for name, _ in units])
    parse_selections(selection_specs(cfg.codes), [units[i][0] for i in layers])  # views of the captured layers
    if verbose:
        log.info("%d code layers, %d units per input (%s); the code uses %d bits", len(units),
                 sum(n for _, n in units),
                 ", ".join(f"{name}: {n}" for name, n in units[:8]) + (", ..." if len(units) > 8 else ""),
                 sum(units[i][1] for i in layers))
    return Built(datamodule, data, net, units, layers)
