"""Logistic-regression accuracy of codes: fit on train codes, score on test codes, by scikit-learn.

Modes (``metrics.logreg_mode``), each scikit-learn's estimator with its defaults (L2, C = 1,
lbfgs, ``max_iter`` 100 as the authors ran it, intercept not penalized), ``random_state`` =
``metrics.logreg_seed``:
- ``"ovo"`` (default; the authors'): ``OneVsOneClassifier(LogisticRegression(...))``;
- ``"ovr"``: ``OneVsRestClassifier(LogisticRegression(...))``;
- ``"multinomial"``: ``LogisticRegression(...)`` on several classes (softmax).
lbfgs itself is deterministic; the seed is passed on as ``random_state`` (so a stochastic solver
or the streaming path below is seeded by it). No hand-written solver: an earlier one (joint
L-BFGS over all pairs) was under the 3x speed-up that would justify keeping it (docs/notes/metrics.md).

Features, by what fits in ``max_dense_bytes`` (default 1 GiB):
- dense: the unpacked 0/1 codes in float64 (n x n_bits x 8 bytes), when that fits;
- row space, when there are fewer training codes than bits (n < n_bits, as with wide networks
  captured on a few thousand inputs) and the n x n Gram matrix fits (32 n^2 bytes with its
  work arrays): the codes' orthonormal coordinates in the span of the training codes. This is an
  exact reparametrization of the same estimator: any weight vector w splits into a part Q v in
  the span (Q an orthonormal basis) and a part orthogonal to every training code; the latter
  changes no training decision value and only adds to the penalty ||w||^2 / 2, so the optimum
  has w = Q v with ||w|| = ||v||, and fitting v on the features F = X Q is the same problem (for
  one-vs-one too: each pair's rows span a subspace of the span). Test codes are mapped the same
  way, f = Q^T x. Q comes from a pivoted Cholesky factorization of the Gram matrix X X^T = L L^T
  (LAPACK ``dpstrf``, accumulated over 64 MiB column chunks of the packed codes): with B the r
  pivot codes, Q = X_B^T L11^-T, so F holds the rows of L and f = L11^-1 (X_B x). The features
  are n x r (r <= n) instead of n x n_bits; only the solver's iterates and stopping differ.
- streaming, when neither fits: scikit-learn's ``SGDClassifier(loss="log_loss")`` (inside
  ``OneVsOneClassifier`` / ``OneVsRestClassifier``) fed by ``partial_fit`` over shuffled 64 MiB
  chunks for ``STREAM_EPOCHS`` epochs, with alpha = 1 / (C x rows per binary problem) so that
  its objective is the same penalized mean log-loss. An approximation (stochastic gradient, a
  fixed number of epochs), but the memory is bounded. Multinomial has no streaming counterpart
  there and raises.

Memory bound: what is bounded is the feature matrix (dense or row-space, <= ``max_dense_bytes``)
and, on the streaming path, one chunk. Not bounded: scikit-learn's own copies during a fit
(one-vs-one copies each pair's rows, about a fifth of the features for 10 balanced classes, and
lbfgs keeps a few vectors per weight) and the fitted weights (n_problems x features).

Degenerate inputs: a single training class predicts that class everywhere; codes with zero
bits fit intercept-only models.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..bits import CHUNK_BYTES, MAX_DENSE_BYTES, iter_chunks, rows_per_chunk, unpack_rows
from ..registry import CodeSet, MetricFamily
from ..threads import capped

MODES = ("ovo", "ovr", "multinomial")
STREAM_EPOCHS = 5


def _unpack_dense(packed: np.ndarray, n_bits: int) -> np.ndarray:
    """float64 0/1 features; zero-bit codes get one all-zero column (an intercept-only fit)."""
    out = np.zeros((packed.shape[0], max(n_bits, 1)), dtype=np.float64)
    for lo, hi in iter_chunks(packed.shape[0], rows_per_chunk(max(n_bits, 1) * 8)):
        out[lo:hi, :n_bits] = unpack_rows(packed[lo:hi], n_bits, np.float64)
    return out


def _cross_gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a_bits @ b_bits.T (float64) for packed codes, over 64 MiB column chunks."""
    out = np.zeros((a.shape[0], b.shape[0]))
    for lo, hi in iter_chunks(a.shape[1], rows_per_chunk(32 * max(a.shape[0], b.shape[0]))):
        xa = np.unpackbits(a[:, lo:hi], axis=1).astype(np.float32)
        xb = np.unpackbits(b[:, lo:hi], axis=1).astype(np.float32)
        out += xa @ xb.T  # sums of 0/1 products: exact in float32 below 2**24 bits per chunk
    return out


