"""The on-disk code format: `codes/epoch=NNNN.npz`, written atomically.

Keys: `train_codes`, `test_codes` (uint8, np.packbits(bits, axis=1) layout), `train_labels`,
`test_labels` (int64), `n_bits` (int), plus optional extras (`layer_names`, `layer_units`,
`train_clean_labels`, `epoch`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from activation_hash.atomic import atomic_write, atomic_write_json

__all__ = ["REQUIRED_KEYS", "atomic_write", "atomic_write_json", "codes_path", "load_codes", "save_codes"]

REQUIRED_KEYS = ("train_codes", "test_codes", "train_labels", "test_labels", "n_bits")


def codes_path(directory: str | Path, epoch: int) -> Path:
    return Path(directory) / f"epoch={epoch:04d}.npz"


def save_codes(path: str | Path, *, train_codes: np.ndarray, test_codes: np.ndarray,
               train_labels: np.ndarray, test_labels: np.ndarray, n_bits: int, **extra: Any) -> Path:
    arrays = dict(train_codes=train_codes, test_codes=test_codes,
                  train_labels=np.asarray(train_labels, dtype=np.int64),
                  test_labels=np.asarray(test_labels, dtype=np.int64),
                  n_bits=np.int64(n_bits), **{k: np.asarray(v) for k, v in extra.items()})
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def load_codes(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"codes file {path} does not exist")
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in REQUIRED_KEYS if k not in npz.files]
        if missing:
            raise ValueError(f"{path} is not a codes file: missing key(s) {missing}; "
                             f"expected {list(REQUIRED_KEYS)}")
        data = {k: npz[k] for k in npz.files}
    data["n_bits"] = int(data["n_bits"])
    return data
