"""One MNIST measurement of the retrieval family outside the Hydra pipeline: a one-hidden-layer
ReLU MLP (plain torch, Adam 1e-3, batch 128) trained on the whole training split, then neural
codes vs LSH / PCAH / PCA-ITQ (pixels and penultimate features) under the split_1k protocol.

    python bench/retrieval_mnist.py [--width 100] [--epochs 3] [--train-size 60000] [--bits 32,64]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from activation_hash.data.readers import read_idx
from activation_hash.metrics.families.retrieval import FAMILY
from activation_hash.metrics.registry import CodeSet


def load(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(root / f"{split}-images-idx3-ubyte.gz") if (root / f"{split}-images-idx3-ubyte.gz").exists() \
        else read_idx(root / f"{split}-images-idx3-ubyte")
    y = read_idx(root / f"{split}-labels-idx1-ubyte.gz") if (root / f"{split}-labels-idx1-ubyte.gz").exists() \
        else read_idx(root / f"{split}-labels-idx1-ubyte")
    return x.reshape(len(x), -1).astype(np.float32) / 255.0, y.astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=60000)
    parser.add_argument("--bits", default="32,64")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = Path(os.environ.get("ACTIVATION_HASH_SHARED_DATASETS", "/work/shared/datasets")) / "MNIST" / "raw"
    xtr, ytr = load(root, "train")
    xte, yte = load(root, "t10k")
    xtr, ytr = xtr[: args.train_size], ytr[: args.train_size]
    torch.manual_seed(args.seed)
    hidden, out = torch.nn.Linear(784, args.width), torch.nn.Linear(args.width, 10)
    net = torch.nn.Sequential(hidden, torch.nn.ReLU(), out)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    results = {}
    for epoch in range(args.epochs + 1):
        if epoch:
            perm = torch.randperm(len(xt))
            for i in range(0, len(xt), 128):
                idx = perm[i:i + 128]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
                opt.step()
        if epoch not in (0, args.epochs):
            continue
        with torch.no_grad():
            pre_tr, pre_te = hidden(xt), hidden(torch.from_numpy(xte))
            acc = float((out(torch.relu(pre_te)).argmax(1).numpy() == yte).mean())
        codes = CodeSet(np.packbits(pre_tr.numpy() > 0, axis=1), ytr, np.packbits(pre_te.numpy() > 0, axis=1), yte,
                        args.width, {"train/inputs": xtr, "test/inputs": xte,
                                     "train/penultimate": torch.relu(pre_tr).numpy(),
                                     "test/penultimate": torch.relu(pre_te).numpy()}, ("hidden",), (args.width,))
        start = time.perf_counter()
        bits = [int(b) for b in args.bits.split(",")]
        results[epoch] = FAMILY.compute(codes, retrieval={"protocol": "split_1k", "bits": bits + ["full"],
                                                          "units": ["all", "balanced"], "pr_curves": False})
        print(f"epoch {epoch}: test acc {acc:.4f}, db {results[epoch]['test/retrieval_db_size']}, "
              f"{time.perf_counter() - start:.1f} s")
    for epoch, res in results.items():
        print(f"\nepoch {epoch} (width {args.width}, full code {res['test/retrieval_full_bits']} bits): "
              f"map {res['test/map']:.4f} [opt {res['test/map_optimistic']:.4f}, pes {res['test/map_pessimistic']:.4f}] "
              f"map@1000 {res['test/map@1000']:.4f} map@5000 {res['test/map@5000']:.4f} "
              f"p@r2 {res['test/precision_r2']:.4f} (nonempty {res['test/precision_r2_nonempty']:.3f})")
        for name in sorted(k for k in res if k.startswith("test/map/")):
            _, _, method, b = name.split("/")
            print(f"  {method:18s} {b:>5s} bits  map {res[name]:.4f}  map@5000 {res[f'test/map@5000/{method}/{b}']:.4f}  "
                  f"p@r2 {res[f'test/precision_r2/{method}/{b}']:.4f}")


if __name__ == "__main__":
    main()
