"""Redundancy ratio of a set of codes: (n - m) / n, m = number of distinct codes.

With zero bits every code is the same empty code: redundancy = (n - 1) / n.

Exact: rows are compared as raw bytes (a void view of the packed codes sorted by
``np.unique``; on the torch backend ``torch.unique(dim=0)``). Memory: one sorted copy of the
packed array. Codes whose packed bytes exceed a quarter of ``metrics.max_ram`` are counted by
exact hashing in one streamed pass instead (``n_unique_streamed``): two seeded 64-bit hashes
per row, computed chunk by chunk, distinct hash pairs counted, then every row of a repeated
hash pair compared byte for byte with its group's first row in a second streamed pass
(``count_verified``), so a hash collision can never merge two codes. Memory: about 40 bytes
per row (hashes, group index, first rows) plus one chunk. The torch backend hashes the chunks
on its device the same way (``torch_backend.n_unique_rows``) and shares the verification.
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
    """Distinct rows of a (possibly memory-mapped) packed array, exactly, in one streamed hashing
    pass plus a verification pass over the rows whose hashes repeat (module docstring)."""
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
    del hashes
    return count_verified(packed, inverse.reshape(-1), counts, chunk_bytes)


def count_verified(packed: np.ndarray, inverse: np.ndarray, counts: np.ndarray, chunk_bytes: int) -> int:
    """Distinct rows of ``packed`` given a hash group per row (``inverse``, groups numbered
    0..len(counts)-1 with ``counts`` rows each): every row of a repeated group is compared byte
    for byte, chunk by chunk, with the group's first row; rows that differ (a hash collision)
    are counted exactly among their group. Exact whatever the hash; one pass over the rows of
    repeated groups, plus a re-read of colliding rows (none in practice)."""
    from ..bits import iter_chunks, rows_per_chunk
    total = int(counts.size)
    order = np.argsort(inverse, kind="stable")
    first = order[np.concatenate([[0], np.cumsum(counts)[:-1]])]   # lowest row of every group
    del order
    repeated = counts[inverse] > 1
    odd = []
    for lo, hi in iter_chunks(packed.shape[0], rows_per_chunk(2 * packed.shape[1] + 16, chunk_bytes)):
        rows = lo + np.flatnonzero(repeated[lo:hi])
        if rows.size:
            differ = np.any(np.asarray(packed[rows]) != np.asarray(packed[first[inverse[rows]]]), axis=1)
            odd.append(rows[differ])
    odd = np.concatenate(odd) if odd else np.empty(0, dtype=np.int64)
    for group in np.unique(inverse[odd]):  # true collisions: count the distinct codes in that group
        members = np.concatenate([[first[group]], odd[inverse[odd] == group]])
        total += n_unique_rows(np.asarray(packed[members])) - 1
    return total


def redundancy_ratio(packed: np.ndarray) -> float:
    """(n - #unique rows) / n of packed codes; 0 means every code is unique."""
    n = packed.shape[0]
    if n == 0:
        raise ValueError("redundancy_ratio: got 0 codes; the ratio needs n >= 1")
    return (n - n_unique_rows(packed)) / n


def _compute(codes: CodeSet, *, backend: str = "sklearn", device=None, max_ram: int | None = None) -> dict[str, float]:
    big = max_ram is not None and codes.train_codes.nbytes + codes.test_codes.nbytes > max_ram // 4
    if backend == "torch":  # torch.unique(dim=0) on the device, or hashing on it beyond the budget: exact
        from ..torch_backend import redundancy_ratio as ratio
        return {f"{split}/redundancy": ratio(packed, device, max_bytes=max_ram, stream=big)
                for split, packed in (("train", codes.train_codes), ("test", codes.test_codes))}
    if big:
        return {f"{split}/redundancy": (p.shape[0] - n_unique_streamed(p, max(2**20, max_ram // 8))) / p.shape[0]
                for split, p in (("train", codes.train_codes), ("test", codes.test_codes))}
    return {"train/redundancy": redundancy_ratio(codes.train_codes),
            "test/redundancy": redundancy_ratio(codes.test_codes)}


FAMILY = MetricFamily(
    name="redundancy", names=("train/redundancy", "test/redundancy"), compute=_compute,
    options={"backend": "sklearn", "device": None, "max_ram": None}, needs_bits=False, description="fraction of codes that repeat an earlier code, per split")
