"""Per-family capture time of the two metric backends, and their agreement, in one run.

    python bench/bench_backends.py [--device cpu|cuda] [--sets mnist,cifar,wide] [--train-size N]
                                   [--test-size N] [--steps S] [--threads T]

Code sets: MNIST width 100 (one hidden layer of 100 ReLUs), CIFAR-10 5x200 (five of 200), both
MLPs trained ``--steps`` full-batch Adam steps on the first ``--train-size`` training images (0 =
all) and captured on them and the first ``--test-size`` test images (0 = all), from
$ACTIVATION_HASH_DATA (default ../shared/datasets); and a wide synthetic set (``--wide-rows``
codes of ``--wide-bits`` bits, class prototypes with 20% of the bits flipped; more bits than
rows: the kernel K-Means and row-space logistic regression). Each family runs alone through
``compute_families`` with ``backend=sklearn`` (scikit-learn/faiss on the CPU) and
``backend=torch`` on ``--device``; the table gives both times, their ratio (sklearn / torch,
> 1 = torch faster) measured in the same run, and the agreement: redundancy and K-NN must be
equal, K-Means accuracy and logistic regression are reported as differences. Exit 1 when
redundancy or K-NN differ.
"""

from __future__ import annotations

import argparse
import gzip
import os
import pickle
import sys
import tarfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from activation_hash.metrics import compute_families, drop_constant_bits, thread_limit  # noqa: E402
from activation_hash.metrics.registry import CodeSet  # noqa: E402

DATA = Path(os.environ.get("ACTIVATION_HASH_DATA", ROOT.parent / "shared" / "datasets"))
FAMILIES = ("redundancy", "kmeans", "knn", "logreg")
EXACT = ("train/redundancy", "test/redundancy", "test/knn_acc", "test/knn_acc_index", "test/knn_boundary_ties")
CLOSE = ("train/kmeans_acc", "test/kmeans_acc", "test/logreg_acc")


def mnist(n: int, test: bool) -> tuple[np.ndarray, np.ndarray]:
    prefix = "t10k" if test else "train"
    raw = DATA / "MNIST" / "raw"
    with gzip.open(raw / f"{prefix}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(raw / f"{prefix}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    n = n or len(y)
    return x[:n].astype(np.float32) / 255.0, y[:n]


def cifar(n_train: int, n_test: int) -> tuple[np.ndarray, ...]:
    train, test = [], None
    with tarfile.open(DATA / "cifar-10-python.tar.xz", "r|*") as tar:
        for member in tar:
            if member.isfile() and ("data_batch" in member.name or "test_batch" in member.name):
                batch = pickle.load(tar.extractfile(member), encoding="bytes")
                part = (np.asarray(batch[b"data"], np.float32) / 255.0, np.asarray(batch[b"labels"], np.int64))
                if "test_batch" in member.name:
                    test = part
                else:
                    train.append(part)
    xtr, ytr = np.concatenate([p[0] for p in train]), np.concatenate([p[1] for p in train])
    n_train, n_test = n_train or len(ytr), n_test or len(test[1])
    return xtr[:n_train], ytr[:n_train], test[0][:n_test], test[1][:n_test]


def mlp_codes(xtr, ytr, xte, yte, widths: tuple[int, ...], steps: int, device: str) -> CodeSet:
    import torch
    from activation_hash.codes.capture import CodeRecorder
    torch.manual_seed(0)
    layers, d = [], xtr.shape[1]
    for w in widths:
        layers += [torch.nn.Linear(d, w), torch.nn.ReLU()]
        d = w
    net = torch.nn.Sequential(*layers, torch.nn.Linear(d, 10)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(xtr).to(device), torch.from_numpy(ytr).to(device)
    for _ in range(steps):
        for lo in range(0, len(xt), 10000):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[lo:lo + 10000]), yt[lo:lo + 10000]).backward()
            opt.step()
    packed = []
    with torch.no_grad(), CodeRecorder(net) as rec:
        for x in (xtr, xte):
            parts = []
            for lo in range(0, len(x), 10000):
                net(torch.from_numpy(x[lo:lo + 10000]).to(device))
                parts.append(rec.packed().cpu().numpy())
            packed.append(np.concatenate(parts))
    return CodeSet(packed[0], ytr, packed[1], yte, sum(widths))