@dataclass(frozen=True)
class RowSpace:
    """Orthonormal coordinates of the span of training codes: f(x) = L11^-1 (X_B x)."""

    pivots: np.ndarray  # packed pivot codes X_B (r rows)
    l11: np.ndarray     # r x r lower-triangular factor

    def features(self, packed: np.ndarray) -> np.ndarray:
        from scipy.linalg import solve_triangular
        if self.l11.size == 0:
            return np.zeros((packed.shape[0], 1))
        return solve_triangular(self.l11, _cross_gram(self.pivots, packed), lower=True).T


def row_space(packed: np.ndarray) -> tuple[RowSpace, np.ndarray]:
    """(the map, the training features F = X Q) by pivoted Cholesky of the Gram matrix."""
    from scipy.linalg import lapack
    n = packed.shape[0]
    gram = _cross_gram(packed, packed)
    # gram is symmetric, so its transpose is the Fortran-ordered view LAPACK factors in place
    factor, piv, rank, _ = lapack.dpstrf(gram.T, lower=1, overwrite_a=1)
    features = np.zeros((n, max(rank, 1)))  # rank 0 (all codes zero): one all-zero column
    features[piv - 1, :rank] = np.tril(factor[:, :rank])
    return RowSpace(packed[piv[:rank] - 1], np.tril(factor[:rank, :rank])), features


