"""Benchmark the encoding metrics against the paper's own scikit-learn pipeline.

    python bench/bench_metrics.py [--scale mnist|wide] [--n-train 48000 --n-test 10000 --bits 100]

--scale mnist (default): codes of a depth-1 ReLU MLP (width --bits) trained ~2 epochs on real
MNIST (first 48,000 training images, the 10,000 test images), or structured synthetic codes when
the MNIST files are absent. Runs the paper's pipeline (np.unique(axis=0) redundancy,
KMeans(10, n_init=10, random_state=9) (the authors' 2021 scikit-learn default n_init), KNeighborsClassifier(9, metric='hamming'),
OneVsOneClassifier(LogisticRegression(random_state=9))) and ``encoding_metrics`` on the same
codes, prints per-metric times, the speed ratio and whether the results agree: redundancy
identical, K-NN (index rule) identical except tie-decided points, K-Means and logistic
accuracies within 0.5 percentage points (both are scikit-learn's estimators on dense codes, so
identical here). The whole-process comparison (``python -m activation_hash.evaluate`` against
the reference pipeline as a process on the same saved codes) is ``--process``.

--scale wide: structured synthetic codes of 16,384 bits (20,000 train + 5,000 test by
default): only this project's path (K-Means and logistic regression stream, their dense
matrices being over 1 GiB), with time and peak RSS; K-NN distances checked exact on a sample against brute force,
and K-NN / redundancy against scikit-learn on a subsample.

Both pipelines run with --threads compute threads (default 1; 0 = library defaults), the
reference with --reference-threads if given: on small shared machines oversubscribed BLAS/OpenMP
threads stall at barriers and can slow scikit-learn's one-vs-one logistic regression many times
over (bench/README.md), which would flatter the ratio; ``--threads 2
--reference-threads 1`` gives each pipeline its faster setting on a 2-core machine.
Exit code 1 when an agreement check fails (the speed targets are reported, not enforced).

--process: the MNIST-scale codes are saved to a temporary .npz; then ``python -m
activation_hash.evaluate FILE --threads N`` and the reference pipeline (this script with
--reference-file FILE) each run as a fresh process, timed from launch to exit, imports
included. Target: evaluate at least 30x faster.
"""

from __future__ import annotations

import argparse
import gzip
import resource
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from activation_hash.metrics import (  # noqa: E402
    MAX_DENSE_BYTES,
    drop_constant_bits,
    encoding_metrics,
    hungarian_accuracy,
    knn_neighbors,
    knn_predict,
    majority_accuracy,
    redundancy_ratio,
    thread_limit,
    unpack_rows,
)

MNIST_RAW = ROOT.parent / "shared" / "datasets" / "MNIST" / "raw"
GROUPS = ("redundancy", "kmeans", "knn", "logreg")
TOLERANCE = 0.005
console = Console()
T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


