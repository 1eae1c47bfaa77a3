"""Codes beyond the memory budget stream in blocks with the in-memory results, exactly:
redundancy (numpy and torch hashing, collisions verified byte for byte), K-NN (the faiss path and
the torch GEMM path, one side in blocks) and torch retrieval (database in blocks), on random codes
with many ties and on real MNIST MLP / tiny-CNN codes, from memory-mapped files. Peak memory under
a small budget: tests/test_max_ram.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from activation_hash.metrics import encoding_metrics
from activation_hash.metrics import torch_backend as tb
from activation_hash.metrics.bits import popcount
from activation_hash.metrics.families import knn as knn_family
from activation_hash.metrics.families.redundancy import count_verified, n_unique_rows, n_unique_streamed
from activation_hash.metrics.retrieval import distance_histograms
from tests.test_torch_backend import HAVE_MNIST, _cnn_bits, _mlp_bits, _mnist

KNN_FIELDS = ("predictions", "neighbors", "distances", "closer", "at_kth", "vote_tie", "boundary_tie")


def _random(n: int, bits: int, p: float, seed: int) -> np.ndarray:
    return np.packbits(np.random.default_rng(seed).random((n, bits)) < p, axis=1)


def _memmapped(tmp_path: Path, name: str, a: np.ndarray) -> np.ndarray:
    np.save(tmp_path / f"{name}.npy", a)
    return np.load(tmp_path / f"{name}.npy", mmap_mode="r")


def _real_sets() -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]]:
    """MNIST MLP codes (width 48, 20 steps: many repeated codes) and tiny-CNN codes (1,960 bits >
    rows), each split 600 / 300."""
    if not HAVE_MNIST:
        pytest.skip("no MNIST in the shared datasets")
    x, y = _mnist(900)
    out = []
    for bits in (_mlp_bits(x, y, (48,), 0, 20), _cnn_bits(x, y, 0, 10)):
        packed = np.packbits(bits, axis=1)
        out.append((packed[:600], y[:600], packed[600:], y[600:], bits.shape[1]))
    return out


@pytest.mark.parametrize("bits,p", [(6, 0.3), (40, 0.1), (300, 0.3)])
def test_redundancy_streamed_equals_sort(bits: int, p: float) -> None:
    codes = _random(3000, bits, p, bits)
    ref = n_unique_rows(codes)
    assert ref < codes.shape[0] or bits == 300  # repeated codes where the width allows them
    assert n_unique_streamed(codes, chunk_bytes=4096) == ref
    assert tb.n_unique_rows(codes, "cpu", max_bytes=64) == ref          # hashed on the torch device
    assert tb.n_unique_rows(codes, "cpu") == ref                        # torch.unique, resident


def test_redundancy_verification_survives_hash_collisions() -> None:
    """A deliberately poor hash (popcount mod 3, a function of the row as a hash must be) puts many
    distinct codes in one group: the byte comparison still counts every distinct code."""
    codes = _random(2000, 12, 0.4, 1)
    group = popcount(codes) % 3
    _, inverse, counts = np.unique(group, return_inverse=True, return_counts=True)
    assert count_verified(codes, inverse.reshape(-1), counts, 4096) == n_unique_rows(codes)
    one = np.zeros(codes.shape[0], dtype=np.int64)
    assert count_verified(codes, one, np.array([codes.shape[0]]), 4096) == n_unique_rows(codes)


@pytest.mark.parametrize("device", [None, "cpu"])  # faiss path, torch GEMM path
@pytest.mark.parametrize("bits,k", [(10, 9), (64, 1), (200, 15)])
def test_knn_streamed_equals_in_memory(tmp_path: Path, device, bits: int, k: int) -> None:
    train, test = _random(900, bits, 0.3, bits), _random(400, bits, 0.3, bits + 1)
    y = np.random.default_rng(bits).integers(0, 6, 900)
    ref = knn_family.knn_predict(train, y, test, k, n_bits=bits, device=device)
    got = knn_family.knn_predict(_memmapped(tmp_path, "train", train), y, _memmapped(tmp_path, "test", test), k,
                                 n_bits=bits, device=device, max_bytes=1, block_bytes=2**16)
    for name in KNN_FIELDS:
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
    assert ref.boundary_tie.any()  # ties exercised


def test_streamed_paths_never_read_the_codes_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """The streamed K-NN, retrieval and redundancy read at most a block of rows at a time."""
    train, test = _random(800, 64, 0.3, 3), _random(300, 64, 0.3, 4)
    y_train = np.random.default_rng(0).integers(0, 5, 800)
    y_test = np.random.default_rng(1).integers(0, 5, 300)

    class Guarded(np.ndarray):
        largest = 0

        def __getitem__(self, item):
            out = super().__getitem__(item)
            if isinstance(out, np.ndarray) and out.ndim == 2:
                Guarded.largest = max(Guarded.largest, out.shape[0])
            return out

    g_train, g_test = train.view(Guarded), test.view(Guarded)
    block = 2**13  # 8 KiB: at most 1,024 rows of 8 bytes in any block, fewer in most
    calls = {
        "knn faiss": lambda: knn_family.knn_predict(g_train, y_train, g_test, 9, n_bits=64, max_bytes=1,
                                                    block_bytes=block),
        "knn gemm": lambda: knn_family.knn_predict(g_train, y_train, g_test, 9, n_bits=64, device="cpu",
                                                   max_bytes=1, block_bytes=block),
        "retrieval": lambda: list(tb.distance_histograms(g_test, y_test, g_train, y_train, 64, device="cpu",
                                                         block_bytes=block, max_bytes=1)),
        "redundancy": lambda: tb.n_unique_rows(g_train, "cpu", max_bytes=2**12),  # chunks of >= 64 KiB
    }
    for name, call in calls.items():
        Guarded.largest = 0
        call()
        assert 0 < Guarded.largest < (800 if name == "redundancy" else 300), (name, Guarded.largest)


@pytest.mark.parametrize("bits", [8, 100])
def test_torch_retrieval_streamed_equals_numpy(bits: int) -> None:
    query, db = _random(300, bits, 0.3, 5), _random(700, bits, 0.3, 6)
    qy, dy = np.random.default_rng(0).integers(0, 5, 300), np.random.default_rng(1).integers(0, 5, 700)
    ref = list(distance_histograms(query, qy, db, dy, bits))
    got = list(tb.distance_histograms(query, qy, db, dy, bits, device="cpu", block_bytes=2**16, max_bytes=1))
    for i in (1, 2):
        np.testing.assert_array_equal(np.concatenate([b[i] for b in got]), np.concatenate([b[i] for b in ref]))


def test_real_codes_from_memmaps_equal_in_memory(tmp_path: Path) -> None:
    """Real codes read from memory-mapped files with streaming forced (a budget of 1 byte):
    redundancy (numpy and torch hashing), K-NN (faiss and GEMM paths) and torch retrieval equal
    the in-memory results exactly."""
    from activation_hash.metrics.retrieval import retrieval_metrics
    for i, (train, y_train, test, y_test, n_bits) in enumerate(_real_sets()):
        mm_train, mm_test = _memmapped(tmp_path, f"train{i}", train), _memmapped(tmp_path, f"test{i}", test)
        for codes, mm in ((train, mm_train), (test, mm_test)):
            ref = n_unique_rows(codes)
            assert n_unique_streamed(mm, chunk_bytes=4096) == ref
            assert tb.n_unique_rows(mm, "cpu", max_bytes=64) == ref
        assert n_unique_rows(train) < train.shape[0] or n_bits > 1000  # the MLP codes repeat
        for device in (None, "cpu"):
            ref = knn_family.knn_predict(train, y_train, test, 9, n_bits=n_bits, device=device)
            got = knn_family.knn_predict(mm_train, y_train, mm_test, 9, n_bits=n_bits, device=device,
                                         max_bytes=1, block_bytes=2**18)
            for name in KNN_FIELDS:
                np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
        ref = retrieval_metrics(test, y_test, train, y_train, n_bits)
        got = retrieval_metrics(mm_test, y_test, mm_train, y_train, n_bits, backend="torch", device="cpu",
                                block_bytes=2**18, max_bytes=1)
        assert got.n_no_relevant == ref.n_no_relevant  # means summed over other query chunks: equal to rounding
        assert got.map_at == pytest.approx(ref.map_at, rel=1e-12)
        for name in ("map", "map_optimistic", "map_pessimistic", "precision_r2", "precision_r2_nonempty"):
            assert getattr(got, name) == pytest.approx(getattr(ref, name), rel=1e-12), name
        np.testing.assert_allclose(got.pr_precision, ref.pr_precision, rtol=1e-12)


def test_family_options_reach_the_streamed_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through encoding_metrics with a 1 MiB budget, codes over a quarter of it (memory-mapped)
    take the streamed paths and give every redundancy, K-NN and retrieval metric of the
    unbounded run, on both backends."""
    from activation_hash.metrics.families import redundancy
    streamed: list[str] = []
    for module, name in ((knn_family, "_streamed_neighbors"), (knn_family, "_HostRows"),
                         (redundancy, "count_verified")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, _name=name, **k: streamed.append(_name) or _real(*a, **k))
    train, test = _random(2500, 1024, 0.3, 7), _random(800, 1024, 0.3, 8)   # 422 KB packed, 3.4 MB unpacked
    train[1000:1400] = train[:400]                                         # repeated codes
    y_train = np.random.default_rng(2).integers(0, 10, 2500)
    y_test = np.random.default_rng(3).integers(0, 10, 800)
    which = ("redundancy", "knn", "retrieval")
    opts = {"retrieval": {"bits": [16, "full"], "units": ["all", "balanced"], "baselines": []}}
    mm = (_memmapped(tmp_path, "train", train), _memmapped(tmp_path, "test", test))
    for backend in ("sklearn", "torch"):
        ref = encoding_metrics(train, y_train, test, y_test, 1024, which=which, backend=backend, **opts)
        assert not streamed
        got = encoding_metrics(mm[0], y_train, mm[1], y_test, 1024, which=which, backend=backend,
                               max_ram=2**20, **opts)
        assert {"count_verified", "_streamed_neighbors" if backend == "sklearn" else "_HostRows"} <= set(streamed)
        streamed.clear()
        assert ref["train/redundancy"] == pytest.approx(400 / 2500)
        assert got.keys() == ref.keys()
        for key, value in ref.items():
            exact = "redundancy" in key or "knn" in key or not isinstance(value, (float, list))
            if exact:
                assert got[key] == value, (backend, key)
            else:  # retrieval means summed over other query chunks: equal up to rounding
                np.testing.assert_allclose(got[key], value, rtol=1e-12, err_msg=f"{backend} {key}")


