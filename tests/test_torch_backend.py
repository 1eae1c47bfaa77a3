"""The torch backend (metrics.backend=torch, run here on the CPU) against the scikit-learn backend
on real code sets: MLP codes of MNIST and CIFAR-10 images and the codes of a tiny CNN.

- redundancy and K-NN (every K-NN metric, the tie expectation included): equal;
- K-Means accuracy (majority mapping, per split) against scikit-learn's
  KMeans(10, n_init=10, random_state=9): on the small sets here (300-1,000 rows, where
  scikit-learn's own accuracy moves by 0.03-0.12 across random_state) within the spread of
  scikit-learn's own runs under random_state 9 and 0..5, measured on the same set (at least
  0.03); the signed difference within 0.01 on average over all >= 10 sets; within 0.03 on an
  MNIST-size set (the 10,000 MNIST test images, width-100 MLP);
- logistic regression (one-vs-one, and ovr / multinomial on one set): within 0.01.
Skipped when the datasets are absent (tests/conftest.py: SHARED_DATASETS)."""

from __future__ import annotations

import pickle
import tarfile
import warnings
from functools import lru_cache

import numpy as np
import pytest

from activation_hash.metrics import drop_constant_bits, encoding_metrics, majority_accuracy, thread_limit
from activation_hash.metrics import torch_backend as tb
from tests.conftest import SHARED_DATASETS
from tests.test_knn_ties import MNIST_RAW, _mnist

CIFAR = SHARED_DATASETS / "cifar-10-python.tar.xz"
HAVE_MNIST = (MNIST_RAW / "train-images-idx3-ubyte.gz").exists()
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason="no MNIST in the shared datasets")


