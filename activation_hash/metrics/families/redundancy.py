"""Redundancy ratio of a set of codes: (n - m) / n, m = number of distinct codes.

With zero bits every code is the same empty code: redundancy = (n - 1) / n.

Exact: rows are compared as raw bytes (a void view of the packed codes sorted by
``np.unique``), never hashed. Memory: one sorted copy of the packed array.
"""

from __future__ import annotations

import numpy as np

from ..registry import CodeSet, MetricFamily


def n_unique_rows(packed: np.ndarray) -> int:
    """Number of distinct rows of a 2-D uint8 array, compared byte for byte."""
    n, width = packed.shape
    if n == 0:
        return 0
    if width == 0:  # zero-bit codes: every row is the same empty code
        return 1
    rows = np.ascontiguousarray(packed).view(np.dtype((np.void, width))).ravel()
    return int(np.unique(rows).size)


def redundancy_ratio(packed: np.ndarray) -> float:
    """(n - #unique rows) / n of packed codes; 0 means every code is unique."""
    n = packed.shape[0]
    if n == 0:
        raise ValueError("redundancy_ratio: got 0 codes; the ratio needs n >= 1")
    return (n - n_unique_rows(packed)) / n


def _compute(codes: CodeSet, *, backend: str = "sklearn", device=None) -> dict[str, float]:
    if backend == "torch":  # torch.unique(dim=0) on the device: the same exact count
        from ..torch_backend import redundancy_ratio as ratio
        return {f"{split}/redundancy": ratio(packed, device)
                for split, packed in (("train", codes.train_codes), ("test", codes.test_codes))}
    return {"train/redundancy": redundancy_ratio(codes.train_codes),
            "test/redundancy": redundancy_ratio(codes.test_codes)}


FAMILY = MetricFamily(
    name="redundancy", names=("train/redundancy", "test/redundancy"), compute=_compute,
    options={"backend": "sklearn", "device": None}, needs_bits=False, description="fraction of codes that repeat an earlier code, per split")
