"""Unsupervised learning-to-hash baselines: fit on database features, encode to packed codes.

- ``lsh``: signs of random Gaussian projections of the centred features (sign random
  projections, Charikar 2002): two vectors at angle theta collide on a bit with probability
  1 - theta / pi.
- ``pcah``: signs of the top principal components (scikit-learn ``PCA``).
- ``itq``: PCA to b dimensions, then the orthogonal rotation R minimising the quantisation loss
  ||B - V R||_F^2 by alternating B = sign(V R) and the orthogonal Procrustes step R = U W^T from
  the SVD of V^T B (Gong & Lazebnik, CVPR 2011; 50 iterations, random orthogonal start).

Every hasher is fitted on the database features only (no labels) and encodes any rows to
``np.packbits`` codes; seeds make it deterministic. Bit j is 1 where projection j is > 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sklearn.decomposition import PCA

METHODS = ("lsh", "itq", "pcah")
ITQ_ITERATIONS = 50


@dataclass
class Hasher:
    """``encode(x) = packbits((x - mean) @ projection > 0)``; ``losses`` holds ITQ's loss per
    iteration (before each B update's rotation step), empty for the other methods."""
    method: str
    mean: np.ndarray
    projection: np.ndarray
    losses: list[float] = field(default_factory=list)

    @property
    def n_bits(self) -> int:
        return int(self.projection.shape[1])

    def project(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.projection

    def encode(self, x: np.ndarray) -> np.ndarray:
        return np.packbits(self.project(x) > 0, axis=1)


def fit_hasher(method: str, features: np.ndarray, n_bits: int, *, seed: int = 0,
               pca: PCA | None = None, iterations: int = ITQ_ITERATIONS) -> Hasher:
    """Fit ``method`` (lsh | itq | pcah) with ``n_bits`` bits on the rows of ``features``.

    ``pca``: a PCA already fitted on the same rows with at least ``n_bits`` components (so a
    sweep over budgets fits it once); by default one is fitted here."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features: shape {x.shape}; need a 2-D array with at least 2 rows")
    if method not in METHODS:
        raise ValueError(f"method={method!r}: must be one of {list(METHODS)}")
    if n_bits < 1:
        raise ValueError(f"n_bits={n_bits}: must be >= 1")
    rng = np.random.default_rng(seed)
    if method == "lsh":
        return Hasher("lsh", x.mean(axis=0), rng.standard_normal((x.shape[1], n_bits)))
    limit = min(x.shape)
    if n_bits > limit:
        raise ValueError(f"{method} with n_bits={n_bits}: at most min(rows, features) = {limit} bits")
    if pca is None:
        pca = fit_pca(x, n_bits, seed=seed)
    if pca.n_components_ < n_bits:
        raise ValueError(f"pca has {pca.n_components_} components, fewer than n_bits={n_bits}")
    components = pca.components_[:n_bits].T  # (features, bits)
    if method == "pcah":
        return Hasher("pcah", pca.mean_, components)
    rotation, losses = itq_rotation((x - pca.mean_) @ components, seed=seed, iterations=iterations)
    return Hasher("itq", pca.mean_, components @ rotation, losses)


def fit_pca(features: np.ndarray, n_components: int, *, seed: int = 0) -> PCA:
    """scikit-learn PCA (seeded, for its randomized solver when it picks one); imported here so
    that discovering the metric families does not import scikit-learn."""
    from sklearn.decomposition import PCA
    return PCA(n_components=n_components, random_state=seed).fit(np.asarray(features, dtype=np.float64))


def itq_rotation(v: np.ndarray, *, seed: int = 0, iterations: int = ITQ_ITERATIONS
                 ) -> tuple[np.ndarray, list[float]]:
    """ITQ's orthogonal rotation of the PCA-projected rows ``v`` (n, b) and the quantisation
    loss ||B - V R||_F^2 after each iteration (never increasing: both steps are exact minimisers)."""
    b = v.shape[1]
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((b, b)))
    losses = []
    for _ in range(iterations):
        codes = np.where(v @ rotation >= 0, 1.0, -1.0)
        u, _, wt = np.linalg.svd(v.T @ codes)
        rotation = u @ wt
        losses.append(float(np.square(codes - v @ rotation).sum()))
    return rotation, losses