@lru_cache(maxsize=1)
def _cifar(n: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` images (flattened, [0, 1]) of the first batch file in the archive."""
    with tarfile.open(CIFAR, "r|*") as tar:
        for member in tar:
            if "_batch" in member.name and member.isfile():
                batch = pickle.load(tar.extractfile(member), encoding="bytes")
                x = np.asarray(batch[b"data"], dtype=np.float32)[:n] / 255.0
                return x, np.asarray(batch[b"labels"], dtype=np.int64)[:n]
    raise FileNotFoundError(CIFAR)


def _mlp_bits(x: np.ndarray, y: np.ndarray, widths: tuple[int, ...], seed: int, steps: int) -> np.ndarray:
    """Hidden-layer signs of a ReLU MLP after ``steps`` full-batch Adam steps (0 = at init)."""
    import torch
    torch.manual_seed(seed)
    layers, d = [], x.shape[1]
    for w in widths:
        layers += [torch.nn.Linear(d, w), torch.nn.ReLU()]
        d = w
    net = torch.nn.Sequential(*layers, torch.nn.Linear(d, 10))
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    bits, h = [], xt
    with torch.no_grad():
        for layer in net[:-1]:
            if isinstance(layer, torch.nn.ReLU):
                bits.append(h > 0)
            h = layer(h)
    return torch.cat(bits, 1).numpy()


def _cnn_bits(x: np.ndarray, y: np.ndarray, seed: int, steps: int) -> np.ndarray:
    """Signs of both ReLU layers of a tiny CNN on 1x28x28 images: 8x14x14 + 8x7x7 = 1,960 bits."""
    import torch
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(392, 10))
    xt, yt = torch.tensor(x, dtype=torch.float32).view(-1, 1, 28, 28), torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    with torch.no_grad():
        a = net[0](xt)
        b = net[2](torch.relu(a))
    return torch.cat([(a > 0).flatten(1), (b > 0).flatten(1)], 1).numpy()


def _split(bits: np.ndarray, y: np.ndarray, n_train: int, name: str) -> dict:
    packed = np.packbits(bits, axis=1)
    train, test, n_used = drop_constant_bits(packed[:n_train], packed[n_train:], bits.shape[1])
    return {"name": name, "train": train, "test": test, "y_train": y[:n_train], "y_test": y[n_train:],
            "n_bits": n_used}


@lru_cache(maxsize=1)
def code_sets() -> tuple[dict, ...]:
    """>= 10 real code sets: MNIST MLPs (1,500 rows), CIFAR-10 MLPs (1,500 rows, when the archive
    is present) and tiny-CNN codes of 700 MNIST images (more bits than rows: the kernel form)."""
    sets = []
    x, y = _mnist(1500)
    for seed, (widths, steps) in enumerate((((32,), 0), ((48,), 30), ((64,), 60), ((24, 24), 30),
                                            ((100,), 20), ((40,), 10))):
        sets.append(_split(_mlp_bits(x, y, widths, seed, steps), y, 1000, f"mnist{widths}@{steps}"))
    if CIFAR.exists():
        xc, yc = _cifar()
        for seed, (widths, steps) in enumerate((((40,), 0), ((48, 48), 30), ((64,), 60))):
            sets.append(_split(_mlp_bits(xc, yc, widths, seed, steps), yc, 1000, f"cifar{widths}@{steps}"))
    xs, ys = _mnist(700, offset=2000)
    for seed, steps in enumerate((0, 20, 60)):
        sets.append(_split(_cnn_bits(xs, ys, seed, steps), ys, 500, f"cnn@{steps}"))
    return tuple(sets)


@needs_mnist
def test_redundancy_and_knn_equal_sklearn_on_real_codes() -> None:
    with thread_limit(1):
        for s in code_sets():
            args = (s["train"], s["y_train"], s["test"], s["y_test"], s["n_bits"])
            ref = encoding_metrics(*args, which=("redundancy", "knn"), backend="sklearn")
            got = encoding_metrics(*args, which=("redundancy", "knn"), backend="torch")
            assert got.pop("backend") == "torch" and ref.pop("backend") == "sklearn"
            assert got == ref, s["name"]


def _sk_kmeans(packed: np.ndarray, n_bits: int, y: np.ndarray, seed: int) -> float:
    from sklearn.cluster import KMeans
    dense = np.unpackbits(packed, axis=1, count=n_bits).astype(np.float64)
    return majority_accuracy(KMeans(10, n_init=10, random_state=seed).fit(dense).labels_, y)


@needs_mnist
def test_kmeans_agrees_with_sklearn_on_real_codes() -> None:
    gaps, report = [], []
    with thread_limit(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = code_sets()
        assert len(sets) >= 10
        for s in sets:
            for split in ("train", "test"):
                packed, y = s[split], s[f"y_{split}"]
                if packed.shape[0] < 400:
                    continue  # the 200-row CNN test splits: too few rows for a K-Means accuracy
                ref = _sk_kmeans(packed, s["n_bits"], y, 9)
                got = majority_accuracy(tb.kmeans_clusters(packed, s["n_bits"], 10, seed=9), y)
                gap = got - ref
                # a set of this size: scikit-learn's own spread across random_state (9 and 0..5)
                accs = [ref] + [_sk_kmeans(packed, s["n_bits"], y, r) for r in range(6)]
                bound = max(0.03, max(accs) - min(accs))
                report.append(f"{s['name']}/{split} n={packed.shape[0]} bits={s['n_bits']}: "
                              f"torch {got:.4f} sklearn {ref:.4f} gap {gap:+.4f} (bound {bound:.3f})")
                assert abs(gap) <= bound, "\n".join(report)
                gaps.append(gap)
    print("\n".join(report))
    assert abs(np.mean(gaps)) <= 0.01, "\n".join(report)


@needs_mnist
def test_kmeans_within_003_on_mnist_size_set() -> None:
    x, y = _mnist(10000, test=True)
    packed = np.packbits(_mlp_bits(x, y, (100,), 0, 0), axis=1)
    packed, _, n_used = drop_constant_bits(packed, packed[:1], 100)
    with thread_limit(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = _sk_kmeans(packed, n_used, y, 9)
        got = majority_accuracy(tb.kmeans_clusters(packed, n_used, 10, seed=9), y)
    print(f"MNIST test 10,000 x {n_used} bits: torch {got:.4f} sklearn {ref:.4f}")
    assert abs(got - ref) <= 0.03


@needs_mnist
def test_kernel_and_dense_lloyd_agree() -> None:
    """The kernel form (Gram matrix of bit overlaps) is the same algorithm as the dense form:
    same seeding draws, same assignments (up to float rounding on the CNN codes)."""
    s = [s for s in code_sets() if s["name"].startswith("cnn")][-1]
    dense = tb.kmeans_clusters(s["train"], s["n_bits"], 10, form="dense")
    kernel = tb.kmeans_clusters(s["train"], s["n_bits"], 10, form="kernel")
    assert s["train"].shape[0] < s["n_bits"]
    assert np.mean(dense == kernel) >= 0.99


@needs_mnist
def test_logreg_agrees_with_sklearn_on_real_codes() -> None:
    from activation_hash.metrics import logreg_accuracy
    sets = code_sets()
    chosen = [sets[4]] + [s for s in sets if s["name"].startswith("cifar")][:1] + \
        [s for s in sets if s["name"].startswith("cnn")][-1:]
    with thread_limit(1):
        for s in chosen:
            args = (s["train"], s["y_train"], s["test"], s["y_test"], s["n_bits"])
            ref = logreg_accuracy(*args, mode="ovo")
            got = tb.logreg_accuracy(*args, mode="ovo")
            assert abs(got - ref) <= 0.01, (s["name"], got, ref)
        for mode in ("ovr", "multinomial"):
            args = (sets[4]["train"], sets[4]["y_train"], sets[4]["test"], sets[4]["y_test"], sets[4]["n_bits"])
            assert abs(tb.logreg_accuracy(*args, mode=mode) - logreg_accuracy(*args, mode=mode)) <= 0.01, mode
