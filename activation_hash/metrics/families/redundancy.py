"""Redundancy ratio of a set of codes: (n - m) / n, m = number of distinct codes.

With zero bits every code is the same empty code: redundancy = (n - 1) / n.

Exact: rows are compared as raw bytes (a void view of the packed codes sorted by
``np.unique``; on the torch backend ``torch.unique(dim=0)``). Memory: one sorted copy of the
packed array. Codes whose packed bytes exceed a quarter of ``metrics.max_ram`` are counted by
exact hashing in one streamed pass instead (``n_unique_streamed``): two seeded 64-bit hashes
per row, computed chunk by chunk, distinct hash pairs counted, and every group of rows sharing
a hash pair re-read and compared byte for byte, so a hash collision can never merge two codes.
Memory: 16 bytes per row plus one chunk.
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


def _row_hashes(chunk: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(rows, 2) uint64 hashes: sum_j (byte_j + 1) * w_j mod 2**64 for two random weight rows."""
    x = chunk.astype(np.uint64) + np.uint64(1)
    return np.stack([(x * w).sum(axis=1, dtype=np.uint64) for w in weights], axis=1)


def n_unique_streamed(packed: np.ndarray, chunk_bytes: int = 64 * 2**20) -> int:
    """Distinct rows of a (possibly memory-mapped) packed array, exactly, in one streamed pass
    plus a re-read of the rows whose hashes collide (module docstring)."""
    from ..bits import iter_chunks, rows_per_chunk
    n, width = packed.shape
    if n == 0:
        return 0
    if width == 0:
        return 1
    weights = np.random.default_rng(0).integers(1, 2**63, size=(2, width), dtype=np.uint64) | np.uint64(1)
    hashes = np.empty((n, 2), dtype=np.uint64)
    for lo, hi in iter_chunks(n, rows_per_chunk(width * 16, chunk_bytes)):
        hashes[lo:hi] = _row_hashes(np.asarray(packed[lo:hi]), weights)
    _, inverse, counts = np.unique(hashes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    total = counts.size
    for group in np.flatnonzero(counts > 1):  # equal hashes: compare the rows themselves
        rows = np.asarray(packed[np.flatnonzero(inverse == group)])
        total += n_unique_rows(rows) - 1
    return total


def redundancy_ratio(packed: np.ndarray) -> float:
    """(n - #unique rows) / n of packed codes; 0 means every code is unique."""
    n = packed.shape[0]
    if n == 0:
        raise ValueError("redundancy_ratio: got 0 codes; the ratio needs n >= 1")
    return (n - n_unique_rows(packed)) / n


def _compute(codes: CodeSet, *, backend: str = "sklearn", device=None, max_ram: int | None = None) -> dict[str, float]:
    if max_ram is not None and codes.train_codes.nbytes + codes.test_codes.nbytes > max_ram // 4:
        return {f"{split}/redundancy": (p.shape[0] - n_unique_streamed(p, max(2**20, max_ram // 8))) / p.shape[0]
                for split, p in (("train", codes.train_codes), ("test", codes.test_codes))}
    if backend == "torch":  # torch.unique(dim=0) on the device: the same exact count
        from ..torch_backend import redundancy_ratio as ratio
        return {f"{split}/redundancy": ratio(packed, device)
                for split, packed in (("train", codes.train_codes), ("test", codes.test_codes))}
    return {"train/redundancy": redundancy_ratio(codes.train_codes),
            "test/redundancy": redundancy_ratio(codes.test_codes)}


FAMILY = MetricFamily(
    name="redundancy", names=("train/redundancy", "test/redundancy"), compute=_compute,
    options={"backend": "sklearn", "device": None, "max_ram": None}, needs_bits=False, description="fraction of codes that repeat an earlier code, per split")
