"""Interim adapter (until the core rewrite's callback lands): metric families with extras and
network probes for the existing ``NeuralCodeCallback``.

``family_metrics`` computes ``metrics.which`` through ``compute_families`` on a ``CodeSet`` that
carries the layer names and, when a selected family ``needs`` them, the extras ``penultimate``
(the input of the network's last nn.Linear, read by a forward pre-hook) and ``logits``.
``probe_metrics`` runs every network probe with ``metrics.<name>.enabled: true``. Both are called
from ``NeuralCodeCallback._capture``; the core branch replaces this file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from activation_hash.codes.probes import probes
from activation_hash.metrics import compute_families
from activation_hash.metrics.registry import CodeSet, families


@torch.inference_mode()
def _extras(model: nn.Module, loader, needs: set[str]) -> dict[str, np.ndarray]:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    seen: dict[str, list[torch.Tensor]] = {"penultimate": [], "logits": [], "inputs": []}
    handle = last.register_forward_pre_hook(lambda m, args: seen["penultimate"].append(args[0].flatten(1).float().cpu()))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for x, _ in loader:
            x = x.to(device)
            seen["logits"].append(model(x).float().cpu())
            seen["inputs"].append(x.flatten(1).float().cpu())
    finally:
        handle.remove()
        model.train(was_training)
    return {name: torch.cat(seen[name]).numpy() for name in needs}


def family_metrics(model: nn.Module, loaders: Mapping[str, Any], train, test, options: Mapping[str, Any]) -> dict:
    which = options.get("which") or ()
    known = families()
    needs = {x for name in which if name in known for x in known[name].needs}
    extras = {}
    for split, loader in loaders.items():
        extras.update({f"{split}/{k}": v for k, v in _extras(model, loader, needs).items()} if needs else {})
    codes = CodeSet(train.codes, train.labels, test.codes, test.labels, train.n_bits, extras,
                    tuple(train.layer_names), tuple(train.layer_units))
    flat = {k: v for k, v in options.items() if not isinstance(v, Mapping)}
    return compute_families(codes, which, flat, device=None if options.get("device", "auto") == "auto"
                            else options.get("device"))


class _ProbeData:
    def __init__(self, x: torch.Tensor, y: torch.Tensor, device: torch.device, out_dir: Path, epoch: int):
        self._x, self._y, self._device, self.out_dir, self.epoch = x, y, device, out_dir, epoch

    def test_batch(self, n: int):
        return self._x[:n].to(self._device), self._y[:n].to(self._device)


def probe_metrics(model: nn.Module, dm, layers, options: Mapping[str, Any], out_dir: Path, epoch: int) -> dict:
    out: dict[str, Any] = {}
    device = next(model.parameters()).device
    for name, probe in probes().items():
        spec = options.get(name)
        if not isinstance(spec, Mapping) or not spec.get("enabled", False):
            continue
        kwargs = {k: spec.get(k, v) for k, v in probe.options.items()}
        out.update(probe.compute(model, _ProbeData(dm.x_test, dm.y_test, device, out_dir, epoch), layers, **kwargs))
    return out
