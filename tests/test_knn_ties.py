"""K-NN under ties: the expected accuracy under uniformly random tie-breaking is exact (against
full enumeration of tie-breaks and against Monte-Carlo on synthetic and real MNIST codes), the
tie-affected flag is exact, and without ties everything equals scikit-learn."""

from __future__ import annotations

import gzip
import itertools

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from activation_hash.metrics import compute_families, CodeSet, knn_predict, thread_limit
from tests.conftest import SHARED_DATASETS

MNIST_RAW = SHARED_DATASETS / "MNIST" / "raw"


def _distances(test_bits: np.ndarray, train_bits: np.ndarray) -> np.ndarray:
    return (test_bits[:, None, :] != train_bits[None, :, :]).sum(axis=2)


def _outcomes(row: np.ndarray, y: np.ndarray, n_classes: int, k: int):
    """Every equally likely choice of the boundary neighbours: (vote counts) per subset."""
    kth = np.sort(row)[k - 1]
    base = np.bincount(y[row < kth], minlength=n_classes)
    boundary = np.flatnonzero(row == kth)
    for subset in itertools.combinations(boundary, k - base.sum()):
        yield base + np.bincount(y[list(subset)], minlength=n_classes)


def _enumerated(row, y, n_classes, k, label):
    """Exact P(label wins) by enumerating subsets; vote ties split uniformly; and the winners."""
    total, n, winners = 0.0, 0, set()
    for votes in _outcomes(row, y, n_classes, k):
        top = np.flatnonzero(votes == votes.max())
        winners.update(top.tolist())
        total += (label in top) / top.size
        n += 1
    return total / n, winners


def _heavy_ties(seed: int, n_train: int, n_test: int, n_bits: int, n_classes: int = 4):
    rng = np.random.default_rng(seed)
    protos = rng.random((n_classes, n_bits)) < 0.5
    y = rng.integers(0, n_classes, n_train + n_test)
    bits = protos[y] ^ (rng.random((n_train + n_test, n_bits)) < 0.3)
    return bits[:n_train], y[:n_train], bits[n_train:], y[n_train:]


@pytest.mark.parametrize("seed,k", [(0, 9), (1, 5), (2, 3)])
def test_win_probability_equals_full_enumeration(seed: int, k: int) -> None:
    """Few training codes over few bits: every tie-break enumerated, probabilities equal."""
    train, y, test, _ = _heavy_ties(seed, 16, 60, 4)
    result = knn_predict(np.packbits(train, axis=1), y, np.packbits(test, axis=1), k)
    dist = _distances(test, train)
    affected = result.tie_affected()
    for i, row in enumerate(dist):
        winners = _enumerated(row, y, 4, k, 0)[1]
        probs = [result.win_probability(np.full(60, label))[i] for label in range(4)]
        expected = [_enumerated(row, y, 4, k, label)[0] for label in range(4)]
        np.testing.assert_allclose(probs, expected, atol=1e-12)
        assert affected[i] == (len(winners) > 1)
    assert affected.mean() > 0.15  # the case does exercise ties


