"""K-NN classification of codes with exact Hamming distances and a deterministic tie rule.

Fit on train codes, predict test codes, uniform vote over the k nearest training codes.

Tie rule (deterministic; as close to scikit-learn's
``KNeighborsClassifier(k, metric='hamming', algorithm='brute')`` as its own rules allow):
- neighbour set: the k training codes with the smallest Hamming distance; among codes at the
  k-th smallest distance, lower training indices win. A test point has a *boundary tie* when more
  than k training codes lie within that distance, i.e. the set was decided by the index rule.
  (scikit-learn breaks these ties by ``np.argpartition``'s internal order instead, so the two
  can only disagree on boundary-tie points.)
- vote: the most frequent label among the k; ties go to the smallest label, as scikit-learn's
  ``scipy.stats.mode``/``argmax`` does. A test point has a *vote tie* when several labels share
  the top count.

Distances: by default faiss's exact binary k-NN (popcount on the packed bytes; codes padded
with zero bytes to a width faiss has a fast kernel for), run once per distinct test code, with
k + ``EXTRA`` candidates sorted by (distance, index). A test code whose last candidate is still
at the k-th distance may have more tied codes outside the list, so it is searched again with 8
times more candidates, until the list holds every code within the k-th distance (or the whole
training set). With ``device`` set, distances come instead from a chunked torch GEMM on that
device, hamming(a, b) = |a| + |b| - 2 a.b (exact in float32 below 2**24 bits; codes travel
packed and are unpacked on the device), and the neighbours from an exact selection over full
distance rows. faiss costs O(n_test * n_train * n_bits / 64) popcounts on one machine's CPUs,
so for very wide codes (CNNs: ~10^5 bits) a GPU ``device`` is much faster.

Memory bound: the packed codes (plus zero-padded copies for faiss, or a copy on the GEMM
device) and candidate lists or distance blocks of at most ``BLOCK_BYTES`` (256 MiB) at a time;
the GEMM path adds one unpacked chunk of at most 64 MiB per side. No unpacked n x n_bits array
is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import torch

from .bits import iter_chunks, popcount, rows_per_chunk, unique_rows

EXTRA = 32
BLOCK_BYTES = 256 * 2**20
# Bytes per candidate while searching: int32 distance, int64 index, int64 sort key.
_CAND_BYTES = 20
# Bytes per (query, training code) pair while selecting exactly: int32 distance, two bool
# masks, the int64 running count of ties and the kept mask.
_SELECT_BYTES_PER_PAIR = 16
# Code widths (bytes) with a specialized faiss Hamming kernel; other widths are padded up to
# one of these or to a multiple of 8.
_FAISS_FAST_WIDTHS = (4, 8, 16, 20, 32, 64)


@dataclass(frozen=True)
class KNNResult:
    """Per test point: prediction, neighbours (sorted by distance then index) and tie flags."""

    predictions: np.ndarray
    neighbors: np.ndarray
    distances: np.ndarray
    vote_tie: np.ndarray
    boundary_tie: np.ndarray


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact (len(a), len(b)) int32 Hamming distances between packed codes of equal width."""
    a, b = _faiss_pad(a), _faiss_pad(b)
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int32)
    if out.size:
        faiss.hammings(faiss.swig_ptr(a), faiss.swig_ptr(b), a.shape[0], b.shape[0], a.shape[1],
                       faiss.swig_ptr(out))
    return out


