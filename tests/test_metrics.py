"""Encoding metrics against brute-force definitions and scikit-learn references.

"Real" codes come from a tiny ReLU MLP trained a few steps on scikit-learn's digits; random
codes from a seeded RNG (class prototypes with bit flips, duplicates and constant units).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsOneClassifier, OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier

from activation_hash import evaluate
from activation_hash.metrics import (
    METRIC_NAMES,
    CodeSet,
    bits,
    check_packed,
    compute_families,
    drop_constant_bits,
    encoding_metrics,
    hamming_distances,
    hungarian_accuracy,
    kmeans_accuracy,
    kmeans_clusters,
    knn_neighbors,
    knn_predict,
    logreg_fit,
    logreg_predict,
    majority_accuracy,
    n_unique_rows,
    popcount,
    redundancy_ratio,
    thread_limit,
    unpack_rows,
    WHICH,
    validate_options,
    varying_bits,
)
from activation_hash.metrics.families import knn, logreg

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- data


def _digits_codes() -> dict[str, np.ndarray | int]:
    """Sign patterns (96 bits) of a 64-64-32-10 ReLU MLP trained 60 full-batch steps on digits."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32),
                              torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    target = torch.tensor(y[:1200])
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x[:1200]), target).backward()
        opt.step()
    with torch.no_grad():
        h1 = net[0](x)
        h2 = net[2](torch.relu(h1))
    code_bits = torch.cat([h1 > 0, h2 > 0], dim=1).numpy()
    packed = np.packbits(code_bits, axis=1)
    return {"train_codes": packed[:1200], "test_codes": packed[1200:], "train_labels": y[:1200],
            "test_labels": y[1200:], "n_bits": 96, "bits": code_bits}