def _monte_carlo(dist: np.ndarray, y: np.ndarray, y_test: np.ndarray, k: int, repeats: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Per test point, the fraction of random tie-breaks (boundary subset, then vote) that are right."""
    n_classes = int(y.max()) + 1
    hits = np.empty(dist.shape[0])
    for i, row in enumerate(dist):
        kth = np.sort(row)[k - 1]
        base = np.bincount(y[row < kth], minlength=n_classes)
        boundary = np.flatnonzero(row == kth)
        need = k - base.sum()
        picks = np.argsort(rng.random((repeats, boundary.size)), axis=1)[:, :need]
        labels = y[boundary][picks]
        votes = base + np.stack([(labels == c).sum(axis=1) for c in range(n_classes)], axis=1)
        winner = np.argmax(votes + 0.5 * rng.random(votes.shape), axis=1)  # uniform among top labels
        hits[i] = np.mean(winner == y_test[i])
    return hits


def _check_against_monte_carlo(train_bits, y, test_bits, y_test, k=9, repeats=4000):
    result = knn_predict(np.packbits(train_bits, axis=1), y, np.packbits(test_bits, axis=1), k)
    exact = result.win_probability(y_test)
    mc = _monte_carlo(_distances(test_bits, train_bits), y, y_test, k, repeats, np.random.default_rng(0))
    se = np.sqrt(np.maximum(exact * (1 - exact), 1e-4) / repeats)
    assert np.all(np.abs(mc - exact) <= 5 * se + 1e-9), np.max(np.abs(mc - exact) / se)
    assert abs(mc.mean() - exact.mean()) <= 4 * np.sqrt(np.mean(exact * (1 - exact)) / (repeats * len(exact))) + 1e-9
    # outside tie-affected points the expectation is the index rule's 0/1
    unaffected = ~result.tie_affected()
    np.testing.assert_array_equal(exact[unaffected], (result.predictions == y_test)[unaffected])
    return result, exact


def test_expected_accuracy_matches_monte_carlo_on_synthetic_heavy_ties() -> None:
    train, y, test, y_test = _heavy_ties(5, 600, 150, 8)
    result, exact = _check_against_monte_carlo(train, y, test, y_test)
    assert result.boundary_tie.mean() > 0.9 and result.tie_affected().mean() > 0.2


def _mnist(n: int, offset: int = 0, test: bool = False):
    prefix = "t10k" if test else "train"
    with gzip.open(MNIST_RAW / f"{prefix}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)[offset:offset + n] / 255.0
    with gzip.open(MNIST_RAW / f"{prefix}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)[offset:offset + n].astype(np.int64)
    return x, y


def _random_mlp_bits(x: np.ndarray, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((784, width)) / np.sqrt(784)
    b = rng.standard_normal(width) * 0.5
    return (x - 0.13) @ w + b > 0


@pytest.mark.skipif(not (MNIST_RAW / "train-images-idx3-ubyte.gz").exists(), reason="no MNIST")
def test_expected_accuracy_matches_monte_carlo_on_real_mnist_codes() -> None:
    """Codes of a random 10-unit ReLU layer on real MNIST: 10 bits, ties everywhere."""
    x, y = _mnist(2000)
    x_test, y_test = _mnist(200, test=True)
    train_bits, test_bits = _random_mlp_bits(x, 10, 0), _random_mlp_bits(x_test, 10, 0)
    with thread_limit(1):
        result, exact = _check_against_monte_carlo(train_bits, y, test_bits, y_test, repeats=3000)
    assert result.boundary_tie.mean() > 0.9


def test_equals_sklearn_where_no_ties_occur() -> None:
    """Wide random codes: where a point has neither a boundary nor a vote tie, the expected
    accuracy, the index rule and scikit-learn give the same prediction; with no tie at all in
    the set, the three accuracies are identical."""
    rng = np.random.default_rng(3)
    bits = rng.random((700, 512)) < 0.5
    y = rng.integers(0, 2, 700)  # two classes and odd k: no vote ties
    train, test = bits[:500], bits[500:]
    ref = KNeighborsClassifier(9, metric="hamming", algorithm="brute").fit(train, y[:500]).predict(test)
    result = knn_predict(np.packbits(train, axis=1), y[:500], np.packbits(test, axis=1), 9)
    clean = ~(result.boundary_tie | result.vote_tie)
    assert clean.mean() > 0.3
    np.testing.assert_array_equal(result.predictions[clean], ref[clean])
    np.testing.assert_array_equal(result.win_probability(y[500:])[clean], (ref == y[500:])[clean])
    keep = np.flatnonzero(clean)
    out = compute_families(CodeSet(np.packbits(train, axis=1), y[:500], np.packbits(test[keep], axis=1),
                                   y[500:][keep], 512), ["knn"], {})
    assert out["test/knn_boundary_ties"] == out["test/knn_vote_ties"] == 0 and out["test/knn_tie_affected"] == 0
    assert out["test/knn_acc"] == out["test/knn_acc_index"] == np.mean(ref[keep] == y[500:][keep])
