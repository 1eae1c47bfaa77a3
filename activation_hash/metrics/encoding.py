"""The encoding metric set of one capture: train and test codes in, stable metric names out.

Names (those of groups not in ``which`` are omitted):
    n_bits, n_bits_used, train/n, test/n,
    train/redundancy, test/redundancy,                                   (which: "redundancy")
    train/kmeans_acc, train/kmeans_hungarian_acc,
    test/kmeans_acc, test/kmeans_hungarian_acc,                          (which: "kmeans")
    test/knn_acc, test/knn_vote_ties, test/knn_boundary_ties,            (which: "knn")
    test/logreg_acc                                                      (which: "logreg")
``*_acc`` and redundancies are fractions in [0, 1]; ``*_ties`` are counts of test points;
``kmeans_acc`` is the authors' majority mapping, ``kmeans_hungarian_acc`` the one-to-one one.

Units that are constant (all 0 or all 1) over train and test together are dropped first unless
``drop_constant=False``; ``n_bits`` counts bits before and ``n_bits_used`` after dropping.
K-Means uses K = number of distinct labels over train and test (at most the split's size).

Degenerate inputs are defined, not errors:
- zero bits left (every code identical): redundancy = (n - 1) / n; K-Means puts every code in
  one cluster (accuracy = frequency of the most common label); every training code is at
  distance 0, so K-NN's neighbours are the k lowest-index training codes and every test point
  has a boundary tie when there are more than k training codes; logistic regression fits
  intercepts only.
- a single class: one cluster, and K-NN and logistic regression predict that class.
- n = 1: redundancy 0, one cluster; K-NN needs knn_k <= the number of training codes.

Memory: see the modules of each metric; none builds an unpacked n x n_bits array beyond
``max_dense_bytes`` (default 1 GiB).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import faiss
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from .bits import MAX_DENSE_BYTES, check_packed, drop_constant_bits
from .kmeans import kmeans_accuracy
from .knn import knn_predict
from .logreg import MODES, logreg_predict
from .redundancy import redundancy_ratio

WHICH = ("redundancy", "kmeans", "knn", "logreg")
METRIC_NAMES = (
    "n_bits", "n_bits_used", "train/n", "test/n",
    "train/redundancy", "test/redundancy",
    "train/kmeans_acc", "train/kmeans_hungarian_acc", "test/kmeans_acc", "test/kmeans_hungarian_acc",
    "test/knn_acc", "test/knn_vote_ties", "test/knn_boundary_ties",
    "test/logreg_acc",
)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r}: must be an integer >= {minimum}")
    return int(value)


def _check_labels(labels: object, n_rows: int, name: str, codes_name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name}: shape {labels.shape}; labels must be 1-D")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: dtype {labels.dtype}; labels must be integers")
    if labels.shape[0] != n_rows:
        raise ValueError(f"{name}: {labels.shape[0]} labels for {n_rows} rows of {codes_name}")
    return labels


def _check_which(which: Iterable[str]) -> tuple[str, ...]:
    which = (which,) if isinstance(which, str) else tuple(which)
    unknown = [w for w in which if w not in WHICH]
    if unknown:
        raise ValueError(f"which: unknown metric group(s) {unknown}; allowed: {list(WHICH)}")
    return which


@contextmanager
def thread_limit(n_threads: int | None) -> Iterator[None]:
    """Cap BLAS, OpenMP (scikit-learn, torch), faiss and torch threads; None leaves them alone.

    Useful when several runs share a machine: oversubscribed BLAS/OpenMP threads stall at
    their barriers and can make the metrics many times slower.
    """
    if n_threads is None:
        yield
        return
    faiss_before, torch_before = faiss.omp_get_max_threads(), torch.get_num_threads()
    faiss.omp_set_num_threads(n_threads)
    torch.set_num_threads(n_threads)
    try:
        with threadpool_limits(limits=n_threads):
            yield
    finally:
        faiss.omp_set_num_threads(faiss_before)
        torch.set_num_threads(torch_before)


def encoding_metrics(train_codes: np.ndarray, train_labels: np.ndarray, test_codes: np.ndarray,
                     test_labels: np.ndarray, n_bits: int, *, drop_constant: bool = True,
                     knn_k: int = 9, kmeans_seed: int = 9, logreg_mode: str = "ovo",
                     logreg_seed: int = 9, which: Iterable[str] = WHICH,
                     device: str | torch.device | None = None, kmeans_n_init: int = 1,
                     max_dense_bytes: int = MAX_DENSE_BYTES,
                     n_threads: int | None = None) -> dict[str, float]:
    """Encoding metrics of packed train/test codes; see the module docstring for the names.

    ``device``: torch device for the GEMM K-NN distances (None: faiss on CPU).
    ``kmeans_n_init``: K-Means restarts (1 = current scikit-learn default; the authors' 10).
    ``max_dense_bytes``: largest dense feature matrix K-Means / logistic regression may build.
    ``n_threads``: cap on compute threads (see ``thread_limit``); None = library defaults.
    All inputs are validated up front; bad values raise ValueError naming the argument.
    """
    n_bits = _check_int("n_bits", n_bits, 0)
    train = check_packed(train_codes, n_bits, "train_codes")
    test = check_packed(test_codes, n_bits, "test_codes")
    for name, codes in (("train_codes", train), ("test_codes", test)):
        if codes.shape[0] == 0:
            raise ValueError(f"{name}: 0 codes; each split needs at least 1")
    y_train = _check_labels(train_labels, train.shape[0], "train_labels", "train_codes")
    y_test = _check_labels(test_labels, test.shape[0], "test_labels", "test_codes")
    which = _check_which(which)
    knn_k = _check_int("knn_k", knn_k, 1)
    if "knn" in which and knn_k > train.shape[0]:
        raise ValueError(f"knn_k={knn_k} is larger than the training set ({train.shape[0]} codes)")
    if logreg_mode not in MODES:
        raise ValueError(f"logreg_mode={logreg_mode!r}: must be one of {list(MODES)}")
    kmeans_seed = _check_int("kmeans_seed", kmeans_seed, 0)
    logreg_seed = _check_int("logreg_seed", logreg_seed, 0)
    kmeans_n_init = _check_int("kmeans_n_init", kmeans_n_init, 1)
    max_dense_bytes = _check_int("max_dense_bytes", max_dense_bytes, 1)
    if n_threads is not None:
        n_threads = _check_int("n_threads", n_threads, 1)
    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device={device!r}: not a torch device ({err})") from None

    with thread_limit(n_threads):
        n_used = n_bits
        if drop_constant:
            train, test, n_used = drop_constant_bits(train, test, n_bits)
        out: dict[str, float] = {"n_bits": n_bits, "n_bits_used": n_used,
                                 "train/n": int(train.shape[0]), "test/n": int(test.shape[0])}
        if "redundancy" in which:
            out["train/redundancy"] = redundancy_ratio(train)
            out["test/redundancy"] = redundancy_ratio(test)
        if "kmeans" in which:
            n_classes = int(np.unique(np.concatenate([y_train, y_test])).size)
            for split, codes, labels in (("train", train, y_train), ("test", test, y_test)):
                majority, hungarian = kmeans_accuracy(codes, n_used, labels, n_classes,
                                                      seed=kmeans_seed, n_init=kmeans_n_init,
                                                      max_dense_bytes=max_dense_bytes)
                out[f"{split}/kmeans_acc"] = majority
                out[f"{split}/kmeans_hungarian_acc"] = hungarian
        if "knn" in which:
            knn = knn_predict(train, y_train, test, knn_k, n_bits=n_used, device=device)
            out["test/knn_acc"] = float(np.mean(knn.predictions == y_test))
            out["test/knn_vote_ties"] = int(knn.vote_tie.sum())
            out["test/knn_boundary_ties"] = int(knn.boundary_tie.sum())
        if "logreg" in which:
            pred = logreg_predict(train, y_train, test, n_used, mode=logreg_mode, seed=logreg_seed,
                                  max_dense_bytes=max_dense_bytes)
            out["test/logreg_acc"] = float(np.mean(pred == y_test))
    return out
