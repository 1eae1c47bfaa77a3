"""Facts of a network and a data set that a plan needs, without data or a real network.

``describe(model_cfg, shape, classes)``: the network built on PyTorch's meta device (no memory, no
arithmetic), once per (architecture, input shape): parameters, forward FLOPs per sample (counted by
``torch.utils.flop_counter.FlopCounterMode``), its code layers and units
(``codes.capture.describe_units``), the activation elements a sample leaves for backward (the
outputs of its leaf modules), and why it cannot be a batched-group member (``expand.network_reason``).
``data_facts(data_cfg)``: input shape, classes and the official file sizes (a table, not read).
"""

from __future__ import annotations

import json
from typing import Any

DATA_SIZES = {"mnist": (60000, 10000), "fashion_mnist": (60000, 10000), "cifar10": (50000, 10000),
              "digits": (1437, 360)}

_CACHE: dict[str, dict[str, Any]] = {}


def data_facts(data: dict) -> tuple[tuple[int, ...], int, int, int]:
    """(input shape, classes, training-file size, test-file size) of a data config."""
    from activation_hash.data.sources import OPTION_DEFAULTS, make_source
    name = data.get("name")
    options = {**OPTION_DEFAULTS.get(name, {}), **(data.get("options") or {})}
    source = make_source(name, data.get("root") or "data", data.get("mirrors"), data.get("checksums"),
                         data.get("options"))
    if name in DATA_SIZES:
        n_file, n_test = DATA_SIZES[name]
    elif name == "synthetic":
        n_file, n_test = int(options["n_train"]), int(options["n_test"])
    else:   # planar sets
        n_file, n_test = int(options["n_samples"]), int(options["n_test"])
    return tuple(source.input_shape), int(source.num_classes), n_file, n_test


def family(model: dict) -> str:
    """The network family a unit cost is measured for: the model's class name."""
    return str(model.get("_target_", "custom")).rsplit(".", 1)[-1]


def describe(model: dict, shape: tuple[int, ...], classes: int) -> dict[str, Any]:
    key = json.dumps([model, list(shape), classes], sort_keys=True, default=str)
    if key in _CACHE:
        return _CACHE[key]
    import torch
    from hydra.utils import instantiate
    from torch.utils.flop_counter import FlopCounterMode

    from activation_hash.codes.capture import describe_units
    from activation_hash.plan.expand import MLP_TARGET, network_reason

    with torch.device("meta"):
        net = instantiate(model)(input_shape=tuple(shape), num_classes=classes)
    params = sum(p.numel() for p in net.parameters())
    acts = [0]

    def count(module, inputs, output):
        if isinstance(output, torch.Tensor) and not list(module.children()):
            acts[0] += output.numel()

    handles = [m.register_forward_hook(count) for m in net.modules()]
    try:
        net.train()
        with FlopCounterMode(display=False) as flops:
            net(torch.zeros(2, *shape, device="meta"))   # two samples: batch norm trains on >= 2
    finally:
        for h in handles:
            h.remove()
    layers = describe_units(net, tuple(shape))
    reason = None if model.get("_target_") == MLP_TARGET else network_reason(net, tuple(shape))
    _CACHE[key] = {"family": family(model), "params": int(params), "flops": int(flops.get_total_flops()) // 2,
                   "activations": int(acts[0]) // 2, "layer_names": [n for n, _ in layers],
                   "layer_units": [int(u) for _, u in layers], "reason": reason}
    return _CACHE[key]


def code_bits(info: dict[str, Any], layers: Any) -> int:
    """Bits per code of the `codes.layers` selection."""
    from activation_hash.codes.capture import parse_layers
    chosen = parse_layers(layers, len(info["layer_units"]), names=info["layer_names"])
    return int(sum(info["layer_units"][i] for i in chosen))


def selection_bits(info: dict[str, Any], codes: dict[str, Any]) -> list[int]:
    """Bits per code of each `codes.selections` entry (views of the `codes.layers` capture, each
    scored on its own: the metrics are paid once per selection)."""
    from activation_hash.codes.capture import parse_layers
    from activation_hash.codes.select import parse_selections, selection_specs
    captured = parse_layers(codes.get("layers", "all"), len(info["layer_units"]), names=info["layer_names"])
    names, units = [info["layer_names"][i] for i in captured], [info["layer_units"][i] for i in captured]
    return [int(sum(units[i] for i in layers)) for layers in parse_selections(selection_specs(codes), names).values()]
