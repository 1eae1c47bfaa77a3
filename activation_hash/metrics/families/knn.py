"""K-NN classification of codes with exact Hamming distances, and what ties do to it.

Fit on train codes, predict test codes, uniform vote over the k nearest training codes. Codes
are discrete, so equal distances are common: a test point has a *boundary tie* when more than k
training codes lie within its k-th smallest distance (which of the codes at that distance are
"the" k nearest is then a choice), and a *vote tie* when several labels share the top count.

Metrics (family ``knn``):
- ``test/knn_acc``: the expected accuracy under uniformly random tie-breaking: among the training
  codes at the k-th distance every subset of the needed size is equally likely, and a vote tie
  goes to each top label with equal probability. Computed exactly (``win_probability``): the
  number of boundary neighbours each class contributes is multivariate hypergeometric, and a
  dynamic programme over classes sums, for every count of the true class, the ways the other
  classes stay at or below it, by how many of them tie with it (a tie shared by e other labels
  is won with probability 1 / (e + 1)). k is small (9), so the programme is tiny.
- ``test/knn_acc_index``: the deterministic rule: among codes at the k-th distance lower training
  indices win, vote ties go to the smallest label (scikit-learn's ``argmax``). scikit-learn's
  ``KNeighborsClassifier(k, metric='hamming', algorithm='brute')`` breaks boundary ties by
  ``np.argpartition``'s internal order instead, so the three agree wherever no tie occurs.
- ``test/knn_boundary_ties``, ``test/knn_vote_ties``: counts of test points with such ties under
  the index rule; ``test/knn_tie_affected``: the fraction of test points whose prediction some
  tie-breaking can change (at least two labels can come out on top, ``possible_winners``).

Distances: by default faiss's exact binary k-NN (popcount on the packed bytes; codes padded with
zero bytes to a width faiss has a fast kernel for), run once per distinct test code, with
k + ``EXTRA`` candidates sorted by (distance, index). A test code whose last candidate is still
at the k-th distance may have more tied codes outside the list, so it is searched again with 8
times more candidates, until the list holds every code within the k-th distance (or the whole
training set): the per-class counts of codes closer than, and at, the k-th distance are exact.
With ``device`` set, distances come instead from a chunked torch GEMM on that device,
hamming(a, b) = |a| + |b| - 2 a.b (exact in float32 below 2**24 bits; codes travel packed and are
unpacked on the device), and the neighbours from an exact selection over full distance rows.
faiss and torch are imported only when used.

Memory bound: the packed codes (plus zero-padded copies for faiss, or a copy on the GEMM device)
and candidate lists or distance blocks of at most ``BLOCK_BYTES`` (256 MiB) at a time; the GEMM
path adds one unpacked chunk of at most 64 MiB per side; per test point two count vectors of
n_classes integers. No unpacked n x n_bits array is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..bits import CHUNK_BYTES, iter_chunks, popcount, rows_per_chunk, unique_rows
from ..registry import CodeSet, MetricFamily
from ..threads import capped

EXTRA = 32
BLOCK_BYTES = 256 * 2**20
# Bytes per candidate while searching: int32 distance, int64 index, int64 sort key, labels.
_CAND_BYTES = 28
# Bytes per (query, training code) pair while selecting exactly: int32 distance, bool masks,
# the int64 running count of ties and the kept mask.
_SELECT_BYTES_PER_PAIR = 16
# Code widths (bytes) with a specialized faiss Hamming kernel; other widths are padded up to
# one of these or to a multiple of 8.
_FAISS_FAST_WIDTHS = (4, 8, 16, 20, 32, 64)


@dataclass(frozen=True)
class KNNResult:
    """Per test point: index-rule prediction, neighbours (sorted by distance then index), tie
    flags, and per class (columns = ``classes``) the training codes closer than the k-th
    distance (``closer``) and at it (``at_kth``)."""

    predictions: np.ndarray
    neighbors: np.ndarray
    distances: np.ndarray
    vote_tie: np.ndarray
    boundary_tie: np.ndarray
    classes: np.ndarray
    closer: np.ndarray
    at_kth: np.ndarray

    @property
    def k(self) -> int:
        return self.neighbors.shape[1]

    def win_probability(self, labels: np.ndarray) -> np.ndarray:
        """P(prediction == labels[i]) under random tie-breaking (0 for labels not in training)."""
        target = np.searchsorted(self.classes, labels)
        known = (target < self.classes.size) & (self.classes[np.minimum(target, self.classes.size - 1)] == labels)
        prob = win_probability(self.closer, self.at_kth, self.k, np.where(known, target, 0))
        return np.where(known, prob, 0.0)

    def tie_affected(self) -> np.ndarray:
        """Whether some tie-breaking changes the prediction (two or more possible winners)."""
        return possible_winners(self.closer, self.at_kth, self.k).sum(axis=1) > 1


def _faiss():
    import faiss
    return faiss


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact (len(a), len(b)) int32 Hamming distances between packed codes of equal width."""
    faiss = _faiss()
    a, b = _faiss_pad(a), _faiss_pad(b)
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int32)
    if out.size:
        with capped():
            faiss.hammings(faiss.swig_ptr(a), faiss.swig_ptr(b), a.shape[0], b.shape[0], a.shape[1],
                           faiss.swig_ptr(out))
    return out