def _random_codes(seed: int, n: int, n_bits: int, n_classes: int = 5, flip: float = 0.2,
                  duplicates: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(bits, labels): noisy class prototypes, two constant units and, with ``duplicates``,
    10% of rows overwritten by copies of random rows (keeping their own labels)."""
    rng = np.random.default_rng(seed)
    protos = rng.random((n_classes, n_bits)) < 0.5
    labels = rng.integers(0, n_classes, n)
    code_bits = protos[labels] ^ (rng.random((n, n_bits)) < flip)
    if duplicates:
        dup = rng.choice(n, n // 10, replace=False)
        code_bits[dup] = code_bits[rng.integers(0, n, dup.size)]
    if n_bits >= 4:
        code_bits[:, 1] = False
        code_bits[:, 3] = True
    return code_bits, labels


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Single-threaded BLAS/OpenMP/faiss/torch, for metrics and references alike: on small
    shared machines oversubscribed threads make scikit-learn's references 10-80x slower."""
    with thread_limit(1):
        yield


@pytest.fixture(scope="module")
def digits(one_thread: None) -> dict[str, np.ndarray | int]:
    return _digits_codes()


def _unpack(packed: np.ndarray, n_bits: int) -> np.ndarray:
    return np.unpackbits(packed, axis=1, count=n_bits)


def _brute_knn(train_bits: np.ndarray, y: np.ndarray, test_bits: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The documented rule, literally: sort by (distance, index), vote, smallest label wins."""
    dist = (test_bits[:, None, :] != train_bits[None, :, :]).sum(axis=2)
    classes = np.unique(y)
    preds, nbrs, vote_tie, boundary = [], [], [], []
    for row in dist:
        order = np.lexsort((np.arange(row.size), row))[:k]
        counts = np.array([(y[order] == c).sum() for c in classes])
        preds.append(classes[np.argmax(counts)])
        vote_tie.append((counts == counts.max()).sum() > 1)
        boundary.append((row <= row[order[-1]]).sum() > k)
        nbrs.append(order)
    return np.array(preds), np.array(nbrs), np.array(vote_tie), np.array(boundary)


# ---------------------------------------------------------------- bits


def test_check_packed_rejects_bad_inputs() -> None:
    good = np.packbits(np.ones((3, 10), dtype=bool), axis=1)
    good[:, -1] &= 0b11000000  # padding zero
    assert check_packed(good, 10, "codes").shape == (3, 2)
    with pytest.raises(ValueError, match="int64"):
        check_packed(good.astype(np.int64), 10, "codes")
    with pytest.raises(ValueError, match=r"3 bytes per code.*n_bits=10.*2 bytes"):
        check_packed(np.zeros((3, 3), np.uint8), 10, "codes")
    with pytest.raises(ValueError, match="padding"):
        check_packed(np.full((3, 2), 0xFF, np.uint8), 10, "codes")
    with pytest.raises(ValueError, match=r"\(6,\)"):
        check_packed(np.zeros(6, np.uint8), 10, "codes")


@pytest.mark.parametrize("n_bits", [1, 7, 8, 13, 100])
def test_popcount_and_unpack_roundtrip(n_bits: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bits, "CHUNK_BYTES", 64)  # many chunks
    code_bits, _ = _random_codes(n_bits, 300, n_bits)
    packed = np.packbits(code_bits, axis=1)
    np.testing.assert_array_equal(popcount(packed), code_bits.sum(axis=1))
    np.testing.assert_array_equal(unpack_rows(packed, n_bits, np.float32), code_bits.astype(np.float32))


@pytest.mark.parametrize("n_bits", [5, 16, 70])
def test_drop_constant_matches_numpy_columns(n_bits: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bits, "CHUNK_BYTES", 100)
    code_bits, _ = _random_codes(3, 500, n_bits)
    code_bits[:, 0] = False
    code_bits[:400, 2] = True  # constant in train, varies in test: must be kept
    code_bits[400:, 2] = code_bits[400:, 4]
    train, test = code_bits[:400], code_bits[400:]
    both = np.vstack([train, test])
    keep = both.min(axis=0) != both.max(axis=0)
    np.testing.assert_array_equal(varying_bits((np.packbits(train, axis=1), np.packbits(test, axis=1)),
                                               n_bits), keep)
    assert keep[2] and not keep[0] and not keep[1] and not keep[3]
    p_train, p_test, used = drop_constant_bits(np.packbits(train, axis=1), np.packbits(test, axis=1), n_bits)
    assert used == keep.sum()
    np.testing.assert_array_equal(p_train, np.packbits(train[:, keep], axis=1))
    np.testing.assert_array_equal(p_test, np.packbits(test[:, keep], axis=1))


def test_drop_constant_without_constants_returns_inputs_and_handles_all_constant() -> None:
    train = np.packbits(np.eye(8, dtype=bool), axis=1)
    test = train[::-1].copy()
    out_train, out_test, used = drop_constant_bits(train, test, 8)
    assert out_train is train and out_test is test and used == 8
    same = np.packbits(np.ones((4, 12), dtype=bool), axis=1)
    out_train, out_test, used = drop_constant_bits(same, same, 12)
    assert used == 0 and out_train.shape == (4, 0) and out_test.shape == (4, 0)


# ---------------------------------------------------------------- redundancy


@pytest.mark.parametrize("n_bits", [3, 12, 64, 200])
def test_redundancy_matches_python_set(n_bits: int) -> None:
    code_bits, _ = _random_codes(n_bits, 700, n_bits, flip=0.02)
    packed = np.packbits(code_bits, axis=1)
    distinct = len({row.tobytes() for row in packed})
    assert n_unique_rows(packed) == distinct
    assert redundancy_ratio(packed) == (700 - distinct) / 700


def test_redundancy_on_real_codes_and_edge_cases(digits: dict) -> None:
    for split in ("train_codes", "test_codes"):
        packed = digits[split]
        assert redundancy_ratio(packed) == (len(packed) - len({r.tobytes() for r in packed})) / len(packed)
    assert redundancy_ratio(np.zeros((1, 3), np.uint8)) == 0.0
    assert redundancy_ratio(np.zeros((5, 3), np.uint8)) == 4 / 5
    assert redundancy_ratio(np.zeros((5, 0), np.uint8)) == 4 / 5
    with pytest.raises(ValueError, match="0 codes"):
        redundancy_ratio(np.zeros((0, 3), np.uint8))


# ---------------------------------------------------------------- k-NN


@pytest.mark.parametrize("n_bits", [5, 64, 100, 130, 260, 600])
def test_hamming_distances_exact(n_bits: int) -> None:
    rng = np.random.default_rng(n_bits)
    a_bits, b_bits = rng.random((40, n_bits)) < 0.5, rng.random((70, n_bits)) < 0.3
    expected = (a_bits[:, None, :] != b_bits[None, :, :]).sum(axis=2)
    got = hamming_distances(np.packbits(a_bits, axis=1), np.packbits(b_bits, axis=1))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("n_bits,flip,k", [(6, 0.3, 9), (40, 0.2, 9), (97, 0.1, 5), (300, 0.3, 1)])
def test_knn_matches_brute_force_rule_exactly(n_bits: int, flip: float, k: int) -> None:
    code_bits, labels = _random_codes(n_bits, 900, n_bits, flip=flip)
    train, test = np.packbits(code_bits[:700], axis=1), np.packbits(code_bits[700:], axis=1)
    pred, nbrs, vote_tie, boundary = _brute_knn(code_bits[:700], labels[:700], code_bits[700:], k)
    for device in (None, "cpu"):
        result = knn_predict(train, labels[:700], test, k, n_bits=n_bits, device=device)
        np.testing.assert_array_equal(result.predictions, pred)
        np.testing.assert_array_equal(result.neighbors, nbrs)
        np.testing.assert_array_equal(result.vote_tie, vote_tie)
        np.testing.assert_array_equal(result.boundary_tie, boundary)
        dist = (code_bits[700:, None, :] != code_bits[None, :700, :]).sum(axis=2)
        np.testing.assert_array_equal(result.distances, np.sort(dist, axis=1)[:, :k])
    if n_bits == 6:  # 64 possible codes for 700 points: huge tie sets
        assert boundary.mean() > 0.9


def test_knn_candidate_escalation_and_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny candidate lists and blocks force the re-search and chunk loops."""
    monkeypatch.setattr(knn, "EXTRA", 1)
    monkeypatch.setattr(knn, "BLOCK_BYTES", 2000)
    code_bits, labels = _random_codes(11, 600, 20, flip=0.25)
    train, test = np.packbits(code_bits[:450], axis=1), np.packbits(code_bits[450:], axis=1)
    pred, nbrs, _, boundary = _brute_knn(code_bits[:450], labels[:450], code_bits[450:], 9)
    result = knn_predict(train, labels[:450], test, 9)
    np.testing.assert_array_equal(result.neighbors, nbrs)
    np.testing.assert_array_equal(result.predictions, pred)
    np.testing.assert_array_equal(result.boundary_tie, boundary)


def test_knn_agrees_with_sklearn_except_on_ties(digits: dict) -> None:
    cases = [(digits["bits"][:1200], digits["train_labels"], digits["bits"][1200:], digits["test_labels"])]
    code_bits, labels = _random_codes(5, 1000, 30, flip=0.25)
    cases.append((code_bits[:800], labels[:800], code_bits[800:], labels[800:]))
    n_flagged = 0
    for train_bits, y_train, test_bits, _ in cases:
        ref = KNeighborsClassifier(9, metric="hamming", algorithm="brute").fit(train_bits, y_train)
        ref_pred = ref.predict(test_bits)
        result = knn_predict(np.packbits(train_bits, axis=1), y_train, np.packbits(test_bits, axis=1), 9)
        flagged = result.vote_tie | result.boundary_tie
        disagree = result.predictions != ref_pred
        assert not np.any(disagree & ~flagged), "a prediction differs from sklearn without a tie"
        # stronger: same neighbour set => same vote rule, so only boundary ties can differ
        assert not np.any(disagree & ~result.boundary_tie)
        n_flagged += int(flagged.sum())
    assert n_flagged > 0  # the comparison did exercise tie handling


def test_knn_vote_tie_goes_to_smallest_label() -> None:
    train = np.packbits(np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 1, 1]], dtype=bool), axis=1)
    test = np.packbits(np.array([[0, 0, 0, 0]], dtype=bool), axis=1)
    result = knn_predict(train, np.array([7, 3, 3]), test, 2)
    assert result.predictions.tolist() == [3] and result.vote_tie.tolist() == [True]
    assert result.boundary_tie.tolist() == [False]
    # distance 1 to both of the first two: k=1 keeps the lower index (label 7)
    result = knn_predict(train, np.array([7, 3, 3]), test, 1)
    assert result.predictions.tolist() == [7] and result.boundary_tie.tolist() == [True]


