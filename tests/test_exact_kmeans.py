"""exact_kmeans against scikit-learn's KMeans itself: the same labels, on real and random codes."""

from __future__ import annotations

import gzip
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits

from activation_hash.metrics import thread_limit
from activation_hash.metrics.exact_kmeans import ReferenceTie, exact_kmeans
from activation_hash.metrics.kmeans import kmeans_clusters

from .conftest import SHARED_DATASETS


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with thread_limit(1):
        yield


def _sklearn(bits: np.ndarray, k: int, seed: int, **kw) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return KMeans(k, random_state=seed, **kw).fit(bits.astype(np.float64)).labels_


def _mnist_relu_codes(n: int, width: int) -> np.ndarray:
    """Sign patterns of a randomly initialized ReLU layer on real MNIST images."""
    path = Path(SHARED_DATASETS) / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    if not path.exists():
        pytest.skip(f"real MNIST codes need {path}")
    with gzip.open(path, "rb") as fh:
        images = np.frombuffer(fh.read(), np.uint8, offset=16)[: n * 784].reshape(n, 784) / 255.0
    rng = np.random.default_rng(width)
    weights = rng.uniform(-1, 1, (784, width)) / np.sqrt(784)
    return (images @ weights + rng.uniform(-0.05, 0.05, width)) > 0


CASES = {
    "digits>8": lambda: load_digits().data > 8,
    "random 2000x64": lambda: np.random.default_rng(1).random((2000, 64)) < 0.5,
    "skewed 3000x40": lambda: np.random.default_rng(2).random((3000, 40)) < np.linspace(0.02, 0.98, 40),
    "duplicates 400x6": lambda: np.random.default_rng(3).random((400, 6)) < 0.3,
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("seed", [9, 0])
def test_same_labels_as_sklearn(name: str, seed: int) -> None:
    bits = CASES[name]()
    ref = _sklearn(bits, 10, seed)
    try:
        np.testing.assert_array_equal(exact_kmeans(bits.astype(np.float32), 10, seed=seed), ref)
    except ReferenceTie:
        pass  # allowed: the dispatcher below then runs scikit-learn
    np.testing.assert_array_equal(kmeans_clusters(np.packbits(bits, axis=1), bits.shape[1], 10, seed=seed), ref)


@pytest.mark.parametrize("width", [30, 100])
def test_same_labels_on_real_mnist_codes(width: int) -> None:
    bits = _mnist_relu_codes(6000, width)
    for seed in (9, 1):
        np.testing.assert_array_equal(exact_kmeans(bits.astype(np.float32), 10, seed=seed),
                                      _sklearn(bits, 10, seed))


@pytest.mark.parametrize("max_iter, tol", [(1, 1e-4), (3, 1e-4), (300, 0.0), (300, 1e-2)])
def test_stopping_rules_match(max_iter: int, tol: float) -> None:
    """Iteration cap (then one more assignment), strict convergence (tol 0), center-shift stop."""
    bits = CASES["skewed 3000x40"]()
    np.testing.assert_array_equal(exact_kmeans(bits.astype(np.float32), 8, seed=9, max_iter=max_iter, tol=tol),
                                  _sklearn(bits, 8, 9, max_iter=max_iter, tol=tol))


def test_candidate_tie_hands_over_to_sklearn() -> None:
    """Two distinct candidate centers with the same k-means++ potential: only scikit-learn's
    rounding can pick, so exact_kmeans refuses and kmeans_clusters runs scikit-learn."""
    bits = np.random.default_rng(1).random((500, 8)) < 0.3
    found = False
    for seed in range(40):
        try:
            exact_kmeans(bits.astype(np.float32), 10, seed=seed)
        except ReferenceTie:
            found = True
            np.testing.assert_array_equal(kmeans_clusters(np.packbits(bits, axis=1), 8, 10, seed=seed),
                                          _sklearn(bits, 10, seed))
    assert found, "no seed produced a k-means++ tie on these 8-bit codes"
