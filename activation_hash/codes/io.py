"""The on-disk code format: `codes/epoch=NNNN.npz`, written atomically, and its one reader.

Keys: `train_codes`, `test_codes` (uint8, np.packbits(bits, axis=1) layout), `train_labels`,
`test_labels` (int64), `n_bits` (int), plus optional extras (`layer_names`, `layer_units`,
`train_clean_labels`, `epoch`, per-sample arrays such as `train/penultimate`).

`load_codes` is the only reader (``python -m activation_hash.evaluate`` uses it too): every
problem with the file or one of its fields raises ``CodesFileError`` (a ValueError) whose text
reads ``key=value: what is allowed``. Imports numpy only (no torch).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from activation_hash.atomic import atomic_write, atomic_write_json

__all__ = ["REQUIRED_KEYS", "CodesFileError", "atomic_write", "atomic_write_json", "check_fields", "codes_path",
           "load_codes", "save_codes"]

REQUIRED_KEYS = ("train_codes", "test_codes", "train_labels", "test_labels", "n_bits")


class CodesFileError(ValueError):
    """A codes file that cannot be read, or whose fields break the format."""


def codes_path(directory: str | Path, epoch: int) -> Path:
    return Path(directory) / f"epoch={epoch:04d}.npz"


def save_codes(path: str | Path, *, train_codes: np.ndarray, test_codes: np.ndarray,
               train_labels: np.ndarray, test_labels: np.ndarray, n_bits: int, **extra: Any) -> Path:
    arrays = dict(train_codes=train_codes, test_codes=test_codes,
                  train_labels=np.asarray(train_labels, dtype=np.int64),
                  test_labels=np.asarray(test_labels, dtype=np.int64),
                  n_bits=np.int64(n_bits), **{k: np.asarray(v) for k, v in extra.items()})
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def _shape(a: np.ndarray) -> str:
    return f"{a.dtype} array of shape {a.shape}"


def check_fields(data: dict[str, np.ndarray], path: str | Path = "codes") -> dict[str, Any]:
    """Check every required field's dtype and shape (and per-sample extras' row counts); return
    the data with ``n_bits`` as an int. Raises CodesFileError ``key=value: allowed (codes file path)``."""
    def bad(key: str, value: str, allowed: str) -> CodesFileError:
        return CodesFileError(f"{key}={value}: {allowed} (codes file {path})")

    n_bits = np.asarray(data["n_bits"])
    if n_bits.ndim != 0 or not np.issubdtype(n_bits.dtype, np.integer) or int(n_bits) < 0:
        raise bad("n_bits", str(n_bits.tolist()) if n_bits.size < 5 else _shape(n_bits), "must be one integer >= 0")
    n_bits = int(n_bits)
    width = (n_bits + 7) // 8
    rows = {}
    for split in ("train", "test"):
        key = f"{split}_codes"
        codes = data[key]
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != width or codes.shape[0] == 0:
            raise bad(key, _shape(codes), f"must be uint8 of shape (n >= 1, {width}) "
                                          f"(np.packbits of n_bits={n_bits} bits, axis=1)")
        rows[split] = codes.shape[0]
        key = f"{split}_labels"
        labels = data[key]
        if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (rows[split],):
            raise bad(key, _shape(labels), f"must be integers of shape ({rows[split]},), one per {split} code")
    for key, value in data.items():
        split = key.split("/", 1)[0] if "/" in key else None
        if split in rows and (value.ndim == 0 or value.shape[0] != rows[split]):
            raise bad(key, _shape(value), f"must have {rows[split]} rows, one per {split} code")
    return {**data, "n_bits": n_bits}


def load_codes(path: str | Path) -> dict[str, Any]:
    """The arrays of a codes file, fields checked (``check_fields``); CodesFileError otherwise
    (FileNotFoundError-free: an absent file is a CodesFileError too)."""
    path = Path(path)
    if path.is_dir():
        raise CodesFileError(f"codes={path}: is a directory, not a codes file (.npz)")
    if not path.is_file():
        raise CodesFileError(f"codes={path}: no such file")
    if not zipfile.is_zipfile(path):
        raise CodesFileError(f"codes={path}: is not an npz file (expected np.savez output, e.g. codes/epoch=0003.npz)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in REQUIRED_KEYS if k not in npz.files]
            if missing:
                raise CodesFileError(f"codes={path}: is not a codes file: missing key(s) {missing}; "
                                     f"expected {list(REQUIRED_KEYS)}")
            data = {k: npz[k] for k in npz.files}
    except CodesFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise CodesFileError(f"codes={path}: is truncated or corrupt ({err})") from None
    except ValueError as err:
        raise CodesFileError(f"codes={path}: cannot be read: {err}") from None
    return check_fields(data, path)
