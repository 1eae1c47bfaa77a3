"""The paper's encoding metrics from the rows' Gram matrix of bit overlaps, with no codes at hand.

    kernel_families(KernelCodes(gram, n_train, y_train, y_test, n_bits, n_bits_used), which, options)

``gram`` is G = X X^T over the rows [train; test] of the codes after dropping constant units (a
torch tensor, on the device where the metrics run; ``activation_hash.codes.gram`` computes it from
the network without storing codes). Everything the families need follows from it exactly, with
Hamming distance d(i, j) = G_ii + G_jj - 2 G_ij:

- redundancy: code i repeats an earlier code of its split iff d(i, j) = 0 for some earlier j
  (exact; O(n^2) per split, one pass over G's diagonal blocks);
- K-Means: Lloyd in kernel form (``torch_backend.kmeans_gram``), the torch backend's algorithm
  (batched k-means++ initialisations, scikit-learn's convergence rule, best inertia) on each split;
- K-NN: test-to-train distances from G's off-diagonal block, the exact neighbour selection and
  tie expectation of ``families/knn.py``;
- logistic regression: exact row-space coordinates from the eigendecomposition of the train
  block, G_tr = U L U^T: F_tr = U L^1/2 and F_te = G_te,tr U L^-1/2 reproduce every inner product
  of a test row with the training span; an L2 logistic regression with an unpenalized intercept
  depends on nothing else (its weights lie in that span), so it is the same estimator as on the
  codes, solved by the torch backend's L-BFGS (``torch_backend.logreg_predict``).

Memory beyond G: redundancy and K-NN one block of rows at a time (256 MiB); K-Means the
(n, 10 x K) products of its batched initialisations; logistic regression the float64 train block
and its eigenvectors (2 x n_train^2 x 8 bytes) and the features of both splits.

The metric names are those of ``compute_families``; ``backend`` is ``torch`` (these are the torch
backend's solvers, on the Gram matrix's device). Torch is imported inside the functions only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bits import iter_chunks, rows_per_chunk
from .families.kmeans import hungarian_accuracy, majority_accuracy
from .families.knn import knn_result

KERNEL_FAMILIES = ("redundancy", "kmeans", "knn", "logreg")
BLOCK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class KernelCodes:
    """Codes known by their overlaps: ``gram`` (N, N) over [train; test] rows, the first
    ``n_train`` rows the training split's; bit counts before and after dropping constant units."""
    gram: Any
    n_train: int
    train_labels: np.ndarray
    test_labels: np.ndarray
    n_bits: int
    n_bits_used: int


def unsupported(which: Iterable[str]) -> list[str]:
    """The families of ``which`` that need the codes themselves: neither scored from the Gram
    matrix here nor free of code bits (``MetricFamily.reads_codes``)."""
    from .registry import families
    known = families()
    return [w for w in which if w not in KERNEL_FAMILIES and (w not in known or known[w].reads_codes)]


def _blocks(n: int, row_bytes: int) -> Iterable[tuple[int, int]]:
    """Row ranges of at most BLOCK_BYTES of `row_bytes`-byte rows."""
    return iter_chunks(n, rows_per_chunk(row_bytes, BLOCK_BYTES))


def n_unique_gram(g, sq, lo: int, hi: int) -> int:
    """Distinct codes among rows lo..hi-1 of G (exact: a row repeats an earlier one iff their
    Hamming distance is 0)."""
    import torch
    n = hi - lo
    repeats = 0
    for a, b in _blocks(n, 12 * n):
        d = sq[lo + a:lo + b, None] + sq[None, lo:lo + b] - 2 * g[lo + a:lo + b, lo:lo + b]
        earlier = torch.arange(n, device=g.device)[None, :] < torch.arange(a, b, device=g.device)[:, None]
        repeats += int(((d.abs() < 0.5) & earlier).any(1).sum())
    return n - repeats


def knn_from_gram(codes: KernelCodes, k: int):
    """``families.knn.KNNResult`` of the test rows against the train rows, distances from G."""
    import torch
    g, n = codes.gram, codes.n_train
    sq = g.diagonal()
    n_test = g.shape[0] - n
    if not 1 <= k <= n:
        raise ValueError(f"metrics.knn_k={k} is larger than the training set ({n} codes); allowed: 1..{n}")
    blocks = ((sq[n + lo:n + hi, None] + sq[None, :n] - 2 * g[n + lo:n + hi, :n]).round().to(torch.int32)
              for lo, hi in _blocks(n_test, 16 * n))  # one (queries, n_train) block at a time
    return knn_result(blocks, codes.train_labels, k)


