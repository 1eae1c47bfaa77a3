"""Per-capture statistics of a run's saved codes: how often units fire, how uncertain each unit
is, and how far apart the codes of different classes lie. The getting-started guide reads the
early rise of redundancy from this table.

    python -m activation_hash codes.save=true              # the default run, codes kept
    python docs/examples/code_statistics.py outputs/runs/DATE/TIME

Columns (training codes, every captured unit): `firing` the mean fraction of images a unit fires
on; `entropy` the mean per-unit entropy of firing, in bits; `between` the mean Hamming distance
between codes of different classes (over a fixed sample of 500 pairs per class pair).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout
from activation_hash.codes.io import load_codes  # noqa: E402


def statistics(codes: np.ndarray, labels: np.ndarray, n_bits: int, pairs: int = 500, seed: int = 0) -> dict:
    """`codes`: packed bits (np.packbits(..., axis=1)); labels: one class per row."""
    bits = np.unpackbits(codes, axis=1, count=n_bits).astype(bool)
    p = bits.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(p > 0, p * np.log2(p), 0) + np.where(p < 1, (1 - p) * np.log2(1 - p), 0))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    distances = []
    for i, a in enumerate(classes):
        for b in classes[i + 1:]:
            rows_a = rng.choice(np.flatnonzero(labels == a), pairs)
            rows_b = rng.choice(np.flatnonzero(labels == b), pairs)
            distances.append((bits[rows_a] != bits[rows_b]).sum(axis=1).mean())
    return {"firing": float(p.mean()), "entropy": float(h.mean()), "between": float(np.mean(distances))}


def main(run_dir: str) -> None:
    files = sorted((Path(run_dir) / "codes").glob("epoch=*.npz"))
    if not files:
        sys.exit(f"error: run_dir={run_dir}: no codes/epoch=NNNN.npz (run with codes.save=true)")
    print(" epoch   firing   entropy   between")
    for path in files:
        saved = load_codes(path)
        s = statistics(saved["train_codes"], saved["train_labels"], int(saved["n_bits"]))
        epoch = int(path.stem.split("=")[1])
        print(f"{epoch:>6} {s['firing']:>8.3f} {s['entropy']:>9.3f} {s['between']:>9.1f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
