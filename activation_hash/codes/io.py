"""The on-disk code format: `codes/epoch=NNNN.npz`, written atomically.

Keys: `train_codes`, `test_codes` (uint8, np.packbits(bits, axis=1) layout), `train_labels`,
`test_labels` (int64), `n_bits` (int), plus optional extras (`layer_names`, `layer_units`,
`train_clean_labels`, `epoch`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REQUIRED_KEYS = ("train_codes", "test_codes", "train_labels", "test_labels", "n_bits")


def codes_path(directory: str | Path, epoch: int) -> Path:
    return Path(directory) / f"epoch={epoch:04d}.npz"


def atomic_write_bytes(path: str | Path, write) -> Path:
    """Call write(file_object) on a temp file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def save_codes(path: str | Path, *, train_codes: np.ndarray, test_codes: np.ndarray,
               train_labels: np.ndarray, test_labels: np.ndarray, n_bits: int, **extra: Any) -> Path:
    arrays = dict(train_codes=train_codes, test_codes=test_codes,
                  train_labels=np.asarray(train_labels, dtype=np.int64),
                  test_labels=np.asarray(test_labels, dtype=np.int64),
                  n_bits=np.int64(n_bits), **{k: np.asarray(v) for k, v in extra.items()})
    return atomic_write_bytes(path, lambda f: np.savez(f, **arrays))


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