def test_knn_rejects_k_larger_than_train() -> None:
    codes = np.zeros((3, 1), np.uint8)
    with pytest.raises(ValueError, match="k=4"):
        knn_neighbors(codes, codes, 4)


# ---------------------------------------------------------------- K-Means


def test_cluster_mappings_hand_computed() -> None:
    clusters = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    labels = np.array([5, 5, 6, 6, 6, 6, 6, 6, 5, 7])
    # majority: cluster0 -> 5 (2), cluster1 -> 6 (2), cluster2 -> 6 (3): 7/10
    assert majority_accuracy(clusters, labels) == 0.7
    # one-to-one: best is 0->5 (2), 1->? , 2->6 (3); 1 can take 7 (0): 5/10
    assert hungarian_accuracy(clusters, labels) == 0.5
    # more clusters than labels: unmatched cluster counts as wrong
    assert hungarian_accuracy(np.array([0, 1, 2, 2]), np.array([1, 1, 1, 2])) == 0.5
    assert majority_accuracy(np.array([0, 1, 2, 2]), np.array([1, 1, 1, 2])) == 0.75
    # majority ties pick either label: the count is the same
    assert majority_accuracy(np.array([0, 0]), np.array([4, 3])) == 0.5


def test_kmeans_equals_sklearn_reference(digits: dict) -> None:
    """The dense path is scikit-learn's KMeans(10, n_init=10, random_state=9) itself."""
    for split, labels in (("train_codes", "train_labels"), ("test_codes", "test_labels")):
        packed, y = digits[split], digits[labels]
        dense = _unpack(packed, 96).astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = KMeans(n_clusters=10, n_init=10, random_state=9).fit(dense).labels_
        np.testing.assert_array_equal(kmeans_clusters(packed, 96, 10, seed=9), ref)
        assert kmeans_accuracy(packed, 96, y, 10, seed=9) == (majority_accuracy(ref, y), hungarian_accuracy(ref, y))


