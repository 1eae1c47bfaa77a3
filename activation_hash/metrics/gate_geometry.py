"""Geometry of a layer of half-space gates from their effective weights (numpy only).

A DLGN gate i of layer l is the half-space {x : a_i . x + c_i > 0}, a_i = (W_l...W_1)_i (see
activation_hash/models/dlgn.py, `effective_gating`). Yadav et al. (2024) observe that the gates of
later layers cluster: many gates point (up to sign) the same way. Per layer, on the rows of A:

    abs_cos_mean   mean over the n(n-1)/2 gate pairs i<j of |cos(a_i, a_j)|
    abs_cos_p90    the 0.9 quantile of the same |cos| values (numpy's linear interpolation)
    cluster_score  mean over gates of max_{j != i} |cos(a_i, a_j)|: how close each gate's nearest
                   other gate is (1 = every gate has an exact duplicate up to sign; for n random
                   directions in d dimensions it is small, about sqrt(2 log n / d))

|cos| because a and -a cut the input space along the same hyperplane. The offsets c_i are not
used (without `model.gating_bias` they are 0). Rows of norm 0 (a gate that never switches) have no
direction and are left out; with fewer than two directions left the three values are NaN.

    python -c "import numpy as np; from activation_hash.metrics.gate_geometry import gate_geometry; \
print(gate_geometry(np.random.default_rng(0).normal(size=(16, 784))))"
"""

from __future__ import annotations

import numpy as np

NAMES = ("abs_cos_mean", "abs_cos_p90", "cluster_score")


def unit_rows(weights: np.ndarray) -> np.ndarray:
    """The rows of `weights` (n, d) of nonzero norm, scaled to unit length (float64)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"gate weights: shape {w.shape}; need (gates, input dim)")
    norms = np.linalg.norm(w, axis=1)
    keep = norms > 0
    return w[keep] / norms[keep, None]


def abs_cosine_matrix(weights: np.ndarray) -> np.ndarray:
    """|cos| between every pair of (nonzero) rows, (m, m), diagonal 1."""
    u = unit_rows(weights)
    return np.clip(np.abs(u @ u.T), 0.0, 1.0)


def pairwise_abs_cosines(weights: np.ndarray) -> np.ndarray:
    """|cos(a_i, a_j)| for i < j (row-major upper triangle), m(m-1)/2 values."""
    cos = abs_cosine_matrix(weights)
    return cos[np.triu_indices(len(cos), k=1)]


def nearest_abs_cosines(weights: np.ndarray) -> np.ndarray:
    """Per gate, max_{j != i} |cos(a_i, a_j)| (m values; empty with fewer than 2 rows)."""
    cos = abs_cosine_matrix(weights)
    if len(cos) < 2:
        return np.empty(0)
    np.fill_diagonal(cos, -np.inf)
    return cos.max(axis=1)


def gate_geometry(weights: np.ndarray, quantile: float = 0.9) -> dict[str, float]:
    """{abs_cos_mean, abs_cos_p90, cluster_score} of one layer's gate weights (module docstring)."""
    if not 0 <= quantile <= 1:
        raise ValueError(f"quantile={quantile!r}: must be in [0, 1]")
    pairs = pairwise_abs_cosines(weights)
    if pairs.size == 0:
        return dict.fromkeys(NAMES, float("nan"))
    return {"abs_cos_mean": float(pairs.mean()), "abs_cos_p90": float(np.quantile(pairs, quantile)),
            "cluster_score": float(nearest_abs_cosines(weights).mean())}
