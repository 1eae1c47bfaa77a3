"""Each member's codes from one batched forward (eval mode) and its encoding metrics, computed by
`activation_hash.runs.record.score`, as a solo run's. Members with fewer samples (another data.train_size) are padded in each chunk, and the
padded rows dropped."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from activation_hash.batched.mlp import BatchedMLP
from activation_hash.codes.capture import pack_bits
from activation_hash.codes.collect import SplitCodes


def stack_padded(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """Stack the members' tensors along a new first axis, zero-padding the shorter ones; and each one's length."""
    rows = [len(t) for t in tensors]
    if len(set(rows)) == 1:
        return torch.stack(list(tensors)), rows
    out = tensors[0].new_zeros((len(tensors), max(rows), *tensors[0].shape[1:]))
    for m, t in enumerate(tensors):
        out[m, :len(t)] = t
    return out, rows


@torch.no_grad()
def member_splits(model: BatchedMLP, datamodules: Sequence, layers: Sequence[int], batch_size: int,
                  layer_names: Sequence[str], layer_units: Sequence[Sequence[int]]) -> list[dict[str, SplitCodes]]:
    """Per member, its train and test `SplitCodes` as `collect_codes` returns them for its solo
    network (eval mode, packed bits of the selected hidden layers `layers` (0-based), mean
    cross-entropy and accuracy), from one batched forward per chunk of `batch_size` samples."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[dict[str, SplitCodes]] = [{} for _ in datamodules]
    try:
        for split in ("train", "test"):
            xs = [getattr(dm, f"x_{split}") for dm in datamodules]
            ys = [getattr(dm, f"y_{split}") for dm in datamodules]
            n = [len(y) for y in ys]
            packed: list[list[np.ndarray]] = [[] for _ in datamodules]
            loss = torch.zeros(len(xs), dtype=torch.float64, device=device)
            correct = torch.zeros(len(xs), dtype=torch.int64, device=device)
            for start in range(0, max(n), batch_size):
                x, _ = stack_padded([v[start:start + batch_size] for v in xs])
                y, rows = stack_padded([v[start:start + batch_size] for v in ys])
                keep: list[torch.Tensor] = []
                logits = model(x, keep)
                for m, r in enumerate(rows):
                    if r == 0:
                        continue
                    bits = torch.cat([keep[i][m, :r, :model.widths[m][i]] > 0 for i in layers], dim=1)
                    packed[m].append(pack_bits(bits).cpu().numpy())
                    loss[m] += F.cross_entropy(logits[m, :r].float(), y[m, :r], reduction="sum").double()
                    correct[m] += (logits[m, :r].argmax(1) == y[m, :r]).sum()
            for m in range(len(xs)):
                units = [layer_units[m][i] for i in layers]
                out[m][split] = SplitCodes(codes=np.concatenate(packed[m]), labels=ys[m].cpu().numpy().astype(np.int64),
                                           n_bits=sum(units), loss=float(loss[m]) / n[m], acc=float(correct[m]) / n[m],
                                           layer_names=[layer_names[i] for i in layers], layer_units=units)
    finally:
        model.train(was_training)
    return out