def _nearest_own_mean(code_bits: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Whether every code is nearest to the mean of its own cluster (a Lloyd fixed point)."""
    ids = np.unique(clusters)
    centers = np.stack([code_bits[clusters == c].mean(axis=0) for c in ids])
    dist = ((code_bits[:, None, :] - centers[None]) ** 2).sum(axis=2)
    own = dist[np.arange(len(clusters)), np.searchsorted(ids, clusters)]
    return own <= dist.min(axis=1) + 1e-6


def test_streaming_kmeans_recovers_clean_clusters() -> None:
    code_bits, labels = _random_codes(21, 1500, 96, n_classes=6, flip=0.03, duplicates=False)
    packed = np.packbits(code_bits, axis=1)
    clusters = kmeans_clusters(packed, 96, 6, seed=9, max_dense_bytes=96 * 8 * 200)  # streaming
    assert hungarian_accuracy(clusters, labels) == majority_accuracy(clusters, labels) == 1.0
    assert _nearest_own_mean(code_bits, clusters).all()
    assert hungarian_accuracy(kmeans_clusters(packed, 96, 6, seed=9), labels) == 1.0  # dense


def test_kmeans_degenerate_inputs() -> None:
    y = np.array([1, 1, 2, 3])
    assert kmeans_accuracy(np.zeros((4, 0), np.uint8), 0, y, 3) == (0.5, 0.5)
    assert kmeans_accuracy(np.zeros((4, 1), np.uint8), 8, y, 1) == (0.5, 0.5)
    assert kmeans_accuracy(np.zeros((1, 1), np.uint8), 8, y[:1], 10) == (1.0, 1.0)


# ---------------------------------------------------------------- logistic regression


def _reference_logreg(mode: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    base = LogisticRegression(random_state=9)
    model = {"ovo": OneVsOneClassifier(base), "ovr": OneVsRestClassifier(base), "multinomial": base}[mode]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter=100, as in the paper
        return model.fit(x, y).predict(x_test)


@pytest.mark.parametrize("mode", ["ovo", "ovr", "multinomial"])
def test_logreg_dense_is_sklearn(digits: dict, mode: str) -> None:
    """Dense codes: the estimator is scikit-learn's, so predictions are identical."""
    train_bits, y, test_bits = digits["bits"][:1200], digits["train_labels"], digits["bits"][1200:]
    got = logreg_predict(np.packbits(train_bits, axis=1), y, np.packbits(test_bits, axis=1), 96, mode=mode)
    np.testing.assert_array_equal(got, _reference_logreg(mode, train_bits.astype(float), y, test_bits))


@pytest.mark.parametrize("mode", ["ovo", "ovr", "multinomial"])
def test_logreg_row_space_is_the_same_optimum(mode: str) -> None:
    """Fewer codes than bits: row-space coordinates are an exact reparametrization, so a tightly
    converged fit on them predicts as a tightly converged fit on the bits; at the defaults they
    agree with the scikit-learn reference within half a point. Duplicate codes and a constant
    unit make the Gram matrix singular."""
    code_bits, labels = _random_codes(3, 800, 2000, n_classes=10, flip=0.45)
    train_bits, y, test_bits, y_test = code_bits[:300], labels[:300], code_bits[300:], labels[300:]
    train, test = np.packbits(train_bits, axis=1), np.packbits(test_bits, axis=1)
    space, features = logreg.row_space(train)
    np.testing.assert_allclose(features @ features.T, train_bits @ train_bits.T.astype(float), atol=1e-6)
    np.testing.assert_allclose(space.features(train), features, atol=1e-6)
    tight = {"C": 1.0, "max_iter": 10000}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_bits = logreg.make_estimator(mode, 9, **tight).set_params(**_tol(mode)).fit(train_bits.astype(float), y)
        on_span = logreg.make_estimator(mode, 9, **tight).set_params(**_tol(mode)).fit(features, y)
    assert np.mean(on_bits.predict(test_bits.astype(float)) == on_span.predict(space.features(test))) >= 0.995
    auto = logreg_fit(train, y, 2000, mode=mode, max_dense_bytes=32 * 300 * 300)  # dense does not fit
    assert auto.space is not None
    ref = np.mean(_reference_logreg(mode, train_bits.astype(float), y, test_bits) == y_test)
    assert abs(np.mean(auto.predict(test) == y_test) - ref) <= 0.005 + 1e-12


def _objective(x: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> float:
    """scikit-learn's lbfgs objective at C = 1, by its definition: mean log-loss (binomial with
    0/1 ``y`` for one row of weights, else multinomial) + ||coef||^2 / (2 n)."""
    z = x @ coef.T + intercept
    if coef.shape[0] == 1:
        loss = np.logaddexp(0, z[:, 0]) - y * z[:, 0]
    else:
        loss = np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]
    return float(loss.mean() + 0.5 / len(y) * np.sum(coef * coef))


def _tol(mode: str) -> dict:
    key = "tol" if mode == "multinomial" else "estimator__tol"
    return {key: 1e-8}


@pytest.mark.parametrize("mode", ["ovo", "ovr", "multinomial"])
def test_logreg_streaming_is_sklearn(digits: dict, mode: str, tmp_path: Path) -> None:
    """Neither dense nor row space fits: scikit-learn's objective and L-BFGS-B options, each
    evaluation summed over 100-row chunks (memory-mapped codes here), fit the same weights as
    scikit-learn in memory (to rounding) and predict the same labels (to rounding: a test code
    on the boundary may flip)."""
    train_bits, y, test_bits = digits["bits"][:1200], digits["train_labels"], digits["bits"][1200:]
    packed = np.packbits(train_bits, axis=1)
    mm = np.lib.format.open_memmap(tmp_path / "train.npy", mode="w+", dtype=np.uint8, shape=packed.shape)
    mm[:] = packed
    mm.flush()
    model = logreg_fit(np.load(tmp_path / "train.npy", mmap_mode="r"), y, 96, mode=mode,
                       max_dense_bytes=(96 * 9 + 12) * 100)
    assert model.space is None and isinstance(model.estimator, logreg.StreamedFit)
    assert model.estimator.evaluations > 0
    ref = logreg.make_estimator(mode, 9, 1.0, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(train_bits.astype(float), y)
    # the same iterates up to summation order; in the objective's flat directions (duplicate and
    # constant bits) rounding moves the weights apart (by up to 0.15 at 100 iterations) and the value
    # where max_iter stops an unconverged fit (by up to 9e-4 relative, lower as often as higher)
    parts = ref.estimators_ if mode != "multinomial" else [ref]
    coef, intercept = model.estimator.coef, model.estimator.intercept
    x = train_bits.astype(float)
    if mode == "multinomial":
        assert _objective(x, y, coef, intercept) == pytest.approx(_objective(x, y, ref.coef_, ref.intercept_), rel=1e-3)
    else:
        pairs = [(i, j) for i in range(10) for j in range(i + 1, 10)] if mode == "ovo" else range(10)
        for k, (e, pair) in enumerate(zip(parts, pairs, strict=True)):
            rows = np.isin(y, pair) if mode == "ovo" else np.ones(len(y), bool)
            t = (y[rows] == (pair[1] if mode == "ovo" else pair)).astype(int)
            ours = _objective(x[rows], t, coef[k:k + 1], intercept[k:k + 1])
            assert ours == pytest.approx(_objective(x[rows], t, e.coef_, e.intercept_), rel=1e-3), k
    got = model.predict(np.packbits(test_bits, axis=1))
    ref_pred = _reference_logreg(mode, train_bits.astype(float), y, test_bits)
    assert np.mean(got == ref_pred) >= 0.99  # all but 1 of 597 (ovr); other chunk sizes: all
    assert abs(np.mean(got == digits["test_labels"]) - np.mean(ref_pred == digits["test_labels"])) <= 0.005


def test_logreg_streaming_two_classes_is_one_problem(digits: dict) -> None:
    """Two classes: one binary problem, classes[1] positive, in every mode (as scikit-learn)."""
    keep = np.isin(digits["train_labels"], (3, 8))
    train_bits, y = digits["bits"][:1200][keep], digits["train_labels"][keep]
    packed = np.packbits(train_bits, axis=1)
    ref = _reference_logreg("ovr", train_bits.astype(float), y, digits["bits"][1200:])
    for mode in ("ovo", "ovr", "multinomial"):
        model = logreg_fit(packed, y, 96, mode=mode, max_dense_bytes=96 * 8 * 50)
        assert model.estimator.coef.shape == (1, 96)
        np.testing.assert_array_equal(model.predict(np.packbits(digits["bits"][1200:], axis=1)), ref)


def test_logreg_streaming_agrees_on_real_codes() -> None:
    """Real codes beyond the bound, sklearn backend: MNIST width-100 MLP codes (1,000 train, 500
    test; dense features over the bound) and tiny-CNN codes of MNIST (500 x 1,960 bits; neither
    dense nor the row-space Gram fits): the streamed fit's test accuracy is within 0.01 of
    scikit-learn's in-memory LogisticRegression (equal when measured: gap 0.000 on both)."""
    from tests.test_torch_backend import HAVE_MNIST, _cnn_bits, _mlp_bits, _split
    from tests.test_knn_ties import _mnist
    if not HAVE_MNIST:
        pytest.skip("no MNIST in the shared datasets")
    x, y = _mnist(1500)
    xs, ys = _mnist(700, offset=2000)
    sets = (_split(_mlp_bits(x, y, (100,), 4, 20), y, 1000, "mnist(100,)@20"),
            _split(_cnn_bits(xs, ys, 2, 60), ys, 500, "cnn@60"))
    for s in sets:
        args = (s["train"], s["y_train"], s["test"], s["y_test"], s["n_bits"])
        budget = s["train"].shape[0] * s["n_bits"] * 2  # a quarter of the dense features (and < 32 n^2)
        assert budget < 32 * s["train"].shape[0] ** 2
        model = logreg_fit(s["train"], s["y_train"], s["n_bits"], max_dense_bytes=budget)
        assert model.space is None and isinstance(model.estimator, logreg.StreamedFit), s["name"]
        streamed = float(np.mean(model.predict(s["test"]) == s["y_test"]))
        ref = logreg.logreg_accuracy(*args)  # in memory: dense features under the default bound
        assert abs(streamed - ref) <= 0.01 and ref < 0.95, (s["name"], streamed, ref)


def test_logreg_row_space_of_identical_codes_fits_intercepts() -> None:
    codes = np.zeros((6, 2), np.uint8)  # 16 bits, all 0: the span is {0}
    model = logreg_fit(codes, np.array([0, 0, 0, 1, 1, 2]), 16, mode="ovr", row_space_=True)
    assert model.predict(codes).tolist() == [0] * 6


def test_logreg_degenerate_and_bad_mode() -> None:
    codes = np.packbits(np.array([[1, 0], [0, 1], [1, 1]], dtype=bool), axis=1)
    assert logreg_predict(codes, np.array([4, 4, 4]), codes, 2).tolist() == [4, 4, 4]
    empty = np.zeros((3, 0), np.uint8)
    assert logreg_predict(empty, np.array([1, 2, 2]), empty, 0).tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="metrics.logreg_mode='softmax'"):
        logreg_predict(codes, np.array([0, 1, 1]), codes, 2, mode="softmax")


# ---------------------------------------------------------------- encoding_metrics


def _metrics(d: dict, **kwargs: object) -> dict[str, float]:
    return encoding_metrics(d["train_codes"], d["train_labels"], d["test_codes"], d["test_labels"],
                            d["n_bits"], **kwargs)


def test_encoding_metrics_names_and_values(digits: dict) -> None:
    out = _metrics(digits)
    assert out.pop("backend") == "sklearn"  # auto on the CPU; the record of which backend ran comes last
    assert tuple(out) == METRIC_NAMES
    train, test, used = drop_constant_bits(digits["train_codes"], digits["test_codes"], 96)
    assert out["n_bits"] == 96 and out["n_bits_used"] == used < 96
    assert out["train/n"] == 1200 and out["test/n"] == 597
    assert out["train/redundancy"] == redundancy_ratio(train)
    assert (out["test/kmeans_acc"], out["test/kmeans_hungarian_acc"]) == kmeans_accuracy(
        test, used, digits["test_labels"], 10)
    result = knn_predict(train, digits["train_labels"], test, 9)
    assert out["test/knn_acc_index"] == np.mean(result.predictions == digits["test_labels"])
    assert out["test/knn_acc"] == np.mean(result.win_probability(digits["test_labels"]))
    assert out["test/knn_boundary_ties"] == result.boundary_tie.sum()
    assert out["test/knn_tie_affected"] == result.tie_affected().mean()
    assert 0.5 < out["test/knn_acc"] <= 1 and 0.5 < out["test/logreg_acc"] <= 1
    json.dumps(out)  # plain Python numbers
    kept = _metrics(digits, drop_constant=False)
    assert kept["n_bits_used"] == 96
    for name in ("train/redundancy", "test/redundancy", "test/knn_acc", "test/knn_boundary_ties"):
        assert kept[name] == out[name]
    assert tuple(_metrics(digits, which=("redundancy", "knn"))) == (
        "n_bits", "n_bits_used", "train/n", "test/n", "train/redundancy", "test/redundancy",
        "test/knn_acc", "test/knn_acc_index", "test/knn_vote_ties", "test/knn_boundary_ties",
        "test/knn_tie_affected", "backend")


def test_dead_network_skips_the_families_that_need_bits() -> None:
    same = np.packbits(np.ones((12, 10), dtype=bool), axis=1)
    y_train, y_test = np.array([0] * 7 + [1] * 5), np.array([1] * 8 + [0] * 4)
    out = encoding_metrics(same, y_train, same, y_test, 10)
    assert out == {"n_bits": 10, "n_bits_used": 0, "train/n": 12, "test/n": 12,
                   "train/redundancy": 11 / 12, "test/redundancy": 11 / 12, "dead_network": True, "backend": "sklearn"}
    kept = encoding_metrics(same, y_train, same, y_test, 10, drop_constant=False)
    assert "dead_network" not in kept and kept["n_bits_used"] == 10
    assert kept["train/kmeans_acc"] == kept["train/kmeans_hungarian_acc"] == 7 / 12  # one distinct code
    assert kept["test/knn_boundary_ties"] == 12  # 12 training codes at distance 0 for k=9
    assert kept["test/knn_acc_index"] == 4 / 12  # the 9 lowest-index training codes: 7 zeros, 2 ones
    # random tie-breaking: 9 of the 12 (7 zeros, 5 ones) drawn; the vote is for 1 iff >= 5 ones
    p_one = 35 / 220  # all 5 ones among the 9: C(5, 5) C(7, 4) / C(12, 9)
    assert kept["test/knn_acc"] == pytest.approx((8 * p_one + 4 * (1 - p_one)) / 12)
    assert kept["test/logreg_acc"] == 4 / 12  # intercepts only: the majority class 0
    one_class = encoding_metrics(same, np.zeros(12, int), same, np.zeros(12, int), 10, drop_constant=False)
    assert one_class["test/knn_acc"] == one_class["test/logreg_acc"] == one_class["test/kmeans_acc"] == 1.0
    single = np.packbits(np.array([[1, 0, 1]], dtype=bool), axis=1)
    out = encoding_metrics(single, np.array([3]), single, np.array([3]), 3, knn_k=1, drop_constant=False)
    assert out["train/redundancy"] == 0.0 and out["test/knn_acc"] == 1.0


@pytest.mark.parametrize("change,match", [
    ({"knn_k": 1201}, "knn_k=1201"),
    ({"knn_k": 0}, "knn_k=0"),
    ({"n_bits": 90}, "n_bits=90"),
    ({"test_codes": np.zeros((597, 11), np.uint8)}, "test_codes: 11 bytes"),
    ({"train_labels": np.zeros(1199, int)}, "train_labels: 1199 labels"),
    ({"test_labels": np.zeros(597)}, "test_labels: dtype float64"),
    ({"logreg_mode": "softmax"}, "logreg_mode='softmax'"),
    ({"which": ("redundancy", "svm")}, "'svm'"),
    ({"train_codes": np.zeros((0, 12), np.uint8), "train_labels": np.zeros(0, int)}, "train_codes: 0 codes"),
    ({"device": "nodevice"}, "device='nodevice'"),
])
def test_encoding_metrics_rejects_bad_inputs(digits: dict, change: dict, match: str) -> None:
    kwargs = {key: digits[key] for key in ("train_codes", "train_labels", "test_codes", "test_labels",
                                           "n_bits")}
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        encoding_metrics(**kwargs)


# ---------------------------------------------------------------- evaluate CLI


def test_evaluate_main_writes_json_beside_codes(digits: dict, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "epoch=0003.npz"
    arrays = {key: digits[key] for key in ("train_codes", "test_codes", "train_labels", "test_labels")}
    np.savez(path, **arrays, n_bits=np.int64(96), epoch=np.int64(3))  # unknown keys are ignored
    assert evaluate.main([str(path), "--k", "5"]) == 0
    written = json.loads((tmp_path / "epoch=0003.metrics.json").read_text())
    paper = _metrics(digits, knn_k=5)
    assert {k: written[k] for k in paper} == pytest.approx(paper)  # plus any other family the file allows
    assert "test/knn_acc" in capsys.readouterr().out
    out = tmp_path / "custom.json"
    assert evaluate.main([str(path), "--no-drop-constant", "--json", str(out), "--which", "redundancy"]) == 0
    assert json.loads(out.read_text())["n_bits_used"] == 96
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    np.savez(tmp_path / "bad.npz", train_codes=digits["train_codes"])
    with pytest.raises(SystemExit) as exc:
        evaluate.main([str(tmp_path / "bad.npz")])
    assert exc.value.code == 2
    assert "missing key" in capsys.readouterr().err


def test_evaluate_module_runs_as_script(tmp_path: Path) -> None:
    code_bits, labels = _random_codes(2, 300, 24)
    packed = np.packbits(code_bits, axis=1)
    path = tmp_path / "codes.npz"
    np.savez(path, train_codes=packed[:200], test_codes=packed[200:], train_labels=labels[:200],
             test_labels=labels[200:], n_bits=24)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "activation_hash.evaluate", str(path)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    written = json.loads((tmp_path / "codes.metrics.json").read_text())
    assert tuple(written)[:len(METRIC_NAMES)] == METRIC_NAMES and written["n_bits_used"] == 22


def test_evaluate_errors_name_the_problem(digits: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = tmp_path / "notes.npz"
    text.write_text("not codes\n")
    good = tmp_path / "good.npz"
    np.savez(good, **{key: digits[key] for key in ("train_codes", "test_codes", "train_labels", "test_labels")},
             n_bits=np.int64(96))
    truncated = tmp_path / "cut.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for path, message in ((text, "is not an npz file"), (truncated, str(truncated)), (tmp_path, "is a directory"),
                          (tmp_path / "absent.npz", "no such file")):
        with pytest.raises(SystemExit) as exc:
            evaluate.main([str(path)])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_evaluate_picks_up_a_new_family(digits: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registered family whose needs the file meets is computed without editing evaluate."""
    from activation_hash.metrics import registry

    def compute(codes: CodeSet) -> dict:
        return {"test/penultimate_mean": float(codes.extras["test/penultimate"].mean())}

    family = registry.MetricFamily("penultimate_mean", ("test/penultimate_mean",), compute, needs=("penultimate",))
    monkeypatch.setitem(registry._REGISTRY, family.name, family)
    path = tmp_path / "codes.npz"
    arrays = {key: digits[key] for key in ("train_codes", "test_codes", "train_labels", "test_labels")}
    np.savez(path, **arrays, n_bits=np.int64(96), **{"train/penultimate": np.ones((1200, 3), np.float32),
                                                     "test/penultimate": np.full((597, 3), 2, np.float32)})
    assert evaluate.main([str(path), "--which", "redundancy,penultimate_mean"]) == 0
    assert json.loads(path.with_suffix(".metrics.json").read_text())["test/penultimate_mean"] == 2.0
    assert "penultimate_mean" in evaluate.default_which({"train/penultimate", "test/penultimate"})
    assert "penultimate_mean" not in evaluate.default_which(set())


@pytest.mark.parametrize("which,options,match", [
    (["foo"], {}, r"metrics.which=\[foo\]: unknown metric family 'foo'; registered: \["),
    (WHICH, {"logreg_mode": "bogus"}, "metrics.logreg_mode='bogus': allowed: ovo, ovr, multinomial"),
    (WHICH, {"knn_k": "abc"}, "metrics.knn_k='abc': must be an integer"),
    (WHICH, {"knn_k": 3.5}, "metrics.knn_k=3.5: must be an integer"),
    (WHICH, {"knn_k": 0}, "metrics.knn_k=0: must be an integer >= 1"),
    (WHICH, {"kmeans_seed": -1}, "metrics.kmeans_seed=-1"),
    (WHICH, {"kmeans_n_init": True}, "metrics.kmeans_n_init=True: must be an integer"),
    (WHICH, {"drop_constant": "maybe"}, "metrics.drop_constant='maybe': must be true or false"),
    (WHICH, {"logreg_seed": None}, "metrics.logreg_seed=null"),
    (WHICH, {"plugins": ["no_such_module_xyz"]}, "metrics.plugins: cannot import 'no_such_module_xyz'"),
    (WHICH, {"n_threads": 0}, "metrics.n_threads=0"),
])
def test_validate_options_one_line_errors(which: tuple, options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate_options(which, options)


def test_validate_options_resolves_defaults() -> None:
    resolved = validate_options(WHICH, {"knn_k": 5, "unrelated": 1})
    assert resolved["knn"] == {"knn_k": 5}
    assert resolved["logreg"] == {"logreg_mode": "ovo", "logreg_seed": 9, "max_dense_bytes": 2**30}