def knn_neighbors(train: np.ndarray, test: np.ndarray, k: int, *, n_bits: int | None = None,
                  device: str | torch.device | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(neighbors, distances, boundary_tie) of every test code under the module's tie rule.

    ``neighbors`` and ``distances`` have shape (n_test, k), sorted by (distance, index).
    ``n_bits`` is only needed by the GEMM path (``device`` set); it defaults to all bits.
    """
    n_train = train.shape[0]
    if not 1 <= k <= n_train:
        raise ValueError(f"k={k}: must be between 1 and the number of training codes ({n_train})")
    if device is not None:
        return _gemm_neighbors(train, test, k, n_bits if n_bits is not None else 8 * train.shape[1],
                               torch.device(device))
    return _faiss_neighbors(train, test, k)


def knn_predict(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, k: int = 9, *,
                n_bits: int | None = None, device: str | torch.device | None = None) -> KNNResult:
    """Uniform-vote k-NN predictions for the test codes; see the module docstring for ties."""
    neighbors, distances, boundary_tie = knn_neighbors(train, test, k, n_bits=n_bits, device=device)
    classes, y = np.unique(train_labels, return_inverse=True)
    n_test, n_classes = neighbors.shape[0], classes.size
    flat = (np.arange(n_test)[:, None] * n_classes + y[neighbors]).ravel()
    votes = np.bincount(flat, minlength=n_test * n_classes).reshape(n_test, n_classes)
    winner = votes.argmax(axis=1)  # first maximum = smallest label
    vote_tie = (votes == votes[np.arange(n_test), winner][:, None]).sum(axis=1) > 1
    return KNNResult(classes[winner], neighbors, distances, vote_tie, boundary_tie)


def _faiss_pad(codes: np.ndarray) -> np.ndarray:
    """Zero-pad packed codes to a byte width with a fast faiss kernel (distances unchanged)."""
    width = codes.shape[1]
    target = next((w for w in _FAISS_FAST_WIDTHS if w >= width), -(-width // 8) * 8)
    target = max(target, 4)
    if target == width:
        return np.ascontiguousarray(codes)
    out = np.zeros((codes.shape[0], target), dtype=np.uint8)
    out[:, :width] = codes
    return out


def _faiss_neighbors(train: np.ndarray, test: np.ndarray, k: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_train = train.shape[0]
    train_p = _faiss_pad(train)
    # Identical test codes have identical neighbours: search every distinct code once.
    uniq, inverse = unique_rows(test)
    query = _faiss_pad(uniq)
    n_query = query.shape[0]
    neighbors = np.empty((n_query, k), dtype=np.int64)
    distances = np.empty((n_query, k), dtype=np.int32)
    boundary_tie = np.empty(n_query, dtype=bool)
    todo = np.arange(n_query)
    n_cand = min(n_train, k + EXTRA)
    while todo.size:
        unfinished = []
        for lo, hi in iter_chunks(todo.size, rows_per_chunk(n_cand * _CAND_BYTES, BLOCK_BYTES)):
            rows = todo[lo:hi]
            dist, idx = faiss.knn_hamming(query[rows], train_p, n_cand)  # ascending distances
            kth = dist[:, k - 1]
            # All codes within the k-th distance are candidates unless the last candidate is
            # itself at that distance (more tied codes may exist) and some codes were left out.
            done = dist[:, -1] > kth if n_cand < n_train else np.ones(rows.size, dtype=bool)
            rows, dist, idx, kth = rows[done], dist[done], idx[done], kth[done]
            key = np.sort(dist.astype(np.int64) * n_train + idx, axis=1)[:, :k]
            neighbors[rows], distances[rows] = key % n_train, key // n_train
            boundary_tie[rows] = (dist <= kth[:, None]).sum(axis=1) > k
            unfinished.append(todo[lo:hi][~done])
        todo = np.concatenate(unfinished)
        n_cand = min(n_train, 8 * n_cand)
    return neighbors[inverse], distances[inverse], boundary_tie[inverse]


def _unpack_on(packed: torch.Tensor, n_bits: int) -> torch.Tensor:
    """Unpack packed rows (a uint8 tensor) to float32 0/1 on the tensor's device, so that only
    packed bytes ever travel to the device (big-endian bit order, as np.packbits)."""
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=packed.device)
    bits = (packed.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(packed.shape[0], -1)[:, :n_bits].to(torch.float32)


def _gemm_neighbors(train: np.ndarray, test: np.ndarray, k: int, n_bits: int,
                    device: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if n_bits >= 2**24:
        raise ValueError(f"n_bits={n_bits}: the GEMM k-NN path is exact only below 2**24 bits; "
                         f"use device=None (faiss)")
    n_train, n_test = train.shape[0], test.shape[0]
    train_t, test_t = torch.from_numpy(train).to(device), torch.from_numpy(test).to(device)
    train_pop = torch.from_numpy(popcount(train)).to(device)
    test_pop = torch.from_numpy(popcount(test)).to(device)
    unpack_chunk = rows_per_chunk(max(n_bits, 1) * 5)  # uint8 bits + float32 copy
    query_chunk = min(unpack_chunk, rows_per_chunk(n_train * _SELECT_BYTES_PER_PAIR, BLOCK_BYTES))
    neighbors = np.empty((n_test, k), dtype=np.int64)
    distances = np.empty((n_test, k), dtype=np.int32)
    boundary_tie = np.empty(n_test, dtype=bool)
    for qlo, qhi in iter_chunks(n_test, query_chunk):
        q = _unpack_on(test_t[qlo:qhi], n_bits)
        dist = torch.empty((qhi - qlo, n_train), dtype=torch.int32, device=device)
        for tlo, thi in iter_chunks(n_train, unpack_chunk):
            dots = (q @ _unpack_on(train_t[tlo:thi], n_bits).T).round().to(torch.int32)
            dist[:, tlo:thi] = test_pop[qlo:qhi, None] + train_pop[None, tlo:thi] - 2 * dots
        nb, d, tie = _select(dist, k)
        neighbors[qlo:qhi], distances[qlo:qhi], boundary_tie[qlo:qhi] = nb, d, tie
    return neighbors, distances, boundary_tie


def _select(dist: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact k smallest per row of a full (q, n_train) distance block, lower index wins ties."""
    n_train = dist.shape[1]
    kth = torch.kthvalue(dist, k, dim=1).values[:, None]
    closer = dist < kth
    at_kth = dist == kth
    need = k - closer.sum(dim=1, keepdim=True)
    keep = closer | (at_kth & (torch.cumsum(at_kth, dim=1) <= need))
    boundary_tie = at_kth.sum(dim=1) > need[:, 0]
    cols = torch.nonzero(keep)[:, 1].reshape(-1, k)  # row-major: each row's k in index order
    key = torch.sort(torch.gather(dist, 1, cols).to(torch.int64) * n_train + cols, dim=1).values
    return ((key % n_train).cpu().numpy(), (key // n_train).to(torch.int32).cpu().numpy(),
            boundary_tie.cpu().numpy())