def wide_codes(rows: int, bits: int) -> CodeSet:
    rng = np.random.default_rng(0)
    proto = rng.random((10, bits)) < 0.5
    y = rng.integers(0, 10, rows)
    packed = np.concatenate([np.packbits(proto[y[lo:lo + 500]] ^ (rng.random((len(y[lo:lo + 500]), bits)) < 0.2), axis=1)
                             for lo in range(0, rows, 500)])
    n_train = rows * 4 // 5
    return CodeSet(packed[:n_train], y[:n_train], packed[n_train:], y[n_train:], bits)


def bench(name: str, codes: CodeSet, device: str | None, threads: int | None) -> tuple[list[str], bool]:
    train, test, used = drop_constant_bits(codes.train_codes, codes.test_codes, codes.n_bits)
    codes = CodeSet(train, codes.train_labels, test, codes.test_labels, used)
    lines = [f"\n{name}: {train.shape[0]} + {test.shape[0]} codes, {used} bits used, torch on {device or 'cpu'}",
             f"  {'family':<11} {'sklearn s':>10} {'torch s':>9} {'ratio':>7}   agreement"]
    ok = True
    total = {"sklearn": 0.0, "torch": 0.0}
    for family in FAMILIES:
        got, secs = {}, {}
        for backend in ("sklearn", "torch"):
            dev = device if backend == "torch" else None
            _sync(dev)
            t0 = time.perf_counter()
            got[backend] = compute_families(codes, [family], {"backend": backend, "n_threads": threads}, device=dev)
            _sync(dev)
            secs[backend] = time.perf_counter() - t0
            total[backend] += secs[backend]
        sk, to = got["sklearn"], got["torch"]
        notes = []
        for key in EXACT:
            if key in sk:
                same = sk[key] == to[key]
                ok &= same
                notes.append(f"{key} {'equal' if same else f'DIFFER: sklearn {sk[key]}, torch {to[key]}'}")
        for key in CLOSE:
            if key in sk:
                notes.append(f"{key} torch {to[key]:.4f} sklearn {sk[key]:.4f} ({to[key] - sk[key]:+.4f})")
        lines.append(f"  {family:<11} {secs['sklearn']:>10.2f} {secs['torch']:>9.2f} "
                     f"{secs['sklearn'] / max(secs['torch'], 1e-9):>6.2f}x   {'; '.join(notes)}")
    lines.append(f"  {'all':<11} {total['sklearn']:>10.2f} {total['torch']:>9.2f} "
                 f"{total['sklearn'] / max(total['torch'], 1e-9):>6.2f}x")
    return lines, ok


def _sync(device: str | None) -> None:
    if device and device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sets", default="mnist,cifar,wide")
    parser.add_argument("--train-size", type=int, default=6000, help="0 = all training images")
    parser.add_argument("--test-size", type=int, default=2000, help="0 = all test images")
    parser.add_argument("--steps", type=int, default=3, help="epochs of Adam (batches of 10,000) before capture")
    parser.add_argument("--wide-rows", type=int, default=2500)
    parser.add_argument("--wide-bits", type=int, default=32768)
    parser.add_argument("--threads", type=int, default=1, help="compute threads (0 = library defaults)")
    args = parser.parse_args()
    threads = args.threads or None
    device = None if args.device == "cpu" else args.device
    warnings.simplefilter("ignore")
    ok = True
    with thread_limit(threads):
        for name in args.sets.split(","):
            t0 = time.perf_counter()
            if name == "mnist":
                xtr, ytr = mnist(args.train_size, False)
                xte, yte = mnist(args.test_size, True)
                codes = mlp_codes(xtr, ytr, xte, yte, (100,), args.steps, args.device)
                title = "MNIST width 100"
            elif name == "cifar":
                codes = mlp_codes(*cifar(args.train_size, args.test_size), (200,) * 5, args.steps, args.device)
                title = "CIFAR-10 5x200"
            elif name == "wide":
                codes = wide_codes(args.wide_rows, args.wide_bits)
                title = f"synthetic wide ({args.wide_bits} bits)"
            else:
                raise SystemExit(f"error: --sets={name}: allowed: mnist, cifar, wide")
            lines, good = bench(title, codes, device, threads)
            lines[0] += f" (codes ready in {time.perf_counter() - t0:.1f} s)"
            print("\n".join(lines), flush=True)
            ok &= good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
