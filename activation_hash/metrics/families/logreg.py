"""Logistic-regression accuracy of codes: fit on train codes, score on test codes, by scikit-learn.

Modes (``metrics.logreg_mode``), each scikit-learn's estimator with its defaults (L2, C = 1,
lbfgs, ``max_iter`` 100 as the authors ran it, intercept not penalized), ``random_state`` =
``metrics.logreg_seed``:
- ``"ovo"`` (default; the authors'): ``OneVsOneClassifier(LogisticRegression(...))``;
- ``"ovr"``: ``OneVsRestClassifier(LogisticRegression(...))``;
- ``"multinomial"``: ``LogisticRegression(...)`` on several classes (softmax).
lbfgs itself is deterministic; the seed is passed on as ``random_state`` (used by no path here).
No hand-written solver in memory: an earlier one (joint L-BFGS over all pairs) was under the 3x
speed-up that would justify keeping it (docs/notes/metrics.md).

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
- streaming, when neither fits: the same estimator by the same solver, fed chunk by chunk.
  scikit-learn's lbfgs fit is ``scipy.optimize.minimize(method="L-BFGS-B")`` from zero on the
  mean log-loss plus ||coef||^2 / (2 C n) (binomial per binary problem, softmax for
  multinomial); ``_lbfgs_streamed`` calls that same public scipy function with the same options
  (``maxiter`` = max_iter, ``maxls`` 50, ``gtol`` = tol, ``ftol`` 64 eps) on the same objective,
  whose value and gradient it sums over chunks of packed rows (unpacked to float64, within
  ``min(64 MiB, max_dense_bytes)``; the codes may be a ``np.memmap``). The problems are
  scikit-learn's, in its order (``_problems``: the pairs i < j with j positive, or each class
  against the rest; two classes are one problem in every mode), solved one after the other,
  and predicted by its rules (``ovo_vote``: OneVsOneClassifier's votes plus squashed
  confidences; argmax for ovr / multinomial). Only summation order differs from the in-memory
  fit, so the iterates agree to rounding: the same predictions on the digits codes but a
  boundary case or two, the same test accuracy on MNIST MLP and tiny-CNN codes
  (tests/test_metrics.py) and 0.814 both on tests/test_max_ram.py's overlapping-class codes
  under a 48 MiB budget (where scikit-learn's SGD, streamed before, was recorded at 0.807
  against 0.831). Measured on 7 MNIST MLP code sets (1,000-5,000 training codes, 32-100 units,
  one-vs-one): gap 0.000 on each; ovr +0.001, multinomial 0.000 on 5,000 codes.
  Passes: one over a problem's rows per objective evaluation (<= max_iter iterations, about
  1.1 evaluations each with the line search). Measured on 5,000 MNIST width-100 MLP codes:
  one-vs-one 2,774 evaluations over 45 pairs, each reading a pair's rows (about 2n / K), so
  ~555 passes over the training codes; ovr 1,099 passes; multinomial 108. The torch backend's
  streamed L-BFGS (``torch_backend.logreg_predict_streamed``) solves all problems in one pass
  per evaluation (at most ~300 passes) but is a different solver; this one stays scipy's.

Memory bound: what is bounded is the feature matrix (dense or row-space, <= ``max_dense_bytes``)
and, on the streaming path, one chunk (float64 features plus the packed rows). Not bounded:
scikit-learn's own copies during an in-memory fit (one-vs-one copies each pair's rows, about a
fifth of the features for 10 balanced classes), L-BFGS-B's state (about 25 vectors of one
problem's weights: bits + 1, or classes x (bits + 1) for multinomial) and the fitted weights
(n_problems x features).

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
TOL = 1e-4  # LogisticRegression's default tol, passed explicitly so both paths share it


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
    base = LogisticRegression(C=C, max_iter=max_iter, tol=TOL, random_state=seed)
    return {"ovo": OneVsOneClassifier, "ovr": OneVsRestClassifier}.get(mode, lambda e: e)(base)


def _problems(mode: str, y: np.ndarray, n_cls: int) -> list[tuple[np.ndarray | None, np.ndarray]]:
    """scikit-learn's binary problems, in its order, as (rows or None = all, 0/1 targets): the
    pairs i < j with j positive (OneVsOneClassifier), each class against the rest
    (OneVsRestClassifier); two classes are one problem, classes[1] positive, in every mode."""
    if n_cls == 2:
        return [(None, (y == 1).astype(np.float64))]
    if mode == "ovr":
        return [(None, (y == c).astype(np.float64)) for c in range(n_cls)]
    out = []
    for i in range(n_cls):
        for j in range(i + 1, n_cls):
            rows = np.flatnonzero((y == i) | (y == j))
            out.append((rows, (y[rows] == j).astype(np.float64)))
    return out


def _lbfgs_streamed(packed: np.ndarray, rows: np.ndarray | None, target: np.ndarray, n_bits: int,
                    n_out: int, C: float, max_iter: int, chunk: int) -> tuple[np.ndarray, np.ndarray, int]:
    """scikit-learn's lbfgs fit of ``LogisticRegression`` on the packed codes ``packed[rows]``,
    never unpacked whole: its objective (mean log-loss + ||coef||^2 / (2 C n), intercept not
    penalized; binomial for ``n_out`` = 1 with 0/1 ``target``, multinomial softmax over ``n_out``
    classes with class-index ``target``) and gradient are summed chunk by chunk of ``chunk``
    rows, and minimized by scipy's L-BFGS-B from zero with scikit-learn's options (``maxiter``,
    ``maxls`` 50, ``gtol`` = tol, ``ftol`` 64 eps). Returns (coef (n_out, f), intercept (n_out,),
    objective evaluations = passes over the rows)."""
    from scipy import optimize
    from scipy.special import expit, logsumexp
    f = max(n_bits, 1)
    n = packed.shape[0] if rows is None else rows.size
    l2 = 1.0 / (C * n)
    shape = (n_out, f + 1)  # coef and intercept of each output; raveled in Fortran order as scikit-learn's
    evals = [0]

    def loss_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        evals[0] += 1
        w = flat.reshape(shape, order="F")
        coef, intercept = w[:, :f], w[:, f]
        loss, grad = 0.0, np.zeros(shape)
        for lo, hi in iter_chunks(n, chunk):
            x = _unpack_dense(packed[lo:hi] if rows is None else packed[rows[lo:hi]], n_bits)
            z, t = x @ coef.T + intercept, target[lo:hi]
            if n_out == 1:
                z = z[:, 0]
                loss += float(np.sum(np.logaddexp(0.0, z) - t * z))
                r = (expit(z) - t)[:, None]
            else:
                lse = logsumexp(z, axis=1)
                at = np.arange(hi - lo)
                loss += float(np.sum(lse - z[at, t]))
                r = np.exp(z - lse[:, None])
                r[at, t] -= 1.0
            grad[:, :f] += r.T @ x
            grad[:, f] += r.sum(0)
        loss, grad = loss / n, grad / n
        loss += 0.5 * l2 * float(np.sum(coef * coef))
        grad[:, :f] += l2 * coef
        return loss, grad.ravel(order="F")

    res = optimize.minimize(loss_grad, np.zeros(n_out * (f + 1)), method="L-BFGS-B", jac=True,
                            options={"maxiter": max_iter, "maxls": 50, "gtol": TOL,
                                     "ftol": 64 * np.finfo(float).eps})
    w = res.x.reshape(shape, order="F")
    return w[:, :f], w[:, f], evals[0]


def ovo_vote(dec: np.ndarray, n_cls: int) -> np.ndarray:
    """Class index per row from the pairs' decision values (rows, pairs), by OneVsOneClassifier's
    rule: a vote for j where the value is > 0 (else for i), plus the summed confidences squashed
    into (-1/3, 1/3) to break ties."""
    votes, conf = np.zeros((dec.shape[0], n_cls)), np.zeros((dec.shape[0], n_cls))
    k = 0
    for i in range(n_cls):
        for j in range(i + 1, n_cls):
            pos = dec[:, k] > 0
            votes[:, i] += ~pos
            votes[:, j] += pos
            conf[:, i] -= dec[:, k]
            conf[:, j] += dec[:, k]
            k += 1
    return np.argmax(votes + conf / (3 * (np.abs(conf) + 1)), axis=1)


@dataclass(frozen=True)
class StreamedFit:
    """The weights of ``_streamed``'s problems and scikit-learn's prediction rule for them."""

    coef: np.ndarray       # (problems or classes, features)
    intercept: np.ndarray
    mode: str
    classes: np.ndarray
    evaluations: int       # objective evaluations, each one pass over its problem's rows

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Labels of dense feature rows ``x``."""
        dec = x @ self.coef.T + self.intercept
        if self.classes.size == 2:
            return self.classes[(dec[:, 0] > 0).astype(np.int64)]
        return self.classes[ovo_vote(dec, self.classes.size) if self.mode == "ovo" else np.argmax(dec, axis=1)]