@pytest.mark.parametrize("mode", ["ovo", "ovr", "multinomial"])
def test_torch_logreg_streamed_is_the_in_memory_fit(tmp_path: Path, mode: str) -> None:
    """Beyond the budget the torch logistic regression runs the same L-BFGS with each evaluation
    streamed over packed chunks of memory-mapped codes: the predictions are the dense fit's."""
    import torch
    if not HAVE_MNIST:
        pytest.skip("no MNIST in the shared datasets")
    x, y = _mnist(700)
    bits = _mlp_bits(x, y, (40,), 0, 20)
    packed = np.packbits(bits, axis=1)
    train, test = _memmapped(tmp_path, "train", packed[:500]), _memmapped(tmp_path, "test", packed[500:])
    dense = [torch.from_numpy(bits[s].astype(np.float64)) for s in (slice(0, 500), slice(500, None))]
    ref = tb.logreg_predict(dense[0], y[:500], dense[1], mode=mode)
    got = tb.logreg_predict_streamed(train, y[:500], test, 40, mode=mode, max_bytes=2**20)  # 5 chunks of ~100 rows
    assert np.mean(got == ref) >= 0.99, np.mean(got == ref)   # the same optimum; iterates may round apart
    assert abs(np.mean(got == y[500:]) - np.mean(ref == y[500:])) <= 0.01
