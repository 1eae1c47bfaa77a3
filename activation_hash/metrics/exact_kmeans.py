"""scikit-learn's ``KMeans(n_clusters, random_state=seed)`` on 0/1 codes, several times faster.

Hand-written because no library reproduces scikit-learn's clustering faster: K-Means
trajectories hinge on rounding (Elkan's algorithm or float32 from the same init end up to 3
points of accuracy away on MNIST codes). This follows scikit-learn's own trajectory (k-means++
init, Lloyd, ``n_init=1``) and returns the same labels, while doing less work:

- Exact arithmetic. Codes are 0/1, so every cluster is an integer sum S_j of codes and a count
  N_j, and a code's distances to the centers S_j / N_j come from the integer products x . S_j
  (one float32 GEMM, exact below 2**24). Labels are then those of exact arithmetic. scikit-learn
  computes the same distances with rounding errors ~1e-13, so the two can only differ on a
  code within ~1e-13 of equidistant to two centers.
- Except in the first assignment: the initial centers are codes, distances are integers and
  exact ties are common. scikit-learn breaks them by the rounding of its chunked GEMM on
  mean-centered data, which a GEMM over other rows does not reproduce bit for bit, so tied codes
  take the labels of scikit-learn's own Lloyd step (one step, on the centered data).
- k-means++ with the same random draws in exact arithmetic; if two candidate centers come
  within 1e-9 of the same potential (where rounding could decide), ``ReferenceTie`` is raised
  and the caller runs scikit-learn itself. Likewise for an empty cluster, which scikit-learn
  relocates by its own rule.
- Elkan's bounds (an upper bound on each code's distance to its center, a lower bound on its
  distance to each other center, moved by the centers' shifts) skip codes that cannot change
  cluster; a margin keeps near-ties recomputed. Codes left are recomputed whole (one GEMM).
- Centers move by exact integer updates from the codes that changed cluster.

Memory: the dense float32 0/1 matrix (n x n_bits x 4 bytes) twice (data and a gather buffer)
plus O(n x n_clusters) floats.
"""

from __future__ import annotations

import numpy as np

from .knn import hamming_distances

# Distance slack for the bounds: far above float64 rounding of distances (< 1e-12 here), so a
# code is skipped only when no rounding could change its cluster.
MARGIN = 1e-7


class ReferenceTie(Exception):
    """The exact computation cannot tell what scikit-learn's rounding decides; run scikit-learn."""


