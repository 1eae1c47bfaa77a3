"""Run a model over a loader in eval mode and collect packed codes, labels, loss and accuracy."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from activation_hash.codes.capture import CodeRecorder, pack_bits


@dataclass
class SplitCodes:
    codes: np.ndarray            # (n, ceil(n_bits/8)) uint8, np.packbits layout
    labels: np.ndarray           # (n,) int64
    n_bits: int
    loss: float                  # mean cross-entropy of the network on this split
    acc: float                   # the network's own accuracy on this split
    layer_names: list[str] = field(default_factory=list)
    layer_units: list[int] = field(default_factory=list)
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n, ...) float32, see EXTRAS


@torch.inference_mode()
def collect_codes(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  layers: Sequence[int] | None = None, num_samples: int | None = None,
                  memmap_path: str | Path | None = None, extras: Sequence[str] = ()) -> SplitCodes:
    """Codes of every sample the loader yields, in order.

    `extras` (names from `activation_hash.metrics.registry.EXTRAS`): per-sample arrays collected in
    the same pass: `inputs` (flattened), `penultimate` (the input of the last `nn.Linear` the
    network registers) and `logits`, as float32.

    With `num_samples` known the packed codes go straight into one preallocated array (a
    memory-mapped .npy file when `memmap_path` is given, for codes larger than RAM); only
    one batch is ever held unpacked.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    chunks: list[np.ndarray] = []
    out: np.ndarray | None = None
    n = 0
    tally = SplitTally(model, extras, device)
    try:
        with CodeRecorder(model, layers) as rec:
            for x, y in batches:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                tally.add(x, y, model(x))
                bits = rec.take()
                n_bits = bits.shape[1]
                packed = pack_bits(bits).cpu().numpy()
                if num_samples is not None:
                    if out is None:
                        out = _allocate(num_samples, packed.shape[1], memmap_path)
                    out[n:n + len(packed)] = packed
                else:
                    chunks.append(packed)
                n += len(packed)
            names, units = rec.layer_names, rec.layer_units
    finally:
        model.train(was_training)
        tally.close()
    if n == 0:
        raise ValueError("the loader yielded no samples; cannot capture codes of an empty split")
    if num_samples is not None and n != num_samples:
        raise ValueError(f"loader yielded {n} samples, expected num_samples={num_samples}")
    codes = out if out is not None else np.concatenate(chunks)
    return tally.split_codes(codes, n_bits, names, units)


class SplitTally:
    """What a capture keeps of a split besides its codes, batch by batch: the labels, the network's
    summed cross-entropy and correct predictions (on the device: no host sync per batch) and the
    per-sample `extras` (see `collect_codes`). `close()` removes the penultimate hook."""

    def __init__(self, model: nn.Module, extras: Sequence[str], device: torch.device) -> None:
        self.kept: dict[str, list[np.ndarray]] = {name: [] for name in extras}
        self.hook = penultimate_hook(model, self.kept) if "penultimate" in self.kept else None
        self.labels: list[torch.Tensor] = []
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.n = 0

    def add(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> None:
        if "inputs" in self.kept:
            self.kept["inputs"].append(x.flatten(1).float().cpu().numpy())
        if "logits" in self.kept:
            self.kept["logits"].append(logits.float().cpu().numpy())
        self.loss += F.cross_entropy(logits.float(), y, reduction="sum").double()
        self.correct += (logits.argmax(1) == y).sum()
        self.labels.append(y.cpu())
        self.n += len(y)

    def close(self) -> None:
        if self.hook is not None:
            self.hook.remove()
            self.hook = None

    def split_codes(self, codes: np.ndarray | None, n_bits: int, names: Sequence[str],
                    units: Sequence[int]) -> SplitCodes:
        n = max(self.n, 1)
        return SplitCodes(codes=codes, labels=torch.cat(self.labels).numpy().astype(np.int64), n_bits=n_bits,
                          loss=float(self.loss) / n, acc=float(self.correct) / n,
                          layer_names=list(names), layer_units=list(units),
                          extras={name: np.concatenate(parts) for name, parts in self.kept.items()})


def penultimate_hook(model: nn.Module, kept: dict[str, list[np.ndarray]]):
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear: a metric family asked for penultimate features "
                         "(the input of the last nn.Linear)")

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        kept["penultimate"].append(args[0].detach().flatten(1).float().cpu().numpy())
    return linears[-1].register_forward_pre_hook(hook)


def _allocate(n: int, width: int, memmap_path: str | Path | None) -> np.ndarray:
    if memmap_path is None:
        return np.empty((n, width), dtype=np.uint8)
    Path(memmap_path).parent.mkdir(parents=True, exist_ok=True)
    return np.lib.format.open_memmap(memmap_path, mode="w+", dtype=np.uint8, shape=(n, width))