@dataclass(frozen=True)
class LogRegModel:
    """A fitted scikit-learn estimator and the map from packed codes to its features."""

    estimator: Any
    n_bits: int
    space: RowSpace | None = None
    classes: np.ndarray | None = None  # set when a single training class is predicted everywhere

    def features(self, packed: np.ndarray) -> np.ndarray:
        return self.space.features(packed) if self.space is not None else _unpack_dense(packed, self.n_bits)

    def predict(self, packed: np.ndarray) -> np.ndarray:
        if self.classes is not None:
            return np.full(packed.shape[0], self.classes[0])
        preds = []
        width = self.n_bits if self.space is None else self.space.pivots.shape[0]
        for lo, hi in iter_chunks(packed.shape[0], rows_per_chunk(max(width, 1) * 8)):
            preds.append(self.estimator.predict(self.features(packed[lo:hi])))
        return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def make_estimator(mode: str, seed: int, C: float, max_iter: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsOneClassifier, OneVsRestClassifier
    base = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    return {"ovo": OneVsOneClassifier, "ovr": OneVsRestClassifier}.get(mode, lambda e: e)(base)


def _streamed(packed: np.ndarray, y: np.ndarray, n_bits: int, mode: str, seed: int, C: float,
              chunk_bytes: int | None = None):
    from sklearn.linear_model import SGDClassifier
    from sklearn.multiclass import OneVsOneClassifier, OneVsRestClassifier
    if mode == "multinomial":
        raise ValueError(f"metrics.logreg_mode=multinomial: {packed.shape[0]} codes of {n_bits} bits "
                         f"exceed metrics.max_dense_bytes and multinomial has no streaming fit; "
                         f"allowed here: ovo, ovr (or raise max_dense_bytes)")
    classes = np.unique(y)
    n = packed.shape[0]
    rows = 2 * n / classes.size if mode == "ovo" else n  # rows per binary problem (balanced classes)
    sgd = SGDClassifier(loss="log_loss", alpha=1.0 / (C * rows), random_state=seed)
    est = (OneVsOneClassifier if mode == "ovo" else OneVsRestClassifier)(sgd)
    rng = np.random.default_rng(seed)
    # float64 chunk plus scikit-learn's per-problem copies (about as much again) within chunk_bytes
    chunk = rows_per_chunk(max(n_bits, 1) * 8 * 2, chunk_bytes)
    for _ in range(STREAM_EPOCHS):
        order = rng.permutation(n)
        for lo, hi in iter_chunks(n, chunk):
            idx = np.sort(order[lo:hi])
            est.partial_fit(_unpack_dense(packed[idx], n_bits), y[idx], classes=classes)
    return est


def logreg_fit(train: np.ndarray, train_labels: np.ndarray, n_bits: int, *, mode: str = "ovo",
               seed: int = 9, C: float = 1.0, max_iter: int = 100,
               max_dense_bytes: int = MAX_DENSE_BYTES, row_space_: bool | None = None) -> LogRegModel:
    """Fit logistic regression in ``mode`` on packed train codes; see the module docstring.

    ``row_space_``: fit on row-space coordinates; None = when n < n_bits and the Gram matrix
    fits in ``max_dense_bytes`` (and the dense codes do not).
    """
    if mode not in MODES:
        raise ValueError(f"metrics.logreg_mode={mode!r}: allowed: {', '.join(MODES)}")
    classes = np.unique(train_labels)
    if classes.size == 1:
        return LogRegModel(None, n_bits, classes=classes)
    n = train.shape[0]
    dense_fits = n * max(n_bits, 1) * 8 <= max_dense_bytes
    if row_space_ is None:
        row_space_ = n < n_bits and 32 * n * n <= max_dense_bytes and not dense_fits
    with warnings.catch_warnings(), capped():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter=100, as the authors had
        if row_space_:
            space, x = row_space(train)
            return LogRegModel(make_estimator(mode, seed, C, max_iter).fit(x, train_labels), n_bits, space)
        if dense_fits:
            est = make_estimator(mode, seed, C, max_iter).fit(_unpack_dense(train, n_bits), train_labels)
            return LogRegModel(est, n_bits)
        # chunks of at least 16 MiB: SGD's one-vs-one fit degrades on small chunks (0.60 against
        # 0.68 on 50-row chunks of the digits codes, tests/test_metrics.py)
        return LogRegModel(_streamed(train, train_labels, n_bits, mode, seed, C,
                                     max(CHUNK_BYTES // 4, min(CHUNK_BYTES, max_dense_bytes))), n_bits)


def logreg_predict(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, n_bits: int, *,
                   mode: str = "ovo", seed: int = 9,
                   max_dense_bytes: int = MAX_DENSE_BYTES) -> np.ndarray:
    """Labels of the test codes predicted by logistic regression fitted on the train codes."""
    model = logreg_fit(train, train_labels, n_bits, mode=mode, seed=seed, max_dense_bytes=max_dense_bytes)
    with warnings.catch_warnings(), capped():
        warnings.simplefilter("ignore")
        return model.predict(test)


def logreg_accuracy(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray,
                    test_labels: np.ndarray, n_bits: int, *, mode: str = "ovo", seed: int = 9,
                    max_dense_bytes: int = MAX_DENSE_BYTES) -> float:
    """Test accuracy of ``logreg_predict``."""
    pred = logreg_predict(train, train_labels, test, n_bits, mode=mode, seed=seed,
                          max_dense_bytes=max_dense_bytes)
    return float(np.mean(pred == test_labels))


def _compute(codes: CodeSet, *, logreg_mode: str = "ovo", logreg_seed: int = 9,
             max_dense_bytes: int = MAX_DENSE_BYTES, backend: str = "sklearn", device: Any = None) -> dict[str, float]:
    if backend == "torch":  # all pairs (ovo) / classes (ovr) in one L-BFGS on the device
        from ..torch_backend import logreg_accuracy as torch_logreg
        return {"test/logreg_acc": torch_logreg(codes.train_codes, codes.train_labels, codes.test_codes,
                                                codes.test_labels, codes.n_bits, mode=logreg_mode,
                                                device=device, max_bytes=max_dense_bytes)}
    return {"test/logreg_acc": logreg_accuracy(codes.train_codes, codes.train_labels, codes.test_codes,
                                               codes.test_labels, codes.n_bits, mode=logreg_mode,
                                               seed=logreg_seed, max_dense_bytes=max_dense_bytes)}


def _check(options: Mapping[str, Any]) -> None:
    if options["logreg_mode"] not in MODES:
        raise ValueError(f"metrics.logreg_mode={options['logreg_mode']!r}: allowed: {', '.join(MODES)}")
    for key, low in (("logreg_seed", 0), ("max_dense_bytes", 1)):
        if options[key] < low:
            raise ValueError(f"metrics.{key}={options[key]!r}: must be an integer >= {low}")


FAMILY = MetricFamily(
    name="logreg", names=("test/logreg_acc",), compute=_compute,
    options={"logreg_mode": "ovo", "logreg_seed": 9, "max_dense_bytes": MAX_DENSE_BYTES,
             "backend": "sklearn", "device": None}, check=_check,
    description="logistic-regression test accuracy (one-vs-one by default, as the authors)")
