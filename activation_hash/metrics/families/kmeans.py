"""K-Means categorization accuracy of codes: cluster one split, map clusters to labels.

Two mappings from clusters to labels:
- majority (the authors' code): each cluster gets its most frequent label, so two clusters may
  share a label; ties between labels go to the smallest label.
- Hungarian (standard clustering accuracy): a one-to-one cluster/label assignment maximizing the
  number of matches (``scipy.optimize.linear_sum_assignment``); unmatched clusters count as wrong.

Clustering: scikit-learn's public ``KMeans(n_clusters, n_init=n_init, random_state=seed)`` on the
dense 0/1 codes (float64), with ``n_init=10`` by default: the best of 10 k-means++ initialisations,
which is what the authors' 2021 scikit-learn ran for ``KMeans(10, random_state=9)`` (scikit-learn
>= 1.4 runs one). The dense path is the reference itself, so its labels are the reference's. Why
not something faster: K-Means trajectories on binary codes hinge on rounding (float32 or Elkan
runs from one init can end points of accuracy apart), so only the reference's own code gives its
labels, and a hand-written replay of its trajectory would need its private internals.

Memory bound: the dense float64 matrix (n x n_bits x 8 bytes) is built only when it fits in
``max_dense_bytes`` (default 1 GiB). Beyond it, ``streaming_lloyd``: ``n_init`` k-means++
initialisations (scikit-learn's public ``kmeans_plusplus``, seeded) on a row sample that fits
``max_dense_bytes`` (float32), each followed by Lloyd steps over all rows, unpacked from the
packed codes in float32 chunks of at most 64 MiB, keeping the run of lowest inertia. It holds
the sample, the centers and one chunk; it costs n_init full Lloyd runs, each a pass over the
packed codes per iteration. Its clustering is not the reference's label for label (other
random draws, float32 chunks); its accuracies agree statistically
(tests/test_kmeans_agreement.py, on real MNIST code sets).

Degenerate inputs: with one cluster requested, or codes with zero bits, every row is put in
cluster 0 (accuracy = frequency of the most common label).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..bits import MAX_DENSE_BYTES, iter_chunks, rows_per_chunk, unpack_rows
from ..registry import CodeSet, MetricFamily
from ..threads import capped


def contingency(clusters: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Counts (n_clusters_found x n_labels_found) of rows per (cluster, label), both sorted."""
    _, c_idx = np.unique(clusters, return_inverse=True)
    _, l_idx = np.unique(labels, return_inverse=True)
    table = np.zeros((c_idx.max() + 1, l_idx.max() + 1), dtype=np.int64)
    np.add.at(table, (c_idx, l_idx), 1)
    return table


def majority_accuracy(clusters: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy when every cluster predicts its majority label (clusters may share a label)."""
    return float(contingency(clusters, labels).max(axis=1).sum() / len(labels))


def hungarian_accuracy(clusters: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the best one-to-one matching between clusters and labels."""
    from scipy.optimize import linear_sum_assignment
    table = contingency(clusters, labels)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(labels))


def _sklearn_kmeans(x: np.ndarray, n_clusters: int, seed: int, n_init: int):
    from sklearn.cluster import KMeans
    with warnings.catch_warnings(), capped():
        # "Number of distinct clusters found smaller than n_clusters": expected for codes with
        # few distinct values; the labels are still valid.
        warnings.simplefilter("ignore")
        return KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed, copy_x=False).fit(x)


def _dense(packed: np.ndarray, rows: np.ndarray | slice, n_bits: int, dtype: type) -> np.ndarray:
    sub = packed[rows]
    out = np.empty((sub.shape[0], n_bits), dtype=dtype)
    for lo, hi in iter_chunks(sub.shape[0], rows_per_chunk(n_bits)):
        out[lo:hi] = unpack_rows(sub[lo:hi], n_bits, dtype)
    return out


def kmeans_clusters(packed: np.ndarray, n_bits: int, n_clusters: int, *, seed: int = 9,
                    n_init: int = 10, max_dense_bytes: int = MAX_DENSE_BYTES) -> np.ndarray:
    """Cluster index (int64, shape (n,)) of every packed code; see the module docstring."""
    n = packed.shape[0]
    n_clusters = min(n_clusters, n)
    if n_clusters <= 1 or n_bits == 0:
        return np.zeros(n, dtype=np.int64)
    if n * n_bits * 8 <= max_dense_bytes:
        dense = _dense(packed, slice(None), n_bits, np.float64)
        return _sklearn_kmeans(dense, n_clusters, seed, n_init).labels_.astype(np.int64)
    return streaming_lloyd(packed, n_bits, n_clusters, seed=seed, n_init=n_init,
                           max_dense_bytes=max_dense_bytes)


