"""Packed neural codes: validation and chunked bit helpers.

A set of n codes of n_bits bits is the uint8 array ``np.packbits(bits, axis=1)`` (numpy's
big-endian bit order), shape (n, ceil(n_bits / 8)), padding bits zero.

Memory bound: nothing here builds an unpacked n x n_bits array. Functions walk the rows in
chunks whose unpacked size is at most ``CHUNK_BYTES`` (64 MiB), so the peak extra memory is
one such chunk plus the packed output.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CHUNK_BYTES = 64 * 2**20
# Largest dense feature matrix the K-Means / logistic-regression paths build before streaming.
MAX_DENSE_BYTES = 2**30

# Bit counts of every byte value; indexing it works on every numpy version
# (np.bitwise_count needs numpy >= 2).
_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)


def packed_width(n_bits: int) -> int:
    """Bytes per packed code of ``n_bits`` bits."""
    return (n_bits + 7) // 8


def check_packed(packed: np.ndarray, n_bits: int, name: str) -> np.ndarray:
    """Validate a packed code array against ``n_bits``; return it C-contiguous.

    Raises ValueError naming ``name`` when the dtype, the shape, the width or the padding bits
    do not follow the code format.
    """
    packed = np.asarray(packed)
    if packed.dtype != np.uint8:
        raise ValueError(f"{name}: dtype {packed.dtype}; packed codes must be uint8 "
                         f"(np.packbits(bits, axis=1))")
    if packed.ndim != 2:
        raise ValueError(f"{name}: shape {packed.shape}; packed codes must be 2-D (n, ceil(n_bits/8))")
    if n_bits < 0:
        raise ValueError(f"n_bits={n_bits}: must be >= 0")
    width = packed_width(n_bits)
    if packed.shape[1] != width:
        raise ValueError(f"{name}: {packed.shape[1]} bytes per code, but n_bits={n_bits} "
                         f"packs into ceil({n_bits}/8)={width} bytes")
    pad = 8 * width - n_bits
    if pad and packed.shape[0] and np.any(packed[:, -1] & np.uint8((1 << pad) - 1)):
        raise ValueError(f"{name}: with n_bits={n_bits} the last {pad} bits of each {width}-byte row "
                         f"are padding and must be zero; some are set (is n_bits right?)")
    return np.ascontiguousarray(packed)


def rows_per_chunk(row_bytes: int, budget: int | None = None) -> int:
    """How many rows of ``row_bytes`` bytes fit in ``budget`` (default ``CHUNK_BYTES``), >= 1."""
    return max(1, (CHUNK_BYTES if budget is None else budget) // max(1, row_bytes))


def iter_chunks(n_rows: int, chunk: int) -> Iterator[tuple[int, int]]:
    """(start, stop) row ranges of at most ``chunk`` rows covering ``range(n_rows)``."""
    for start in range(0, n_rows, chunk):
        yield start, min(start + chunk, n_rows)


def unpack_rows(packed: np.ndarray, n_bits: int, dtype: type | np.dtype = np.uint8) -> np.ndarray:
    """Unpack a (chunk of) packed rows to an (rows, n_bits) array of 0/1 in ``dtype``.

    The caller is responsible for passing a chunk small enough to unpack.
    """
    bits = np.unpackbits(packed, axis=1, count=n_bits)
    return bits if np.dtype(dtype) == np.uint8 else bits.astype(dtype)


def unique_rows(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows (sorted, compared byte for byte) and the inverse index of every row."""
    n, width = packed.shape
    if n == 0 or width == 0:  # no rows, or zero-bit codes that are all the same empty code
        return packed[:1], np.zeros(n, dtype=np.int64)
    rows = np.ascontiguousarray(packed).view(np.dtype((np.void, width))).ravel()
    uniq, inverse = np.unique(rows, return_inverse=True)
    return uniq.view(np.uint8).reshape(-1, width), inverse.reshape(-1).astype(np.int64)


def popcount(packed: np.ndarray, chunk_bytes: int | None = None) -> np.ndarray:
    """Number of set bits in each row (int64), computed chunk by chunk (of at most
    ``chunk_bytes``, default ``CHUNK_BYTES``) on the packed bytes."""
    out = np.empty(packed.shape[0], dtype=np.int64)
    for lo, hi in iter_chunks(packed.shape[0], rows_per_chunk(packed.shape[1], chunk_bytes)):
        out[lo:hi] = _POPCOUNT[packed[lo:hi]].sum(axis=1, dtype=np.int64)
    return out


def varying_bits(arrays: tuple[np.ndarray, ...], n_bits: int) -> np.ndarray:
    """Boolean mask (n_bits,) of the bits that are not constant over all rows of all arrays.

    Computed as a per-byte OR and AND over row chunks of the packed arrays: a bit varies iff it
    is 1 in the OR (not all 0) and 0 in the AND (not all 1).
    """
    width = packed_width(n_bits)
    any_one = np.zeros(width, dtype=np.uint8)
    all_one = np.full(width, 0xFF, dtype=np.uint8)
    for packed in arrays:
        for lo, hi in iter_chunks(packed.shape[0], rows_per_chunk(width)):
            any_one |= np.bitwise_or.reduce(packed[lo:hi], axis=0)
            all_one &= np.bitwise_and.reduce(packed[lo:hi], axis=0)
    return np.unpackbits(any_one & ~all_one, count=n_bits).astype(bool)


def select_bits(packed: np.ndarray, n_bits: int, keep: np.ndarray, spill: str | None = None) -> np.ndarray:
    """Repack only the bits where ``keep`` is True, chunk by chunk (unpacked chunk <= CHUNK_BYTES);
    into a memory-mapped file at ``spill`` (a path) instead of RAM when given."""
    n_kept = int(keep.sum())
    shape = (packed.shape[0], packed_width(n_kept))
    out = np.empty(shape, dtype=np.uint8) if spill is None else np.lib.format.open_memmap(
        spill, mode="w+", dtype=np.uint8, shape=shape)
    for lo, hi in iter_chunks(packed.shape[0], rows_per_chunk(max(n_bits, 1))):
        out[lo:hi] = np.packbits(unpack_rows(packed[lo:hi], n_bits)[:, keep], axis=1)
    return out


def drop_constant_bits(train: np.ndarray, test: np.ndarray, n_bits: int,
                       spill_dir: str | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Drop units that are all-0 or all-1 over train and test together (the authors' rule).

    Returns the repacked (train, test) and the number of bits kept. When nothing is constant
    the inputs are returned unchanged (no copy). ``spill_dir``: write the repacked codes as
    memory-mapped .npy files there instead of RAM (codes larger than the memory budget).
    """
    keep = varying_bits((train, test), n_bits)
    if keep.all():
        return train, test, n_bits
    spill = (lambda name: None) if spill_dir is None else (lambda name: f"{spill_dir}/{name}.npy")
    return (select_bits(train, n_bits, keep, spill("train")), select_bits(test, n_bits, keep, spill("test")),
            int(keep.sum()))
