"""Record the neural code of a network: the sign pattern of every ReLU-like unit.

What is captured: every call of an `nn.ReLU`, `nn.LeakyReLU`, `nn.PReLU` or `nn.RReLU` module
(in-place or not), one "layer" per call in the order the forward pass makes them, so a module
object reused at several places in the graph contributes one layer per place. A unit is on
(bit 1) when its pre-activation is > 0; every element of the activation tensor is a unit (for
a convolution, every channel at every spatial position). The pre-activation is read in a
forward *pre*-hook, before an in-place ReLU overwrites it.

Not captured by hooks: functional calls (`F.relu`, `torch.relu`, `x.relu()`), which have no
module to hook; smooth activations (tanh, sigmoid, GELU, ...) and ReLU6 (three pieces), which
are not units of the code by the paper's definition.

Bits are packed on the module's device (the np.packbits layout: big-endian within each byte,
zero padding at the end of the code) so only packed bytes ever cross to the host.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from activation_hash.codes.units import CodeUnit

RELU_LIKE: tuple[type[nn.Module], ...] = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU)
# what the recorder captures: ReLU-like modules and the public CodeUnit marker
CODE_MODULES: tuple[type[nn.Module], ...] = (*RELU_LIKE, CodeUnit)

_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)


def relu_like_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The named ReLU-like and CodeUnit modules of `model`, in registration order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, CODE_MODULES)]


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Pack a (n, B) bool tensor into (n, ceil(B/8)) uint8, exactly like np.packbits(axis=1)."""
    n, width = bits.shape
    pad = (-width) % 8
    if pad:
        bits = nn.functional.pad(bits, (0, pad))
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=bits.device)
    return (bits.view(n, -1, 8).to(torch.uint8) * weights).sum(-1, dtype=torch.uint8)


def parse_layers(spec: object, n_layers: int, key: str = "codes.layers",
                 names: Sequence[str] | None = None) -> list[int]:
    """Turn a layer selection into sorted 0-based layer indices.

    Accepted (layers are numbered 1..L in forward order): `all` / null; an int k; a list of
    ints; a string range "i..j" (inclusive), "..j" (layers 1..j) or "i.." (layers i..L); or
    "name:PATTERN", a shell glob (fnmatch) on the recorded layer names `names`, e.g.
    "name:latent*" for a latent CodeUnit or "name:layer1.*" for a stage's ReLUs.
    """
    allowed = (f"'all', an int or list of ints in 1..{n_layers}, a range 'i..j', '..j', 'i..', or "
               f"'name:GLOB' on the layer names (the network has {n_layers} code layers)")
    if spec is None or spec == "all":
        return list(range(n_layers))
    if isinstance(spec, str) and spec.startswith("name:"):
        if names is None:
            raise ValueError(f"{key}={spec!r}: a name selection needs the layer names")
        chosen_names = [i for i, name in enumerate(names) if fnmatch.fnmatchcase(name, spec[5:])]
        if not chosen_names:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise ValueError(f"{key}={spec!r} matches no layer; the layers are: {shown}")
        return chosen_names
    if isinstance(spec, str):
        match = re.fullmatch(r"\s*(\d*)\s*\.\.\s*(\d*)\s*", spec)
        if match is None:
            if spec.strip().isdigit():
                return parse_layers(int(spec), n_layers, key)
            raise ValueError(f"{key}={spec!r} is not a layer selection; use {allowed}")
        lo = int(match.group(1)) if match.group(1) else 1
        hi = int(match.group(2)) if match.group(2) else n_layers
        chosen: Iterable[int] = range(lo, hi + 1)
        if lo > hi:
            raise ValueError(f"{key}={spec!r} is an empty range; use {allowed}")
    elif isinstance(spec, int) and not isinstance(spec, bool):
        chosen = [spec]
    elif isinstance(spec, Sequence):
        chosen = list(spec)
        if not chosen or not all(isinstance(i, int) and not isinstance(i, bool) for i in chosen):
            raise ValueError(f"{key}={list(spec)!r} must be a non-empty list of ints; use {allowed}")
    else:
        raise ValueError(f"{key}={spec!r} is not a layer selection; use {allowed}")
    chosen = sorted(set(chosen))
    bad = [i for i in chosen if not 1 <= i <= n_layers]
    if bad:
        raise ValueError(f"{key}={spec!r} names layer(s) {bad} outside 1..{n_layers}; use {allowed}")
    return [i - 1 for i in chosen]


class CodeRecorder:
    """Context manager that records the sign pattern of ReLU-like units during forward passes.

        with CodeRecorder(model) as rec:
            logits = model(x)
            packed = rec.packed()          # (batch, ceil(n_bits/8)) uint8 on x's device

    `layers` (0-based indices, from `parse_layers`) selects which call sites form the code;
    None keeps all. `layer_names` / `layer_units` describe every call site seen in the last
    forward pass.
    """

    def __init__(self, model: nn.Module, layers: Sequence[int] | None = None):
        self.model = model
        self.layers = None if layers is None else list(layers)
        self._wanted = None if layers is None else set(self.layers)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._bits: list[torch.Tensor] = []
        self.layer_names: list[str] = []
        self.layer_units: list[int] = []

    def __enter__(self) -> "CodeRecorder":
        modules = relu_like_modules(self.model)
        if not modules:
            raise ValueError(f"{type(self.model).__name__} has no ReLU-like modules ({', '.join(t.__name__ for t in RELU_LIKE)}); "
                             "nothing to capture. Functional F.relu calls need activation_hash.codes.fx.modularize_relus first")
        for name, module in modules:
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            if not self._bits:  # first call site of a new forward pass
                self.layer_names, self.layer_units = [], []
            act = args[0].detach().flatten(1)
            index = len(self.layer_names)
            self.layer_names.append(name)
            self.layer_units.append(act.shape[1])
            # layers outside the selection are only described, not kept
            self._bits.append(act > 0 if self._wanted is None or index in self._wanted else None)
        return hook

    def take(self) -> torch.Tensor:
        """The selected bits of the last forward pass as one (batch, n_bits) bool tensor; resets."""
        return torch.cat(self.take_layers(), dim=1)

    def take_layers(self) -> list[torch.Tensor]:
        """The selected layers' bits of the last forward pass, one (batch, units) bool tensor per
        selected layer in selection order; resets."""
        if not self._bits:
            raise RuntimeError("no ReLU-like module ran: call the model inside the `with` block first")
        chosen = self._bits if self.layers is None else [self._bits[i] for i in self.layers]
        self._bits = []
        return chosen

    def packed(self) -> torch.Tensor:
        return pack_bits(self.take())


@torch.no_grad()
def describe_units(model: nn.Module, input_shape: Sequence[int]) -> list[tuple[str, int]]:
    """(module name, units) for every ReLU-like call site, found by one forward pass on zeros."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with CodeRecorder(model) as rec:
            model(torch.zeros(1, *input_shape, device=device))
            rec.take()
            names, units = rec.layer_names, rec.layer_units
    finally:
        model.train(was_training)
    return list(zip(names, units))