def streaming_lloyd(packed: np.ndarray, n_bits: int, n_clusters: int, *, seed: int = 9,
                    n_init: int = 10, max_iter: int = 300, tol: float = 1e-4,
                    max_dense_bytes: int = MAX_DENSE_BYTES) -> np.ndarray:
    """K-Means of codes too wide to hold densely (module docstring); returns cluster indices.

    ``n_init`` k-means++ initialisations (scikit-learn's public ``kmeans_plusplus``) on a seeded
    row sample that fits ``max_dense_bytes``; from each, Lloyd over the packed chunks of all rows
    until the labels stop changing or the squared center shift drops below ``tol`` x the mean
    per-bit variance (scikit-learn's criterion); the run with the lowest inertia wins, as in
    scikit-learn. An empty cluster keeps its previous center.
    """
    from sklearn.cluster import kmeans_plusplus
    n = packed.shape[0]
    n_clusters = min(n_clusters, n)
    rng = np.random.default_rng(seed)
    n_sample = min(n, max(n_clusters, max_dense_bytes // (4 * n_bits)))
    sample = _dense(packed, np.sort(rng.choice(n, size=n_sample, replace=False)), n_bits, np.float32)
    # one unpacked chunk (uint8 bits + float32 copy) within half the dense budget, beside the sample
    chunk = rows_per_chunk(n_bits * 5, max(1, max_dense_bytes // 2))

    def assign(centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        c32 = centers.astype(np.float32)
        c_sq = (c32 * c32).sum(axis=1)
        labels = np.empty(n, dtype=np.int64)
        sums = np.zeros((n_clusters, n_bits), dtype=np.float64)
        inertia = 0.0
        for lo, hi in iter_chunks(n, chunk):
            x = unpack_rows(packed[lo:hi], n_bits, np.float32)
            dist = c_sq - 2.0 * (x @ c32.T)
            lab = np.argmin(dist, axis=1)
            labels[lo:hi] = lab
            inertia += float(dist[np.arange(hi - lo), lab].sum() + x.sum())  # |x|^2 = popcount for 0/1
            one_hot = np.zeros((hi - lo, n_clusters), dtype=np.float32)
            one_hot[np.arange(hi - lo), lab] = 1.0
            sums += one_hot.T @ x
        return labels, sums, np.bincount(labels, minlength=n_clusters), inertia

    def lloyd(centers: np.ndarray) -> tuple[np.ndarray, float]:
        labels = np.full(n, -1, dtype=np.int64)
        tol_abs = np.inf
        for it in range(max_iter):
            new_labels, sums, counts, inertia = assign(centers)
            if it == 0:
                p = sums.sum(axis=0) / n  # per-bit frequency of ones
                tol_abs = tol * float(np.mean(p * (1.0 - p)))
            if np.array_equal(new_labels, labels):
                return labels, inertia
            filled = counts > 0
            new_centers = centers.copy()
            new_centers[filled] = sums[filled] / counts[filled, None]
            shift = float(((new_centers - centers) ** 2).sum())
            centers, labels = new_centers, new_labels
            if shift <= tol_abs:
                break
        labels, _, _, inertia = assign(centers)
        return labels, inertia

    best, best_inertia = None, np.inf
    with capped():
        for seed_i in np.random.default_rng(seed).integers(0, 2**31 - 1, size=n_init):
            centers, _ = kmeans_plusplus(sample, n_clusters, random_state=int(seed_i))
            labels, inertia = lloyd(centers.astype(np.float64))
            if inertia < best_inertia:
                best, best_inertia = labels, inertia
    return best


def kmeans_accuracy(packed: np.ndarray, n_bits: int, labels: np.ndarray, n_clusters: int, *,
                    seed: int = 9, n_init: int = 10,
                    max_dense_bytes: int = MAX_DENSE_BYTES) -> tuple[float, float]:
    """(majority-mapping accuracy, Hungarian accuracy) of K-Means with ``n_clusters`` clusters."""
    clusters = kmeans_clusters(packed, n_bits, n_clusters, seed=seed, n_init=n_init,
                               max_dense_bytes=max_dense_bytes)
    return majority_accuracy(clusters, labels), hungarian_accuracy(clusters, labels)


def _compute(codes: CodeSet, *, kmeans_seed: int = 9, kmeans_n_init: int = 10,
             max_dense_bytes: int = MAX_DENSE_BYTES, backend: str = "sklearn", device: Any = None) -> dict[str, float]:
    # K = number of distinct labels over train and test (at most the split's size)
    n_classes = int(np.unique(np.concatenate([codes.train_labels, codes.test_labels])).size)
    out = {}
    for split, packed, labels in (("train", codes.train_codes, codes.train_labels),
                                  ("test", codes.test_codes, codes.test_labels)):
        if backend == "torch":  # batched k-means++ / Lloyd on the device (metrics/torch_backend.py)
            from ..torch_backend import kmeans_clusters as torch_kmeans
            clusters = torch_kmeans(packed, codes.n_bits, n_classes, seed=kmeans_seed, n_init=kmeans_n_init,
                                    device=device, max_bytes=max_dense_bytes)
            majority, hungarian = majority_accuracy(clusters, labels), hungarian_accuracy(clusters, labels)
        else:
            majority, hungarian = kmeans_accuracy(packed, codes.n_bits, labels, n_classes, seed=kmeans_seed,
                                                  n_init=kmeans_n_init, max_dense_bytes=max_dense_bytes)
        out[f"{split}/kmeans_acc"], out[f"{split}/kmeans_hungarian_acc"] = majority, hungarian
    return out


def _check(options: Mapping[str, Any]) -> None:
    for key, low in (("kmeans_seed", 0), ("kmeans_n_init", 1), ("max_dense_bytes", 1)):
        if options[key] < low:
            raise ValueError(f"metrics.{key}={options[key]!r}: must be an integer >= {low}")


FAMILY = MetricFamily(
    name="kmeans",
    names=("train/kmeans_acc", "train/kmeans_hungarian_acc", "test/kmeans_acc", "test/kmeans_hungarian_acc"),
    compute=_compute, options={"kmeans_seed": 9, "kmeans_n_init": 10, "max_dense_bytes": MAX_DENSE_BYTES,
                               "backend": "sklearn", "device": None},
    check=_check, description="K-Means (K = classes) accuracy, majority and one-to-one mappings")
