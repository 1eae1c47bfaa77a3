"""Peak memory and time of the logistic-regression metric alone on very wide codes.

    python bench/bench_logreg_memory.py                   # 1,200 + 300 codes of 505,344 bits, ovo
    python bench/bench_logreg_memory.py --row-space off   # no row space: dense if it fits, else streamed L-BFGS-B
    python bench/bench_logreg_memory.py --bits 20000 --spread 0.02 --reference   # + scikit-learn

Structured synthetic codes (10 classes, the recipe of bench_metrics.py's wide scale, generated
and packed chunk by chunk) go through ``drop_constant_bits``, ``logreg_fit`` and ``predict`` as
in ``compute_families``. With fewer codes than bits (and dense codes over ``max_dense_bytes``)
``logreg_fit`` fits scikit-learn on the codes' row-space coordinates; ``--row-space off`` gives
the dense fit when it fits and otherwise scikit-learn's fit streamed over packed chunks. Before the metric the process's peak-RSS mark
is reset (``/proc/self/clear_refs``), so "peak" is the high-water mark during the metric alone
and "extra" is that minus the resident size just before it (codes, Python, numpy, scipy).
``--reference`` then fits scikit-learn's reference for the mode on the unpacked codes (minutes
at 505,344 bits) and prints both accuracies. The default spread makes 505,344-bit codes
separable (accuracy 1); --spread 0.014 gives ~0.7 there."""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activation_hash.metrics import (  # noqa: E402
    MAX_DENSE_BYTES,
    drop_constant_bits,
    logreg_fit,
    thread_limit,
)


def structured_codes(n: int, n_bits: int, seed: int, spread: float | None = None,
                     n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Packed codes: per-unit base rate ~ Beta(0.5, 0.5), shifted per class by a Gaussian of
    scale ``spread`` (default 0.15 * (100 / n_bits) ** 0.25, as bench_metrics.py), packed
    64 MiB at a time."""
    rng = np.random.default_rng(seed)
    base = rng.beta(0.5, 0.5, size=n_bits)
    spread = 0.15 * (100 / n_bits) ** 0.25 if spread is None else spread
    shifted = base + spread * rng.standard_normal((n_classes, n_bits))
    probs = np.clip(shifted, 0.01, 0.99).astype(np.float32)
    labels = rng.integers(0, n_classes, n)
    packed = np.empty((n, (n_bits + 7) // 8), dtype=np.uint8)
    chunk = max(1, 2**26 // (4 * n_bits))
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        on = rng.random((hi - lo, n_bits), dtype=np.float32) < probs[labels[lo:hi]]
        packed[lo:hi] = np.packbits(on, axis=1)
    return packed, labels


def status_mib(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bits", type=int, default=505_344)
    parser.add_argument("--n-train", type=int, default=1200)
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--mode", default="ovo", choices=["ovo", "ovr", "multinomial"])
    parser.add_argument("--max-dense-bytes", type=int, default=MAX_DENSE_BYTES)
    parser.add_argument("--threads", type=int, default=1, help="compute threads (0 = library defaults)")
    parser.add_argument("--row-space", choices=["auto", "on", "off"], default="auto",
                        help="logreg_fit's row_space_ (auto = its own rule)")
    parser.add_argument("--spread", type=float, default=None,
                        help="class signal per unit (default 0.15 * (100 / bits) ** 0.25)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", action="store_true", help="also run scikit-learn's reference")
    args = parser.parse_args()

    n = args.n_train + args.n_test
    t0 = time.perf_counter()
    packed, labels = structured_codes(n, args.bits, args.seed, args.spread)
    train, test, n_used = drop_constant_bits(packed[:args.n_train], packed[args.n_train:], args.bits)
    y_train, y_test = labels[:args.n_train], labels[args.n_train:]
    del packed
    print(f"codes: {args.n_train} train + {args.n_test} test, {args.bits} bits ({n_used} non-constant), "
          f"{train.nbytes / 2**20:.0f} MiB packed train, made in {time.perf_counter() - t0:.1f} s")

    exact = reset_peak()
    baseline = status_mib("VmRSS")
    threads = None if args.threads == 0 else args.threads
    t0 = time.perf_counter()
    with thread_limit(threads):
        model = logreg_fit(train, y_train, n_used, mode=args.mode, max_dense_bytes=args.max_dense_bytes,
                           row_space_={"auto": None, "on": True, "off": False}[args.row_space])
        acc = float(np.mean(model.predict(test) == y_test))
    seconds = time.perf_counter() - t0
    peak = status_mib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cap = args.max_dense_bytes / 2**20
    print(f"logreg {args.mode} (row space {args.row_space}): accuracy {acc:.4f}, {seconds:.1f} s, "
          f"threads {args.threads or 'default'}")
    print(f"RSS before the metric {baseline:.0f} MiB, peak during it {peak:.0f} MiB "
          f"(extra {peak - baseline:.0f} MiB; max_dense_bytes {cap:.0f} MiB)"
          + ("" if exact else " [peak mark not resettable: process-wide ru_maxrss]"))

    if args.reference:
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsOneClassifier, OneVsRestClassifier

        base = LogisticRegression(random_state=9)
        ref_model = {"ovo": OneVsOneClassifier(base), "ovr": OneVsRestClassifier(base),
                     "multinomial": base}[args.mode]
        x_train = np.unpackbits(train, axis=1, count=n_used)
        x_test = np.unpackbits(test, axis=1, count=n_used)
        t0 = time.perf_counter()
        with thread_limit(threads), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter=100, as in the paper
            ref = float(np.mean(ref_model.fit(x_train, y_train).predict(x_test) == y_test))
        print(f"scikit-learn reference: accuracy {ref:.4f} ({time.perf_counter() - t0:.1f} s); "
              f"difference {100 * (acc - ref):+.2f} points")


if __name__ == "__main__":
    main()