# ---------------------------------------------------------------- codes


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def mnist_mlp_codes(n_train: int, n_test: int, width: int, epochs: int, seed: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Packed sign patterns of a depth-1 ReLU MLP trained on MNIST (Adam 1e-3, batch 128)."""
    import torch  # here, so that the reference process (--reference-file) does not pay for it
    x_train = read_idx(MNIST_RAW / "train-images-idx3-ubyte.gz")[:n_train].reshape(n_train, -1)
    y_train = read_idx(MNIST_RAW / "train-labels-idx1-ubyte.gz")[:n_train].astype(np.int64)
    x_test = read_idx(MNIST_RAW / "t10k-images-idx3-ubyte.gz")[:n_test].reshape(n_test, -1)
    y_test = read_idx(MNIST_RAW / "t10k-labels-idx1-ubyte.gz")[:n_test].astype(np.int64)
    x_train_t = torch.tensor(x_train, dtype=torch.float32) / 255
    x_test_t = torch.tensor(x_test, dtype=torch.float32) / 255
    y_t = torch.from_numpy(y_train)
    torch.manual_seed(seed)
    hidden, out = torch.nn.Linear(784, width), torch.nn.Linear(width, 10)
    params = list(hidden.parameters()) + list(out.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(n_train).split(128):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(out(torch.relu(hidden(x_train_t[idx]))), y_t[idx])
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = (out(torch.relu(hidden(x_test_t))).argmax(1).numpy() == y_test).mean()
        train_codes = np.packbits((hidden(x_train_t) > 0).numpy(), axis=1)
        test_codes = np.packbits((hidden(x_test_t) > 0).numpy(), axis=1)
    console.print(f"codes: real MNIST, depth-1 width-{width} ReLU MLP, {epochs} epochs, "
                  f"network test accuracy {acc:.4f}")
    return train_codes, y_train, test_codes, y_test


def structured_codes(n: int, n_bits: int, seed: int, n_classes: int = 10
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Packed synthetic codes with MNIST-like difficulty: every unit has a base activation rate
    ~ Beta(0.5, 0.5) (many units almost always on or off), shifted per class by a Gaussian of
    scale 0.15 * (100 / n_bits) ** 0.25, which keeps Hamming K-NN about as hard at any width.
    Generated and packed chunk by chunk."""
    rng = np.random.default_rng(seed)
    base = rng.beta(0.5, 0.5, size=n_bits)
    spread = 0.15 * (100 / n_bits) ** 0.25
    probs = np.clip(base + spread * rng.standard_normal((n_classes, n_bits)), 0.01, 0.99).astype(np.float32)
    labels = rng.integers(0, n_classes, n)
    packed = np.empty((n, (n_bits + 7) // 8), dtype=np.uint8)
    chunk = max(1, 2**26 // (4 * n_bits))
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        packed[lo:hi] = np.packbits(rng.random((hi - lo, n_bits), dtype=np.float32) < probs[labels[lo:hi]],
                                    axis=1)
    return packed, labels


# ---------------------------------------------------------------- reference


def reference_pipeline(train_bits: np.ndarray, y_train: np.ndarray, test_bits: np.ndarray,
                       y_test: np.ndarray) -> tuple[dict[str, float], dict[str, float], np.ndarray]:
    """The paper's scikit-learn pipeline on unpacked 0/1 codes: (metrics, seconds, K-NN preds)."""
    from sklearn.cluster import KMeans
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsOneClassifier
    from sklearn.neighbors import KNeighborsClassifier

    times: dict[str, float] = {}
    out: dict[str, float] = {}

    def drop() -> tuple[np.ndarray, np.ndarray]:
        both = np.vstack([train_bits, test_bits])
        keep = both.min(axis=0) != both.max(axis=0)
        return train_bits[:, keep], test_bits[:, keep]

    (x_train, x_test), times["drop constant"] = timed(drop)

    def redundancy() -> None:
        for split, x in (("train", x_train), ("test", x_test)):
            out[f"{split}/redundancy"] = (len(x) - len(np.unique(x, axis=0))) / len(x)

    _, times["redundancy"] = timed(redundancy)

    def kmeans() -> None:
        for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            clusters = KMeans(n_clusters=10, n_init=10, random_state=9).fit(x).labels_
            out[f"{split}/kmeans_acc"] = majority_accuracy(clusters, y)
            out[f"{split}/kmeans_hungarian_acc"] = hungarian_accuracy(clusters, y)

    _, times["kmeans"] = timed(kmeans)
    knn_pred, times["knn"] = timed(
        lambda: KNeighborsClassifier(9, metric="hamming").fit(x_train, y_train).predict(x_test))
    out["test/knn_acc"] = float(np.mean(knn_pred == y_test))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter=100, as the authors had
        lr_pred, times["logreg"] = timed(lambda: OneVsOneClassifier(
            LogisticRegression(random_state=9)).fit(x_train, y_train).predict(x_test))
    out["test/logreg_acc"] = float(np.mean(lr_pred == y_test))
    return out, times, knn_pred


# ---------------------------------------------------------------- scales


def ours_timed(args: tuple, n_threads: int) -> tuple[dict[str, float], float, dict[str, float]]:
    """The full metric set in one call, plus one call per group for the breakdown."""
    metrics, total = timed(lambda: encoding_metrics(*args, n_threads=n_threads))
    per_group = {g: timed(lambda g=g: encoding_metrics(*args, which=(g,), n_threads=n_threads))[1]
                 for g in GROUPS}
    return metrics, total, per_group


def run_reference_file(path: str) -> None:
    """The reference pipeline on a saved codes file (what --process times as a process)."""
    data = np.load(path)
    n_bits = int(data["n_bits"])
    out, _, _ = reference_pipeline(unpack_rows(data["train_codes"], n_bits), data["train_labels"],
                                   unpack_rows(data["test_codes"], n_bits), data["test_labels"])
    print(out)


def run_process(ns: argparse.Namespace, train, y_train, test, y_test) -> bool:
    import os
    import subprocess
    import tempfile
    threads = str(ns.threads or 1)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
           "MKL_NUM_THREADS": threads, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "codes.npz"
        np.savez(path, train_codes=train, test_codes=test, train_labels=y_train, test_labels=y_test,
                 n_bits=np.int64(ns.bits))
        walls = {}
        for name, cmd in (("evaluate", [sys.executable, "-m", "activation_hash.evaluate", str(path),
                                        "--threads", threads]),
                          ("reference", [sys.executable, __file__, "--reference-file", str(path)])):
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            walls[name] = time.perf_counter() - start
            if proc.returncode:
                console.print(proc.stderr)
                return False
    ratio = walls["reference"] / walls["evaluate"]
    console.print(f"whole process, {threads} thread(s): evaluate {walls['evaluate']:.2f} s, reference "
                  f"{walls['reference']:.2f} s, ratio {ratio:.1f}x (target >= 30x)")
    return report([("evaluate process >= 30x faster than the reference process", ratio >= 30, f"{ratio:.1f}x")],
                  fatal=0)


def run_mnist(ns: argparse.Namespace) -> bool:
    with thread_limit(ns.threads):
        if (MNIST_RAW / "train-images-idx3-ubyte.gz").exists():
            train, y_train, test, y_test = mnist_mlp_codes(ns.n_train, ns.n_test, ns.bits, ns.epochs,
                                                           ns.seed)
        else:
            console.print(f"codes: STRUCTURED SYNTHETIC ({MNIST_RAW} not found)")
            packed, labels = structured_codes(ns.n_train + ns.n_test, ns.bits, ns.seed)
            train, test = packed[:ns.n_train], packed[ns.n_train:]
            y_train, y_test = labels[:ns.n_train], labels[ns.n_train:]
        if ns.process:
            return run_process(ns, train, y_train, test, y_test)
        args = (train, y_train, test, y_test, ns.bits)
        console.print(f"{ns.n_train} train + {ns.n_test} test codes of {ns.bits} bits; "
                      f"threads: ours {ns.threads}, reference {ns.reference_threads}; running the "
                      f"reference pipeline ...")
        with thread_limit(ns.reference_threads):
            ref, ref_times, ref_knn = reference_pipeline(unpack_rows(train, ns.bits), y_train,
                                                         unpack_rows(test, ns.bits), y_test)
        ours, our_total, our_times = ours_timed(args, ns.threads)
        kept_train, kept_test, _ = drop_constant_bits(train, test, ns.bits)
        knn = knn_predict(kept_train, y_train, kept_test, 9)

    ref_total = sum(ref_times.values())
    table = Table(title="MNIST-scale metric set: paper's scikit-learn pipeline vs encoding_metrics")
    for col in ("metric group", "reference s", "ours s", "ratio"):
        table.add_column(col, justify="right" if col != "metric group" else "left")
    for group in ("drop constant",) + GROUPS:
        mine = our_times.get(group)
        table.add_row(group, f"{ref_times[group]:.3f}", "-" if mine is None else f"{mine:.3f}",
                      "-" if mine is None else f"{ref_times[group] / mine:.0f}x")
    table.add_row("whole set", f"{ref_total:.3f}", f"{our_total:.3f}", f"{ref_total / our_total:.0f}x")
    console.print(table)

    flagged = knn.vote_tie | knn.boundary_tie
    disagree = knn.predictions != ref_knn
    checks = [
        ("train/test redundancy identical",
         all(ref[f"{s}/redundancy"] == ours[f"{s}/redundancy"] for s in ("train", "test")),
         f"{ours['train/redundancy']:.6f} / {ours['test/redundancy']:.6f}"),
        ("K-NN identical except tie-decided points", not np.any(disagree & ~flagged),
         f"acc {ours['test/knn_acc']:.4f} vs {ref['test/knn_acc']:.4f}; {int(disagree.sum())} differ, all "
         f"among {int(flagged.sum())} tie points ({int(knn.vote_tie.sum())} vote, "
         f"{int(knn.boundary_tie.sum())} boundary)"),
    ]
    for name in ("train/kmeans_acc", "train/kmeans_hungarian_acc", "test/kmeans_acc",
                 "test/kmeans_hungarian_acc", "test/logreg_acc"):
        checks.append((f"{name} within 0.5 pp", abs(ours[name] - ref[name]) <= TOLERANCE + 1e-12,
                       f"{ours[name]:.4f} vs {ref[name]:.4f}"))
    checks.append(("whole set >= 30x faster (in process)", ref_total / our_total >= 30,
                   f"{ref_total / our_total:.1f}x (target, not an agreement check)"))
    return report(checks, fatal=len(checks) - 1)


def run_wide(ns: argparse.Namespace) -> bool:
    n_bits = ns.bits
    with thread_limit(ns.threads):
        packed, labels = structured_codes(ns.n_train + ns.n_test, n_bits, ns.seed)
        train, test = packed[:ns.n_train], packed[ns.n_train:]
        y_train, y_test = labels[:ns.n_train], labels[ns.n_train:]
        rss_codes = peak_rss_mib()
        console.print(f"codes: structured synthetic, {ns.n_train} train + {ns.n_test} test of "
                      f"{n_bits} bits ({packed.nbytes / 2**20:.0f} MiB packed); threads={ns.threads}")
        for name, nbytes in (("K-Means (float64)", ns.n_train * n_bits * 8),
                             ("logistic regression (float32)", ns.n_train * (n_bits + 1) * 4)):
            path = "dense" if nbytes <= MAX_DENSE_BYTES else "streaming"
            console.print(f"  {name}: {path} (dense train matrix {nbytes / 2**30:.2f} GiB, "
                          f"max_dense_bytes {MAX_DENSE_BYTES / 2**30:.0f} GiB)")
        args = (train, y_train, test, y_test, n_bits)
        ours, total, per_group = ours_timed(args, ns.threads)

        # exactness of K-NN distances on a sample, against brute force on the packed bytes
        kept_train, kept_test, _ = drop_constant_bits(train, test, n_bits)
        sample = np.random.default_rng(0).choice(test.shape[0], min(200, test.shape[0]), replace=False)
        _, dist, _ = knn_neighbors(kept_train, kept_test[sample], 9)
        brute = brute_hamming(kept_test[sample], kept_train)
        distances_exact = bool(np.array_equal(np.sort(brute, axis=1)[:, :9], dist))

        # scikit-learn on a subsample (the full reference would need GBs and hours)
        from sklearn.neighbors import KNeighborsClassifier
        n_sub, m_sub = min(2000, ns.n_train), min(500, ns.n_test)
        sub_train, sub_test = unpack_rows(train[:n_sub], n_bits), unpack_rows(test[:m_sub], n_bits)
        ref_pred = KNeighborsClassifier(9, metric="hamming").fit(sub_train, y_train[:n_sub]).predict(sub_test)
        sub = knn_predict(train[:n_sub], y_train[:n_sub], test[:m_sub], 9)
        sub_ok = not np.any((sub.predictions != ref_pred) & ~(sub.vote_tie | sub.boundary_tie))
        sub_redundancy = (n_sub - len(np.unique(sub_train, axis=0))) / n_sub
        red_ok = redundancy_ratio(train[:n_sub]) == sub_redundancy

    table = Table(title=f"wide codes ({n_bits} bits): encoding_metrics")
    table.add_column("metric group")
    table.add_column("seconds", justify="right")
    for group in GROUPS:
        table.add_row(group, f"{per_group[group]:.2f}")
    table.add_row("whole set (one call)", f"{total:.2f}")
    console.print(table)
    values = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in ours.items())
    console.print(f"metrics: {values}")
    console.print(f"peak RSS {peak_rss_mib():.0f} MiB (after generating the codes: {rss_codes:.0f} MiB)")
    checks = [
        ("K-NN distances exact on a 200-query sample (brute force)", distances_exact, ""),
        (f"K-NN vs scikit-learn on a {n_sub}/{m_sub} subsample, except ties", sub_ok,
         f"{int((sub.predictions != ref_pred).sum())} differ among "
         f"{int((sub.vote_tie | sub.boundary_tie).sum())} tie points"),
        (f"redundancy vs np.unique(axis=0) on {n_sub} codes", red_ok, f"{sub_redundancy:.6f}"),
    ]
    return report(checks, fatal=len(checks))


def brute_hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances by XOR + byte popcount table, chunked over ``b``."""
    table = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint16)
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int64)
    step = max(1, 2**26 // (a.shape[0] * a.shape[1] * 2))
    for lo in range(0, b.shape[0], step):
        xor = a[:, None, :] ^ b[None, lo:lo + step, :]
        out[:, lo:lo + step] = table[xor].sum(axis=2)
    return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def report(checks: list[tuple[str, bool, str]], fatal: int) -> bool:
    """Print the checks; the first ``fatal`` decide the exit code, the rest are informative."""
    ok = True
    for i, (name, passed, detail) in enumerate(checks):
        mark = "[green]PASS[/]" if passed else ("[red]FAIL[/]" if i < fatal else "[yellow]MISS[/]")
        console.print(f"{mark} {name}" + (f": {detail}" if detail else ""))
        ok &= passed or i >= fatal
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=("mnist", "wide"), default="mnist")
    parser.add_argument("--n-train", type=int, default=None, help="default 48000 (mnist) / 20000 (wide)")
    parser.add_argument("--n-test", type=int, default=None, help="default 10000 (mnist) / 5000 (wide)")
    parser.add_argument("--bits", type=int, default=None, help="default 100 (mnist) / 16384 (wide)")
    parser.add_argument("--epochs", type=int, default=2, help="MLP training epochs (mnist)")
    parser.add_argument("--threads", type=int, default=1,
                        help="compute threads for both pipelines (0: library defaults)")
    parser.add_argument("--reference-threads", type=int, default=None,
                        help="threads for the reference pipeline (default: --threads); e.g. "
                             "--threads 2 --reference-threads 1 gives each side its faster setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--process", action="store_true",
                        help="time evaluate and the reference as whole processes on saved codes")
    parser.add_argument("--reference-file", default=None, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.reference_file:
        run_reference_file(ns.reference_file)
        return 0
    wide = ns.scale == "wide"
    ns.n_train = ns.n_train or (20000 if wide else 48000)
    ns.n_test = ns.n_test or (5000 if wide else 10000)
    ns.bits = ns.bits or (16384 if wide else 100)
    ns.reference_threads = ns.threads if ns.reference_threads is None else ns.reference_threads
    ns.threads, ns.reference_threads = ns.threads or None, ns.reference_threads or None
    ok = run_wide(ns) if wide else run_mnist(ns)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
