"""One member's codes from its own slice of the batched network (eval mode), scored by
`activation_hash.runs.record.score` as a solo run's; and `stack_padded`, the members' batches
stacked (zero-padded when their sizes differ: another data.train_size)."""

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
def member_split(model: BatchedMLP, m: int, datamodule, layers: Sequence[int], batch_size: int,
                 layer_names: Sequence[str], layer_units: Sequence[int]) -> dict[str, SplitCodes]:
    """Member m's train and test `SplitCodes` as `collect_codes` returns them for its solo network
    (eval mode, packed bits of the selected hidden layers `layers` (0-based), mean cross-entropy and
    accuracy), from its own slice of the batched network (`model(x, keep, member=m)`), `batch_size`
    samples at a time. A group captures its members one after another, so a capture holds one
    member's codes, never the group's."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    width = model.widths[m]
    units = [layer_units[i] for i in layers]
    out: dict[str, SplitCodes] = {}
    try:
        for split in ("train", "test"):
            x_all, y_all = getattr(datamodule, f"x_{split}"), getattr(datamodule, f"y_{split}")
            packed: list[np.ndarray] = []
            loss = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            for start in range(0, len(y_all), batch_size):
                x, y = x_all[start:start + batch_size], y_all[start:start + batch_size]
                keep: list[torch.Tensor] = []
                logits = model(x[None], keep, member=m)[0]
                bits = torch.cat([keep[i][0, :, :width[i]] > 0 for i in layers], dim=1)
                packed.append(pack_bits(bits).cpu().numpy())
                loss += F.cross_entropy(logits.float(), y, reduction="sum").double()
                correct += (logits.argmax(1) == y).sum()
            n = len(y_all)
            out[split] = SplitCodes(codes=np.concatenate(packed), labels=y_all.cpu().numpy().astype(np.int64),
                                    n_bits=sum(units), loss=float(loss) / n, acc=float(correct) / n,
                                    layer_names=[layer_names[i] for i in layers], layer_units=units)
            del packed
    finally:
        model.train(was_training)
    return out