def _streamed(packed: np.ndarray, y: np.ndarray, n_bits: int, mode: str, C: float, max_iter: int,
              chunk_bytes: int) -> StreamedFit:
    """The fit of ``mode`` by ``_lbfgs_streamed``, problem by problem, in chunks of
    ``chunk_bytes``: scikit-learn's estimator, the same solver from the same start."""
    classes, yi = np.unique(y, return_inverse=True)
    yi = yi.reshape(-1)
    chunk = rows_per_chunk(max(n_bits, 1) * 9 + packed.shape[1], chunk_bytes)  # bits, floats, packed rows
    if mode == "multinomial" and classes.size > 2:
        coef, intercept, evals = _lbfgs_streamed(packed, None, yi, n_bits, classes.size, C, max_iter, chunk)
        return StreamedFit(coef, intercept, mode, classes, evals)
    fits = [_lbfgs_streamed(packed, rows, t, n_bits, 1, C, max_iter, chunk)
            for rows, t in _problems(mode, yi, classes.size)]
    return StreamedFit(np.concatenate([c for c, _, _ in fits]), np.concatenate([b for _, b, _ in fits]),
                       mode, classes, sum(e for _, _, e in fits))


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
        return LogRegModel(_streamed(train, train_labels, n_bits, mode, C, max_iter,
                                     min(CHUNK_BYTES, max_dense_bytes)), n_bits)


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
