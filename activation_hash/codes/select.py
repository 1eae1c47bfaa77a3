"""Named layer selections of one capture (`codes.selections`): the layer-wise study scores codes of
single layers and of layer ranges from one network's capture instead of training the network again
per selection (issue 20). A selection is a view of the captured code: its layers' bit columns,
taken from the packed codes with the capture's `layer_units`.

    codes:
      layers: all                       # what is captured (and saved in codes/epoch=NNNN.npz)
      selections: {all: all, '1': 1, '..2': '..2', '2..': '2..'}   # views of it, one row each

Selections use `codes.layers`' syntax (`all`, k, [i, j], 'i..j', '..j', 'i..', 'name:GLOB') and
number the *captured* layers 1..L in forward order (with the default `codes.layers: all`, the
network's code layers). Every capture row carries its selection's name in `selection`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from activation_hash.codes.capture import parse_layers

DEFAULT = {"all": "all"}


def selection_specs(codes_cfg: Any) -> dict[str, Any]:
    """The `codes.selections` mapping as plain {name: spec}, in its order ({all: all} when unset)."""
    specs = codes_cfg.get("selections") if codes_cfg is not None else None
    if not specs:
        return dict(DEFAULT)
    from omegaconf import DictConfig, ListConfig, OmegaConf
    if isinstance(specs, (DictConfig, ListConfig)):
        specs = OmegaConf.to_container(specs, resolve=True)
    return {str(name): spec for name, spec in specs.items()}


def primary(names: Sequence[str]) -> str:
    """The selection whose metrics are a run's summary (result.json) and logged under plain names:
    `all` when there is one, else the first."""
    return "all" if "all" in names else names[0]


def parse_selections(specs: Mapping[str, Any], layer_names: Sequence[str]) -> dict[str, list[int]]:
    """{name: 0-based indices into the captured layers} (ValueError naming codes.selections.NAME)."""
    return {name: parse_layers(spec, len(layer_names), key=f"codes.selections.{name}", names=list(layer_names))
            for name, spec in specs.items()}


def bit_columns(layer_units: Sequence[int], layers: Sequence[int]) -> np.ndarray:
    """The bit positions in the captured code of the (0-based) captured layers `layers`."""
    starts = np.concatenate([[0], np.cumsum(layer_units)]).astype(np.int64)
    return np.concatenate([np.arange(starts[i], starts[i + 1]) for i in layers]) if layers else \
        np.zeros(0, dtype=np.int64)


def select(split: Any, layers: Sequence[int]) -> Any:
    """The `SplitCodes` of the captured layers `layers` (0-based): their bit columns repacked, their
    names and units; the split itself when `layers` is every captured layer in order."""
    units = list(split.layer_units)
    if list(layers) == list(range(len(units))):
        return split
    n_bits = int(sum(units))
    bits = np.unpackbits(np.asarray(split.codes), axis=1, count=n_bits)
    codes = np.packbits(bits[:, bit_columns(units, layers)], axis=1)
    return dataclasses.replace(split, codes=codes, n_bits=int(sum(units[i] for i in layers)),
                               layer_names=[split.layer_names[i] for i in layers],
                               layer_units=[units[i] for i in layers])
