"""K-Means categorization accuracy of codes: cluster one split, map clusters to labels.

Two mappings from clusters to labels:
- majority (the authors' code): each cluster gets its most frequent label, so two clusters may
  share a label; ties between labels go to the smallest label.
- Hungarian (standard clustering accuracy): a one-to-one cluster/label assignment maximizing the
  number of matches (``scipy.optimize.linear_sum_assignment``); unmatched clusters count as wrong.

Clustering reproduces the paper's reference, scikit-learn ``KMeans(n_clusters, random_state=9)``
on the 0/1 codes (k-means++ init, Lloyd, ``n_init=1`` as scikit-learn >= 1.4 does for k-means++;
older versions, as the authors' 2021 code would have run, default to ``n_init=10``: pass that).
With ``n_init=1`` it runs ``exact_kmeans``, which follows scikit-learn's own trajectory in exact
integer arithmetic, several times faster, and hands over to scikit-learn itself in the rare
cases where only scikit-learn's rounding can decide (see that module). K-Means trajectories
hinge on rounding (float32 or Elkan runs from the same init ended up to 3 points of accuracy
away on MNIST test codes), so nothing approximate is used on this path.

Memory bound: when the dense float64 matrix (n x n_bits x 8 bytes) fits in ``max_dense_bytes``
(default 1 GiB) the codes are clustered densely (two float32 copies, or float64 for
scikit-learn), giving exactly the reference's clustering. Wider codes use a streaming Lloyd
(below) that holds the centers plus one unpacked float32 chunk of at most 64 MiB, and a
k-means++ init on a row sample that fits ``max_dense_bytes``.

Degenerate inputs: with one cluster requested, or codes with zero bits, every row is put in
cluster 0 (accuracy = frequency of the most common label).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans, kmeans_plusplus

from .bits import MAX_DENSE_BYTES, iter_chunks, rows_per_chunk, unpack_rows
from .exact_kmeans import ReferenceTie, exact_kmeans


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
    table = contingency(clusters, labels)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(labels))


def kmeans_clusters(packed: np.ndarray, n_bits: int, n_clusters: int, *, seed: int = 9,
                    n_init: int = 1, max_dense_bytes: int = MAX_DENSE_BYTES) -> np.ndarray:
    """Cluster index (int64, shape (n,)) of every packed code; see the module docstring."""
    n = packed.shape[0]
    n_clusters = min(n_clusters, n)
    if n_clusters <= 1 or n_bits == 0:
        return np.zeros(n, dtype=np.int64)
    if n * n_bits * 8 <= max_dense_bytes:
        dense = np.empty((n, n_bits), dtype=np.float32)
        for lo, hi in iter_chunks(n, rows_per_chunk(n_bits)):
            dense[lo:hi] = unpack_rows(packed[lo:hi], n_bits, np.float32)
        if n_init == 1:
            try:
                return exact_kmeans(dense, n_clusters, seed=seed, packed=packed)
            except ReferenceTie:
                pass  # scikit-learn's rounding decides: run it
        dense = dense.astype(np.float64)
        with warnings.catch_warnings():
            # "Number of distinct clusters found smaller than n_clusters": expected for codes
            # with few distinct values; the labels are still valid.
            warnings.simplefilter("ignore")
            km = KMeans(n_clusters=n_clusters, random_state=seed, n_init=n_init, copy_x=False)
            return km.fit(dense).labels_.astype(np.int64)
    return streaming_lloyd(packed, n_bits, n_clusters, seed=seed, max_dense_bytes=max_dense_bytes)


def streaming_lloyd(packed: np.ndarray, n_bits: int, n_clusters: int, *, seed: int = 9,
                    max_iter: int = 300, tol: float = 1e-4,
                    max_dense_bytes: int = MAX_DENSE_BYTES) -> np.ndarray:
    """Lloyd's K-Means over packed codes read in chunks; returns cluster indices.

    Hand-written because scikit-learn's and faiss's K-Means need the whole float matrix in
    memory. Same algorithm as scikit-learn's: k-means++ init (here on a seeded row sample that
    fits ``max_dense_bytes``), Lloyd steps until the labels stop changing or the squared center
    shift drops below ``tol`` x the mean per-bit variance, then a last assignment with the final
    centers. An empty cluster keeps its previous center.
    """
    n = packed.shape[0]
    n_clusters = min(n_clusters, n)
    rng = np.random.default_rng(seed)
    n_sample = min(n, max(n_clusters, max_dense_bytes // (4 * n_bits)))
    sample = np.sort(rng.choice(n, size=n_sample, replace=False))
    sample_dense = np.empty((n_sample, n_bits), dtype=np.float32)
    for lo, hi in iter_chunks(n_sample, rows_per_chunk(n_bits)):
        sample_dense[lo:hi] = unpack_rows(packed[sample[lo:hi]], n_bits)
    centers, _ = kmeans_plusplus(sample_dense, n_clusters, random_state=seed)
    centers = centers.astype(np.float64)
    del sample_dense

    chunk = rows_per_chunk(n_bits * 4)
    labels = np.full(n, -1, dtype=np.int64)
    tol_abs = np.inf

    def assign(centers: np.ndarray, accumulate: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c32 = centers.astype(np.float32)
        c_sq = (c32 * c32).sum(axis=1)
        new_labels = np.empty(n, dtype=np.int64)
        sums = np.zeros((n_clusters, n_bits), dtype=np.float64)
        counts = np.zeros(n_clusters, dtype=np.int64)
        for lo, hi in iter_chunks(n, chunk):
            x = unpack_rows(packed[lo:hi], n_bits, np.float32)
            lab = np.argmin(c_sq - 2.0 * (x @ c32.T), axis=1)
            new_labels[lo:hi] = lab
            if accumulate:
                one_hot = np.zeros((hi - lo, n_clusters), dtype=np.float32)
                one_hot[np.arange(hi - lo), lab] = 1.0
                sums += one_hot.T @ x
                counts += np.bincount(lab, minlength=n_clusters)
        return new_labels, sums, counts

    for it in range(max_iter):
        new_labels, sums, counts = assign(centers, accumulate=True)
        if it == 0:
            p = sums.sum(axis=0) / n  # per-bit frequency of ones
            tol_abs = tol * float(np.mean(p * (1.0 - p)))
        filled = counts > 0
        new_centers = centers.copy()
        new_centers[filled] = sums[filled] / counts[filled, None]
        shift = float(((new_centers - centers) ** 2).sum())
        centers = new_centers
        if np.array_equal(new_labels, labels):
            return labels
        labels = new_labels
        if shift <= tol_abs:
            break
    return assign(centers, accumulate=False)[0]


def kmeans_accuracy(packed: np.ndarray, n_bits: int, labels: np.ndarray, n_clusters: int, *,
                    seed: int = 9, n_init: int = 1,
                    max_dense_bytes: int = MAX_DENSE_BYTES) -> tuple[float, float]:
    """(majority-mapping accuracy, Hungarian accuracy) of K-Means with ``n_clusters`` clusters."""
    clusters = kmeans_clusters(packed, n_bits, n_clusters, seed=seed, n_init=n_init,
                               max_dense_bytes=max_dense_bytes)
    return majority_accuracy(clusters, labels), hungarian_accuracy(clusters, labels)