def _hamming(x: np.ndarray, pop: np.ndarray, packed: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
    """(len(rows), n) float64 Hamming distances from the codes ``rows`` to all, exact: faiss
    popcounts on the packed codes if given, else the integer GEMM ``x @ x[rows].T``."""
    if packed is not None:
        return hamming_distances(packed[rows], packed).astype(np.float64)
    return pop[rows, None] + pop[None, :] - 2.0 * (x @ x[rows].T).T  # x @ rows.T: the fast GEMM shape


def kmeans_plusplus_ids(x: np.ndarray, pop: np.ndarray, n_clusters: int, seed: int,
                        packed: np.ndarray | None = None) -> np.ndarray:
    """Row indices of the initial centers of ``sklearn.cluster.kmeans_plusplus`` (as KMeans calls
    it: unit weights, 2 + log(k) local trials, ``RandomState(seed)``), in exact arithmetic."""
    n = x.shape[0]
    rs = np.random.RandomState(seed)
    trials = 2 + int(np.log(n_clusters))
    ids = np.empty(n_clusters, dtype=np.int64)
    ids[0] = rs.choice(n, p=np.ones(n) / n)
    closest = _hamming(x, pop, packed, ids[:1])[0]
    potential = closest.sum()
    for c in range(1, n_clusters):
        picks = rs.uniform(size=trials) * potential
        cand = np.minimum(np.searchsorted(np.cumsum(closest), picks), n - 1)
        dist = np.minimum(closest, _hamming(x, pop, packed, cand))
        cand_pot = dist.sum(axis=1)
        best = int(np.argmin(cand_pot))
        near = np.abs(cand_pot - cand_pot[best]) <= 1e-9 * cand_pot[best]
        if np.any(near & np.any(x[cand] != x[cand[best]], axis=1)):
            raise ReferenceTie("k-means++ candidates tie")
        closest, potential, ids[c] = dist[best], cand_pot[best], cand[best]
    return ids


def _sklearn_assignment(x: np.ndarray, mean: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Labels of scikit-learn's first Lloyd step from the centers ``x[ids]``, by its own code on
    its own mean-centered float64 data (the rounding of its chunked GEMM decides exact ties)."""
    try:  # private, so guarded: without it, scikit-learn runs the whole clustering
        from sklearn.cluster._k_means_lloyd import lloyd_iter_chunked_dense
    except ImportError as err:
        raise ReferenceTie("integer distance ties, and scikit-learn's Lloyd step is not importable") from err
    n, k = x.shape[0], len(ids)
    centered = x.astype(np.float64)
    centered -= mean
    centers = centered[ids]
    labels = np.full(n, -1, dtype=np.int32)
    lloyd_iter_chunked_dense(centered, np.ones(n), centers, centers.copy(), np.zeros(k), labels,
                             np.zeros(k), 1, update_centers=False)
    return labels


def exact_kmeans(x: np.ndarray, n_clusters: int, *, seed: int = 9, max_iter: int = 300,
                 tol: float = 1e-4, packed: np.ndarray | None = None) -> np.ndarray:
    """Labels (int64) of ``KMeans(n_clusters, random_state=seed, max_iter, tol).fit(x)`` for a
    0/1 float32 matrix ``x`` and 2 <= n_clusters <= n; raises ReferenceTie where only
    scikit-learn can tell. ``packed``: the same codes as ``np.packbits(x, axis=1)``, if at hand
    (the k-means++ distances then come from faiss's popcounts instead of a GEMM)."""
    n, d = x.shape
    acc = np.float32 if d * n < 2**24 else np.float64  # GEMM dtype that keeps x . S_j exact
    x = np.ascontiguousarray(x, dtype=acc)
    rows = np.arange(n)
    pop = x.sum(axis=1, dtype=np.float64)
    mean = x.sum(axis=0, dtype=np.float64) / n  # = X.mean(axis=0), bit for bit (exact sums)
    tol = float(np.mean(mean * (1.0 - mean))) * tol  # scikit-learn's tol x mean variance

    ids = kmeans_plusplus_ids(x, pop, n_clusters, seed, packed)
    dist = _hamming(x, pop, packed, ids).T  # (n, k) integer squared distances
    labels = np.argmin(dist, axis=1)
    tied = np.flatnonzero((dist == dist[rows, labels][:, None]).sum(axis=1) > 1)
    if tied.size:
        labels[tied] = _sklearn_assignment(x, mean, ids)[tied]
    upper = np.sqrt(dist[rows, labels])
    dist[rows, labels] = np.inf
    lower = np.ascontiguousarray(np.sqrt(dist).T)  # (k, n) lower bounds, own cluster: inf
    del dist

    sums, counts = x[ids].astype(np.float64), np.ones(n_clusters)
    onehot = np.zeros((n, n_clusters), dtype=acc)
    onehot[rows, labels] = 1
    new_sums = (onehot.T @ x).astype(np.float64)
    del onehot
    changed, it = n, 0
    buffer = np.empty_like(x)  # gathered rows; reused, since fresh allocations page-fault every time
    while True:
        new_counts = np.bincount(labels, minlength=n_clusters).astype(np.float64)
        if np.any(new_counts == 0):
            raise ReferenceTie("empty cluster")
        centers = new_sums / new_counts[:, None]
        move = np.sqrt(((centers - sums / counts[:, None]) ** 2).sum(axis=1))
        sums, counts = new_sums, new_counts
        if changed == 0:  # scikit-learn's strict convergence: these labels are final
            return labels
        it += 1
        last = it == max_iter or float((move ** 2).sum()) <= tol
        # E-step (after the last M-step, scikit-learn relabels once more with the final centers)
        c_sq = (centers * centers).sum(axis=1)
        upper += move[labels]
        lower -= move[:, None]
        between = np.sqrt(np.maximum(c_sq[:, None] + c_sq[None, :] - 2.0 * centers @ centers.T, 0.0))
        np.fill_diagonal(between, np.inf)
        half = 0.5 * between.min(axis=1)
        todo = np.flatnonzero(upper + MARGIN >= np.maximum(lower.min(axis=0), half[labels]))
        changed, new_sums = 0, sums
        if todo.size:
            xs = np.take(x, todo, axis=0, out=buffer[:todo.size], mode="clip")  # clip: no copy
            d2 = np.multiply(xs @ sums.T.astype(acc), -2.0 / counts, dtype=np.float64)  # in place from here
            d2 += c_sq
            d2 += pop[todo, None]
            np.maximum(d2, 0.0, out=d2)
            new = np.argmin(d2, axis=1)
            r = np.arange(todo.size)
            upper[todo] = np.sqrt(d2[r, new])
            d2[r, new] = np.inf
            lower[:, todo] = np.sqrt(d2).T
            moved = np.flatnonzero(new != labels[todo])
            changed = moved.size
            if changed:
                who = todo[moved]
                delta = np.zeros((changed, n_clusters), dtype=acc)
                delta[np.arange(changed), new[moved]] = 1
                delta[np.arange(changed), labels[who]] = -1
                new_sums = sums + (delta.T @ np.take(xs, moved, axis=0))
                labels[who] = new[moved]
        if last:
            return labels