def _search(train: np.ndarray, y: np.ndarray, n_classes: int, test: np.ndarray, k: int,
            n_bits: int | None, device: Any, block_bytes: int = BLOCK_BYTES,
            max_bytes: int | None = None) -> tuple[np.ndarray, ...]:
    """Neighbours, distances and per-class counts. ``max_bytes``: when the packed train and test
    codes together exceed it, neither is read whole (both may be memory maps): the test codes
    are read one query block at a time and the training codes one block at a time per query
    block (``_streamed_neighbors`` / the GEMM path without device copies)."""
    n_train = train.shape[0]
    if not 1 <= k <= n_train:
        raise ValueError(f"k={k}: must be between 1 and the number of training codes ({n_train})")
    stream = max_bytes is not None and train.nbytes + test.nbytes > max_bytes
    if device is not None:
        import torch
        return _gemm_neighbors(train, y, n_classes, test, k,
                               n_bits if n_bits is not None else 8 * train.shape[1], torch.device(device),
                               block_bytes, resident=not stream)
    with capped():
        if stream:
            return _streamed_neighbors(train, y, n_classes, test, k, block_bytes)
        return _faiss_neighbors(train, y, n_classes, test, k, block_bytes)


def knn_neighbors(train: np.ndarray, test: np.ndarray, k: int, *, n_bits: int | None = None,
                  device: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(neighbors, distances, boundary_tie) of every test code under the index rule.

    ``neighbors`` and ``distances`` have shape (n_test, k), sorted by (distance, index).
    ``n_bits`` is only needed by the GEMM path (``device`` set); it defaults to all bits.
    """
    nb, d, closer, at_kth = _search(train, np.zeros(train.shape[0], np.int64), 1, test, k, n_bits, device)
    return nb, d, (closer[:, 0] + at_kth[:, 0]) > k


def knn_predict(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, k: int = 9, *,
                n_bits: int | None = None, device: Any = None, block_bytes: int = BLOCK_BYTES,
                max_bytes: int | None = None) -> KNNResult:
    """Uniform-vote k-NN of the test codes: index-rule predictions, ties and tie counts.
    ``max_bytes``: packed codes beyond it are streamed in blocks (``_search``), same results."""
    classes, y = np.unique(train_labels, return_inverse=True)
    y = y.reshape(-1)
    n_classes = classes.size
    neighbors, distances, closer, at_kth = _search(train, y, n_classes, test, k, n_bits, device, block_bytes,
                                                   max_bytes)
    return _result(classes, y, k, neighbors, distances, closer, at_kth)


def knn_result(distance_blocks: Any, train_labels: np.ndarray, k: int) -> KNNResult:
    """``knn_predict``'s result from exact distances given as (queries, n_train) int32 torch
    blocks, in query order (e.g. from a Gram matrix of bit overlaps: ``metrics.kernel``)."""
    import torch
    classes, y = np.unique(train_labels, return_inverse=True)
    y = y.reshape(-1)
    parts, one_hot = [], None
    for dist in distance_blocks:
        if one_hot is None:
            one_hot = torch.nn.functional.one_hot(torch.from_numpy(y).to(dist.device), classes.size).to(torch.float32)
        parts.append(_select(dist, k, one_hot))
    neighbors, distances, closer, at_kth = (np.concatenate(p) for p in zip(*parts))
    return _result(classes, y, k, neighbors, distances, closer, at_kth)


def _result(classes: np.ndarray, y: np.ndarray, k: int, neighbors: np.ndarray, distances: np.ndarray,
            closer: np.ndarray, at_kth: np.ndarray) -> KNNResult:
    n_classes = classes.size
    n_test = neighbors.shape[0]
    flat = (np.arange(n_test)[:, None] * n_classes + y[neighbors]).ravel()
    votes = np.bincount(flat, minlength=n_test * n_classes).reshape(n_test, n_classes)
    winner = votes.argmax(axis=1)  # first maximum = smallest label
    vote_tie = (votes == votes[np.arange(n_test), winner][:, None]).sum(axis=1) > 1
    boundary_tie = closer.sum(axis=1) + at_kth.sum(axis=1) > k
    return KNNResult(classes[winner], neighbors, distances, vote_tie, boundary_tie, classes, closer, at_kth)


# ---------------------------------------------------------------- ties


def possible_winners(closer: np.ndarray, at_kth: np.ndarray, k: int) -> np.ndarray:
    """(n, n_classes) bool: whether a label can come out on top (alone or tied) for some choice
    of the boundary neighbours. A label's best case takes as many boundary codes as it can
    (each one it takes raises it and spares the others); the rest must then fit under it."""
    m = (k - closer.sum(axis=1))[:, None]
    own = np.minimum(at_kth, m)
    top = closer + own
    room = np.clip(top[:, :, None] - closer[:, None, :], 0, None)  # [point, j, i]: room for class i under j
    room = np.minimum(room, at_kth[:, None, :])
    n_cls = closer.shape[1]
    room[:, np.arange(n_cls), np.arange(n_cls)] = 0
    fits = (closer[:, None, :] <= top[:, :, None]).all(axis=2)
    return fits & (room.sum(axis=2) >= (m - own)) & ((closer + at_kth) > 0)


def win_probability(closer: np.ndarray, at_kth: np.ndarray, k: int, target: np.ndarray) -> np.ndarray:
    """P(the vote elects class ``target[i]``) when the k - sum(closer) boundary neighbours are a
    uniformly random subset of the ``at_kth`` codes and vote ties are broken uniformly.

    Exact dynamic programme (module docstring); identical count rows are solved once, and rows
    whose outcome no tie can change are read off directly."""
    n, n_cls = closer.shape
    rows = np.arange(n)
    winners = possible_winners(closer, at_kth, k)
    out = winners[rows, target].astype(np.float64)  # exact where at most one label can win
    todo = winners.sum(axis=1) > 1
    if not todo.any():
        return out
    key = np.concatenate([closer[todo], at_kth[todo], target[todo, None]], axis=1)
    uniq, inverse = np.unique(key, axis=0, return_inverse=True)
    c, b, t = uniq[:, :n_cls], uniq[:, n_cls:2 * n_cls], uniq[:, -1]
    m = k - c.sum(axis=1)
    prob = np.empty(uniq.shape[0])
    for need in np.unique(m):  # group by how many boundary neighbours are drawn
        sel = m == need
        prob[sel] = _win_dp(c[sel], b[sel], int(need), t[sel])
    out[todo] = prob[inverse.reshape(-1)]
    return out


def _win_dp(c: np.ndarray, b: np.ndarray, m: int, t: np.ndarray) -> np.ndarray:
    """``win_probability`` for rows that all draw ``m`` boundary neighbours."""
    from scipy.special import comb
    n, n_cls = c.shape
    rows = np.arange(n)
    c_t, b_t = c[rows, t], b[rows, t]
    share = 1.0 / (1.0 + np.arange(n_cls))  # a tie with e other labels is won 1 / (e + 1) of the time
    ways_total = np.zeros(n)
    for drawn_t in range(m + 1):  # boundary neighbours of the target class
        ok = drawn_t <= b_t
        if not ok.any():
            continue
        v_t = c_t + drawn_t
        # w[row, s, e]: sum over the classes seen so far of prod C(b_j, t_j), with s = sum t_j
        # and e = how many of them end level with the target's count
        w = np.zeros((n, m + 1, n_cls))
        w[:, 0, 0] = 1.0
        for j in range(n_cls):
            new = np.zeros_like(w)
            for drawn in range(m - drawn_t + 1):
                ways = comb(b[:, j], drawn) * (c[:, j] + drawn <= v_t)
                if not ways.any():
                    continue
                level = c[:, j] + drawn == v_t
                moved = ways[:, None, None] * w[:, :m + 1 - drawn, :]
                new[:, drawn:, :] += np.where(level[:, None, None], 0.0, moved)
                new[:, drawn:, 1:] += np.where(level[:, None, None], moved[:, :, :-1], 0.0)
            w = np.where((t == j)[:, None, None], w, new)
        ways_total += ok * comb(b_t, drawn_t) * (w[:, m - drawn_t, :] @ share)
    return ways_total / comb(b.sum(axis=1), m)


# ---------------------------------------------------------------- search


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


def _class_counts(mask: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(rows, n_classes) counts of ``mask`` entries per label (``labels`` same shape)."""
    rows = np.broadcast_to(np.arange(mask.shape[0])[:, None], mask.shape)
    flat = rows[mask] * n_classes + labels[mask]
    return np.bincount(flat, minlength=mask.shape[0] * n_classes).reshape(mask.shape[0], n_classes)


def _faiss_neighbors(train: np.ndarray, y: np.ndarray, n_classes: int, test: np.ndarray,
                     k: int, block_bytes: int = BLOCK_BYTES) -> tuple[np.ndarray, ...]:
    faiss = _faiss()
    n_train = train.shape[0]
    train_p = _faiss_pad(train)
    # Identical test codes have identical neighbours: search every distinct code once.
    uniq, inverse = unique_rows(test)
    query = _faiss_pad(uniq)
    n_query = query.shape[0]
    neighbors = np.empty((n_query, k), dtype=np.int64)
    distances = np.empty((n_query, k), dtype=np.int32)
    closer = np.empty((n_query, n_classes), dtype=np.int64)
    at_kth = np.empty((n_query, n_classes), dtype=np.int64)
    todo = np.arange(n_query)
    n_cand = min(n_train, k + EXTRA)
    while todo.size:
        unfinished = []
        for lo, hi in iter_chunks(todo.size, rows_per_chunk(n_cand * _CAND_BYTES, block_bytes)):
            rows = todo[lo:hi]
            dist, idx = faiss.knn_hamming(query[rows], train_p, n_cand)  # ascending distances
            kth = dist[:, k - 1]
            # All codes within the k-th distance are candidates unless the last candidate is
            # itself at that distance (more tied codes may exist) and some codes were left out.
            done = dist[:, -1] > kth if n_cand < n_train else np.ones(rows.size, dtype=bool)
            rows, dist, idx, kth = rows[done], dist[done], idx[done], kth[done]
            key = np.sort(dist.astype(np.int64) * n_train + idx, axis=1)[:, :k]
            neighbors[rows], distances[rows] = key % n_train, key // n_train
            labels = y[idx]
            closer[rows] = _class_counts(dist < kth[:, None], labels, n_classes)
            at_kth[rows] = _class_counts(dist == kth[:, None], labels, n_classes)
            unfinished.append(todo[lo:hi][~done])
        todo = np.concatenate(unfinished)
        n_cand = min(n_train, 8 * n_cand)
    return neighbors[inverse], distances[inverse], closer[inverse], at_kth[inverse]


# Bytes per (query, training code) pair in the streamed CPU search: int32 distance, the int64
# (distance, index) key and its partitioned copy, bool masks and their class-count temporaries.
_STREAM_PAIR_BYTES = 40


def _streamed_neighbors(train: np.ndarray, y: np.ndarray, n_classes: int, test: np.ndarray, k: int,
                        block_bytes: int = BLOCK_BYTES) -> tuple[np.ndarray, ...]:
    """The faiss search with one side in blocks: per block of test codes (read from ``test``,
    which may be a memory map), the full rows of exact distances to every training code, filled
    training block by training block by faiss's ``hammings`` (one pass over the training codes
    per query block); then the k smallest (distance, index) keys and the per-class counts at
    and below the k-th distance, exactly as ``_faiss_neighbors`` (no candidate lists, so no
    escalation). Neither code array is read whole."""
    n_train, n_test = train.shape[0], test.shape[0]
    width = _faiss_pad(train[:1]).shape[1]
    train_chunk = rows_per_chunk(2 * width, max(1, block_bytes // 8))
    query_chunk = rows_per_chunk(n_train * _STREAM_PAIR_BYTES + 2 * width, block_bytes)
    neighbors = np.empty((n_test, k), dtype=np.int64)
    distances = np.empty((n_test, k), dtype=np.int32)
    closer = np.empty((n_test, n_classes), dtype=np.int64)
    at_kth = np.empty((n_test, n_classes), dtype=np.int64)
    index = np.arange(n_train, dtype=np.int64)
    for qlo, qhi in iter_chunks(n_test, query_chunk):
        q = np.asarray(test[qlo:qhi])
        dist = np.empty((qhi - qlo, n_train), dtype=np.int32)
        for tlo, thi in iter_chunks(n_train, train_chunk):
            dist[:, tlo:thi] = hamming_distances(q, np.asarray(train[tlo:thi]))
        key = dist.astype(np.int64)
        key *= n_train
        key += index
        first = np.partition(key, k - 1, axis=1)[:, :k] if k < n_train else key
        del key
        first = np.sort(first, axis=1)
        neighbors[qlo:qhi], distances[qlo:qhi] = first % n_train, first // n_train
        kth = distances[qlo:qhi, k - 1][:, None]
        labels = np.broadcast_to(y, dist.shape)
        closer[qlo:qhi] = _class_counts(dist < kth, labels, n_classes)
        at_kth[qlo:qhi] = _class_counts(dist == kth, labels, n_classes)
    return neighbors, distances, closer, at_kth


def _unpack_on(packed, n_bits: int):
    """Unpack packed rows (a uint8 tensor) to float32 0/1 on the tensor's device, so that only
    packed bytes ever travel to the device (big-endian bit order, as np.packbits)."""
    import torch
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=packed.device)
    bits = (packed.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(packed.shape[0], -1)[:, :n_bits].to(torch.float32)


def _gemm_neighbors(train: np.ndarray, y: np.ndarray, n_classes: int, test: np.ndarray, k: int,
                    n_bits: int, device, block_bytes: int = BLOCK_BYTES, resident: bool = True
                    ) -> tuple[np.ndarray, ...]:
    """Exact neighbours by GEMM on ``device``. ``resident``: the packed codes are copied to the
    device once; otherwise each block is copied from the host arrays (memory maps allowed)
    when it is used: one pass over the training codes per query chunk."""
    import torch
    if n_bits >= 2**24:
        raise ValueError(f"n_bits={n_bits}: the GEMM k-NN path is exact only below 2**24 bits; "
                         f"use device=None (faiss)")
    n_train, n_test = train.shape[0], test.shape[0]
    from ..torch_backend import as_tensor
    if resident:
        train_t, test_t = as_tensor(train, device), as_tensor(test, device)
    else:  # blocks read from the host arrays as they are needed
        train_t, test_t = _HostRows(train, device), _HostRows(test, device)
    pop_chunk = max(1, block_bytes // 4)
    train_pop = torch.from_numpy(popcount(train, pop_chunk)).to(device)
    test_pop = torch.from_numpy(popcount(test, pop_chunk)).to(device)
    one_hot = torch.nn.functional.one_hot(torch.from_numpy(y).to(device), n_classes).to(torch.float32)
    unpack_chunk = rows_per_chunk(max(n_bits, 1) * 5, min(CHUNK_BYTES, block_bytes // 4))  # uint8 bits + float32
    query_chunk = min(unpack_chunk, rows_per_chunk(n_train * _SELECT_BYTES_PER_PAIR, block_bytes))
    neighbors = np.empty((n_test, k), dtype=np.int64)
    distances = np.empty((n_test, k), dtype=np.int32)
    closer = np.empty((n_test, n_classes), dtype=np.int64)
    at_kth = np.empty((n_test, n_classes), dtype=np.int64)
    for qlo, qhi in iter_chunks(n_test, query_chunk):
        q = _unpack_on(test_t[qlo:qhi], n_bits)
        dist = torch.empty((qhi - qlo, n_train), dtype=torch.int32, device=device)
        for tlo, thi in iter_chunks(n_train, unpack_chunk):
            dots = (q @ _unpack_on(train_t[tlo:thi], n_bits).T).round().to(torch.int32)
            dist[:, tlo:thi] = test_pop[qlo:qhi, None] + train_pop[None, tlo:thi] - 2 * dots
        nb, d, near, at = _select(dist, k, one_hot)
        neighbors[qlo:qhi], distances[qlo:qhi], closer[qlo:qhi], at_kth[qlo:qhi] = nb, d, near, at
    return neighbors, distances, closer, at_kth


class _HostRows:
    """``rows[lo:hi]``: a tensor on ``device`` copied from rows lo:hi of a host array."""

    def __init__(self, host: np.ndarray, device) -> None:
        self.host, self.device = host, device

    def __getitem__(self, rows: slice):
        from ..torch_backend import as_tensor
        return as_tensor(self.host[rows], self.device)


def _select(dist, k: int, one_hot) -> tuple[np.ndarray, ...]:
    """Exact k smallest per row of a full (q, n_train) distance block, lower index wins ties;
    per-class counts of codes closer than and at the k-th distance (exact below 2**24 codes)."""
    import torch
    n_train = dist.shape[1]
    kth = torch.kthvalue(dist, k, dim=1).values[:, None]
    closer = dist < kth
    at_kth = dist == kth
    need = k - closer.sum(dim=1, keepdim=True)
    keep = closer | (at_kth & (torch.cumsum(at_kth, dim=1) <= need))
    cols = torch.nonzero(keep)[:, 1].reshape(-1, k)  # row-major: each row's k in index order
    key = torch.sort(torch.gather(dist, 1, cols).to(torch.int64) * n_train + cols, dim=1).values
    counts = [(mask.to(torch.float32) @ one_hot).round().to(torch.int64).cpu().numpy() for mask in (closer, at_kth)]
    return ((key % n_train).cpu().numpy(), (key // n_train).to(torch.int32).cpu().numpy(), *counts)


# ---------------------------------------------------------------- family


def _compute(codes: CodeSet, *, knn_k: int = 9, device: Any = None, backend: str = "sklearn",
             max_ram: int | None = None) -> dict[str, float]:
    if knn_k > codes.train_codes.shape[0]:
        raise ValueError(f"metrics.knn_k={knn_k} is larger than the training set "
                         f"({codes.train_codes.shape[0]} codes); allowed: 1..{codes.train_codes.shape[0]}")
    if backend == "torch" and device is None:  # the GEMM path on the CPU
        device = "cpu"
    elif backend == "sklearn":  # faiss on the CPU, whatever the capture's device
        device = None
    block = BLOCK_BYTES if max_ram is None else max(2**20, min(BLOCK_BYTES, max_ram // 8))
    stream_over = None if max_ram is None else max_ram // 4
    if stream_over is not None and codes.train_codes.nbytes + codes.test_codes.nbytes > stream_over:
        block = max(2**20, max_ram // 8)  # streamed: the larger the query block, the fewer passes over train
    result = knn_predict(codes.train_codes, codes.train_labels, codes.test_codes, knn_k,
                         n_bits=codes.n_bits, device=device, block_bytes=block, max_bytes=stream_over)
    return {"test/knn_acc": float(result.win_probability(codes.test_labels).mean()),
            "test/knn_acc_index": float(np.mean(result.predictions == codes.test_labels)),
            "test/knn_vote_ties": int(result.vote_tie.sum()),
            "test/knn_boundary_ties": int(result.boundary_tie.sum()),
            "test/knn_tie_affected": float(result.tie_affected().mean())}


def _check(options: Mapping[str, Any]) -> None:
    if options["knn_k"] < 1:
        raise ValueError(f"metrics.knn_k={options['knn_k']!r}: must be an integer >= 1")


FAMILY = MetricFamily(
    name="knn",
    names=("test/knn_acc", "test/knn_acc_index", "test/knn_vote_ties", "test/knn_boundary_ties",
           "test/knn_tie_affected"),
    compute=_compute, options={"knn_k": 9, "device": None, "backend": "sklearn", "max_ram": None}, check=_check,
    description="Hamming K-NN accuracy (expected under random tie-breaking) and tie counts")
