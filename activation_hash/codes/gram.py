"""Codes that are never stored: the rows' Gram matrix of bit overlaps, recomputed from the network.

    capture = collect_gram(model, loaders, layers, selections, budget_bytes, device)
    # capture.grams[name]: (N, N) overlaps G = X X^T of selection `name`'s non-constant bits over
    # the rows [train; test]; everything the paper's families need follows from it
    # (activation_hash.metrics.kernel)

Why: a CNN of the zoo at the paper's size has more code bits per image than there are images
(ResNeXt on CIFAR-10: 12.3 M bits, 77 GB of packed codes per split), more than a machine's RAM
or disk, while its Gram matrix over 60,000 rows is 14 GB in float32 (exact: every entry is an
integer below 2**24). `codes.source=network` (or `auto` when the codes exceed the budget) takes
this path.

How: the captured layers are cut into pieces (a whole layer, or a column range of one wide layer)
and the pieces into groups whose packed bits over all N rows fit in `budget_bytes`. Per group, one
forward pass over the train and then the test loader (eval mode, in order) records only that
group's layers; then per piece, column chunks are unpacked on `device`, the bits constant over
all N rows are zeroed (the families score codes without them, as `drop_constant`), and
G_sel += X X^T for every selection that holds the piece's layer. Cost: one forward pass over the
data per group (the first also gives labels, loss and accuracy) and N^2 x bits multiply-adds.

Memory: one group's packed bits on the host (at most half of `metrics.max_ram`), one unpacked
column chunk (at most 64 MiB and half the group budget) and each selection's Gram matrix on `device` (N^2 x 8 bytes on the
CPU, N^2 x 4 on a GPU); scoring adds what `activation_hash.metrics.kernel` states (logistic
regression's eigendecomposition of the train block: about 2 x n_train^2 x 8 bytes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from activation_hash.codes.capture import CodeRecorder, pack_bits
from activation_hash.codes.collect import SplitCodes, SplitTally
from activation_hash.metrics.bits import iter_chunks
from activation_hash.metrics.torch_backend import as_tensor, unpack

# one unpacked column chunk on the device: at most about this many bytes (N x columns x 9)
CHUNK_BYTES = 64 * 2**20
SPLITS = ("train", "test")


@dataclass
class GramCapture:
    """One capture without codes: each selection's Gram matrix over [train; test], its bit
    counts, and per split what `SplitCodes` says besides the codes (labels, loss, accuracy)."""
    grams: dict[str, torch.Tensor]
    n_bits: dict[str, int]
    n_bits_used: dict[str, int]
    splits: dict[str, SplitCodes]           # codes=None: labels, n_bits, loss, acc, layers, extras
    passes: int = 0                         # forward passes over the data (one per group)
    n_rows: dict[str, int] = field(default_factory=dict)


def plan_groups(units: Sequence[int], n_rows: int, budget_bytes: int) -> list[list[tuple[int, int, int]]]:
    """Groups of pieces (layer position, first unit, end unit): each group's packed bits over
    `n_rows` rows within `budget_bytes` (at least one byte column per piece); a layer wider than
    that is cut into column ranges of a multiple of 8 units."""
    row_bytes = max(1, budget_bytes // max(n_rows, 1))
    piece_units = max(8, 8 * row_bytes)
    pieces = [(li, lo, min(u, lo + piece_units)) for li, u in enumerate(units) for lo in range(0, u, piece_units)]
    groups: list[list[tuple[int, int, int]]] = []
    used = row_bytes + 1
    for piece in pieces:
        size = -(-(piece[2] - piece[1]) // 8)
        if used + size > row_bytes:
            groups.append([])
            used = 0
        groups[-1].append(piece)
        used += size
    return groups


def gram_dtype(device: torch.device, n_bits: int) -> torch.dtype:
    """float64 on the CPU or past 2**24 bits (float32 integers are exact below that), else float32."""
    return torch.float64 if device.type == "cpu" or n_bits >= 2**24 else torch.float32


@torch.inference_mode()
def collect_gram(model: nn.Module, loaders: Mapping[str, Iterable], layers: Sequence[int],
                 units: Sequence[int], names: Sequence[str], selections: Mapping[str, Sequence[int]],
                 sizes: Mapping[str, int], budget_bytes: int, device: torch.device | None = None,
                 extras: Sequence[str] = ()) -> GramCapture:
    """The Gram capture of `model` (module docstring). `layers`: the captured layers (0-based
    indices of the network's code layers) with their `units` and `names`; `selections`:
    {name: 0-based indices into the captured layers}; `sizes`: rows per split; `device`: where
    the Gram matrices live (the model's device when None); `extras`: per-sample arrays collected
    in the first pass, as `collect_codes` collects them."""
    model_device = next(model.parameters()).device
    device = torch.device(device) if device is not None else model_device
    n = sum(sizes[s] for s in SPLITS)
    sel_bits = {name: sum(units[i] for i in chosen) for name, chosen in selections.items()}
    grams = {name: torch.zeros((n, n), dtype=gram_dtype(device, sel_bits[name]), device=device)
             for name in selections}
    used = dict.fromkeys(selections, 0)
    holders = {li: [name for name, chosen in selections.items() if li in chosen] for li in range(len(units))}
    splits: dict[str, SplitCodes] = {}
    groups = plan_groups(units, n, budget_bytes)
    was_training = model.training
    model.eval()
    try:
        for gi, group in enumerate(groups):
            needed = sorted({li for li, _, _ in group})
            packed = {piece: np.empty((n, -(-(piece[2] - piece[1]) // 8)), dtype=np.uint8) for piece in group}
            row = 0
            for split in SPLITS:
                start = row
                tally = SplitTally(model, extras, model_device) if gi == 0 else None  # the first pass's
                try:
                    with CodeRecorder(model, [layers[i] for i in needed]) as rec:
                        for x, y in loaders[split]:
                            x, y = x.to(model_device, non_blocking=True), y.to(model_device, non_blocking=True)
                            logits = model(x)
                            if tally is not None:
                                tally.add(x, y, logits)
                            per_layer = dict(zip(needed, rec.take_layers()))
                            for piece in group:
                                li, lo, hi = piece
                                packed[piece][row:row + len(y)] = pack_bits(per_layer[li][:, lo:hi]).cpu().numpy()
                            row += len(y)
                finally:
                    if tally is not None:
                        tally.close()
                if row - start != sizes[split]:
                    raise ValueError(f"the {split} loader yielded {row - start} samples, expected {sizes[split]}")
                if tally is not None:
                    splits[split] = tally.split_codes(None, sum(units), names, units)
            for piece in group:
                owners = holders[piece[0]]
                if owners:
                    kept = _accumulate(packed.pop(piece), piece[2] - piece[1], [grams[o] for o in owners], device,
                                       min(CHUNK_BYTES, max(1, budget_bytes // 2)))
                    for o in owners:
                        used[o] += kept
    finally:
        model.train(was_training)
    return GramCapture(grams=grams, n_bits=sel_bits, n_bits_used=used, splits=splits, passes=len(groups),
                       n_rows=dict(sizes))


def _accumulate(packed: np.ndarray, width: int, grams: list[torch.Tensor], device: torch.device,
                chunk_bytes: int = CHUNK_BYTES) -> int:
    """G += X X^T for each of `grams`, X = the non-constant columns of `packed` (width bits);
    returns how many columns are non-constant."""
    n = packed.shape[0]
    cols = max(1, chunk_bytes // (9 * 8 * max(n, 1)))  # packed byte columns per chunk (uint8 + float64 bits)
    kept = 0
    for lo, hi in iter_chunks(packed.shape[1], cols):
        bits = unpack(as_tensor(packed[:, lo:hi], device), min(width - 8 * lo, 8 * (hi - lo)), torch.uint8)
        ones = bits.sum(0, dtype=torch.int64)
        varying = (ones > 0) & (ones < n)
        kept += int(varying.sum())
        if not bool(varying.any()):
            continue
        x = {}
        for g in grams:  # in place, no (N, N) temporary: sums of 0/1 products, exact (see gram_dtype)
            if g.dtype not in x:
                x[g.dtype] = bits[:, varying].to(g.dtype)
            g.addmm_(x[g.dtype], x[g.dtype].T)
    return kept


def score_network(model: nn.Module, loaders: Mapping[str, Iterable], layers: Sequence[int],
                  units: Sequence[tuple[str, int]], selections: Mapping[str, Sequence[int]],
                  sizes: Mapping[str, int], options: Mapping[str, Any], which: object,
                  device: torch.device | None) -> tuple[SplitCodes, SplitCodes, dict[str, dict[str, Any]]]:
    """A capture with `codes.source=network`: (train, test, {selection: its code metrics}), the
    codes never held (module docstring); `runs.record.complete` adds the network's own accuracy
    and loss as for the memory path. `units`: (name, units) of every code layer of the network; `layers`: the captured
    ones; `options`: metrics.* (metrics.max_ram bounds one group's packed bits at half of it)."""
    from activation_hash.metrics import compute_families
    from activation_hash.metrics.encoding import BASE_NAMES, WHICH, resolve_max_ram
    from activation_hash.metrics.kernel import KERNEL_FAMILIES, KernelCodes, kernel_families
    from activation_hash.metrics.registry import CodeSet, families
    which = [which] if isinstance(which, str) else list(WHICH if which is None else which)
    from_gram = [w for w in which if w in KERNEL_FAMILIES]
    codes_free = [w for w in which if w not in KERNEL_FAMILIES]  # MetricFamily.reads_codes is False
    known = families()
    extras = sorted({e for w in codes_free for e in (*known[w].needs, *known[w].wants)})
    budget = resolve_max_ram(options.get("max_ram")) // 2
    captured = [units[i] for i in layers]
    capture = collect_gram(model, loaders, layers, [u for _, u in captured], [name for name, _ in captured],
                           selections, sizes, budget, device, extras)
    train, test = capture.splits["train"], capture.splits["test"]
    scored = {}
    for name in selections:
        codes = KernelCodes(capture.grams.pop(name), sizes["train"], train.labels, test.labels,
                            capture.n_bits[name], capture.n_bits_used[name])
        scored[name] = {**kernel_families(codes, from_gram, options), "code_passes": capture.passes}
        del codes
        if codes_free:  # on code arrays of no columns: these families read labels, extras, layer names
            chosen = [captured[i][0] for i in selections[name]]
            empty = CodeSet(np.zeros((sizes["train"], 0), np.uint8), train.labels, np.zeros((sizes["test"], 0), np.uint8),
                            test.labels, 0, {f"{s}/{k}": v for s, part in capture.splits.items() for k, v in part.extras.items()},
                            tuple(chosen), tuple(captured[i][1] for i in selections[name]))
            free = compute_families(empty, codes_free, {k: v for k, v in options.items() if k != "which"}, device)
            scored[name].update({k: v for k, v in free.items() if k not in (*BASE_NAMES, "backend", "dead_network")})
    return train, test, scored