def logreg_from_gram(codes: KernelCodes, mode: str) -> float:
    """Test accuracy of the logistic regression on exact row-space coordinates (module docstring)."""
    import torch
    from .torch_backend import logreg_predict
    g, n = codes.gram, codes.n_train
    gtr = g[:n, :n].to(torch.float64)
    evals, vecs = torch.linalg.eigh(gtr)
    top = float(evals.max()) if evals.numel() else 0.0
    keep = evals > max(top, 0.0) * n * torch.finfo(torch.float64).eps  # numpy's matrix_rank rule
    if not bool(keep.any()):  # every code zero: an intercept-only fit
        ftr = torch.zeros((n, 1), dtype=torch.float64, device=g.device)
        fte = torch.zeros((g.shape[0] - n, 1), dtype=torch.float64, device=g.device)
    else:
        vecs, root = vecs[:, keep], evals[keep].sqrt()
        ftr = vecs * root
        fte = (g[n:, :n].to(torch.float64) @ vecs) / root
    del gtr
    pred = logreg_predict(ftr, codes.train_labels, fte, mode=mode)
    return float(np.mean(pred == codes.test_labels))


def kernel_families(codes: KernelCodes, which: Iterable[str] | str, options: Mapping[str, Any] | None = None
                    ) -> dict[str, Any]:
    """The metrics of ``which`` (a subset of ``KERNEL_FAMILIES``) from ``codes``, named as
    ``compute_families`` names them. ``options``: ``metrics.*`` (knn_k, kmeans_seed,
    kmeans_n_init, logreg_mode; the others are ignored)."""
    from .torch_backend import kmeans_gram
    options = dict(options or {})
    which = (which,) if isinstance(which, str) else tuple(which)
    bad = [w for w in which if w not in KERNEL_FAMILIES]
    if bad:
        raise ValueError(f"metrics.which={list(which)}: scored from the Gram matrix are only "
                         f"{', '.join(KERNEL_FAMILIES)}; not {', '.join(bad)}")
    g, n = codes.gram, codes.n_train
    n_test = g.shape[0] - n
    out: dict[str, Any] = {"n_bits": codes.n_bits, "n_bits_used": codes.n_bits_used, "train/n": n, "test/n": n_test}
    dead = codes.n_bits_used == 0
    spans = {"train": (0, n), "test": (n, n + n_test)}
    labels = {"train": codes.train_labels, "test": codes.test_labels}
    sq = g.diagonal()
    for family in which:
        if family == "redundancy":
            for split, (lo, hi) in spans.items():
                out[f"{split}/redundancy"] = (hi - lo - n_unique_gram(g, sq, lo, hi)) / (hi - lo)
        elif dead:
            continue
        elif family == "kmeans":
            k = int(np.unique(np.concatenate([codes.train_labels, codes.test_labels])).size)
            for split, (lo, hi) in spans.items():
                clusters = kmeans_gram(g[lo:hi, lo:hi], codes.n_bits_used, k,
                                       seed=options.get("kmeans_seed", 9), n_init=options.get("kmeans_n_init", 10))
                out[f"{split}/kmeans_acc"] = majority_accuracy(clusters, labels[split])
                out[f"{split}/kmeans_hungarian_acc"] = hungarian_accuracy(clusters, labels[split])
        elif family == "knn":
            result = knn_from_gram(codes, options.get("knn_k", 9))
            out.update({"test/knn_acc": float(result.win_probability(codes.test_labels).mean()),
                        "test/knn_acc_index": float(np.mean(result.predictions == codes.test_labels)),
                        "test/knn_vote_ties": int(result.vote_tie.sum()),
                        "test/knn_boundary_ties": int(result.boundary_tie.sum()),
                        "test/knn_tie_affected": float(result.tie_affected().mean())})
        elif family == "logreg":
            out["test/logreg_acc"] = logreg_from_gram(codes, options.get("logreg_mode", "ovo"))
    if dead:
        out["dead_network"] = True
    out["backend"] = "torch"
    return out
