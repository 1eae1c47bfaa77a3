"""Readers for the datasets' official on-disk formats, with errors that name the bad file.

- IDX (MNIST, Fashion-MNIST): big-endian header `0 0 TYPE NDIM`, NDIM int32 sizes, then the
  array; gzip-compressed or raw (detected from the first bytes, not the file name).
- CIFAR-10 "python version": pickled dicts with b"data" (N x 3072 uint8, channel-major) and
  b"labels"; read with an unpickler that only allows the numpy globals those files use.
- Archives (.tar.gz / .tar.xz): extracted into a temporary folder next to the target and moved
  into place, so an interrupted extraction never leaves a half-filled folder behind.
"""

from __future__ import annotations

import gzip
import lzma
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

CIFAR_IMAGE_SHAPE = (3, 32, 32)


class DatasetFileError(ValueError):
    """A dataset file exists but is truncated, corrupt or not in the expected format."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}")


def read_bytes(path: str | Path) -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic bytes."""
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetFileError(path, f"corrupt or truncated gzip data ({err}); delete the file and "
                               "download it again") from err


def parse_idx(data: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array of the shape its header declares."""
    if len(data) < 4:
        raise DatasetFileError(path, f"only {len(data)} bytes, too short for an IDX header")
    zero1, zero2, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero1 != 0 or zero2 != 0 or type_code not in IDX_DTYPES or ndim == 0:
        raise DatasetFileError(path, f"bad IDX magic number {data[:4].hex()} (expected 0000TTDD with "
                               f"type TT in {sorted(IDX_DTYPES)} and DD dimensions >= 1)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetFileError(path, f"truncated IDX header: {ndim} dimensions need {header} bytes, "
                               f"file has {len(data)}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(dims)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        kind = "truncated" if found < expected else "has trailing bytes"
        raise DatasetFileError(path, f"{kind}: header declares shape {dims} of {dtype.name} "
                               f"({expected} data bytes) but the file holds {found}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip or raw)."""
    return parse_idx(read_bytes(path), path)


def read_idx_header(path: str | Path) -> tuple[int, tuple[int, ...]]:
    """The (type code, dims) of an IDX file, reading only its first bytes (cheap validation)."""
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == GZIP_MAGIC
        opener = gzip.open if gz else open
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] or head[1] or head[2] not in IDX_DTYPES or head[3] == 0:
                raise DatasetFileError(path, f"bad IDX magic number {head.hex()}")
            dims_bytes = f.read(4 * head[3])
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetFileError(path, f"unreadable ({err})") from err
    if len(dims_bytes) < 4 * head[3]:
        raise DatasetFileError(path, "truncated IDX header")
    return head[2], tuple(int(d) for d in np.frombuffer(dims_bytes, dtype=">u4"))


def check_idx_pair(images: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path,
                   image_hw: tuple[int, int], num_classes: int) -> None:
    """Check that an IDX image file and its label file form one dataset split."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != image_hw:
        raise DatasetFileError(image_path, f"expected uint8 images of shape (N, {image_hw[0]}, {image_hw[1]}), "
                               f"found {images.dtype.name} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetFileError(label_path, f"expected a 1-D uint8 label array, found {labels.dtype.name} "
                               f"{labels.shape}")
    if len(labels) != len(images):
        raise DatasetFileError(label_path, f"{len(labels)} labels for {len(images)} images in {image_path}")
    if len(labels) and int(labels.max()) >= num_classes:
        raise DatasetFileError(label_path, f"label {int(labels.max())} outside 0..{num_classes - 1}")


class _CifarUnpickler(pickle.Unpickler):
    """Loads plain dicts, lists, bytes and numpy arrays; refuses any other global."""

    ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file -> (uint8 images (N, 3, 32, 32), int64 labels (N,))."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, ImportError) as err:
        raise DatasetFileError(path, f"not a readable CIFAR pickle batch ({type(err).__name__}: {err})") from err
    if not isinstance(batch, dict):
        raise DatasetFileError(path, f"expected a pickled dict, found {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DatasetFileError(path, f"missing the b'data' or b'labels' entry (keys: {sorted(map(str, batch))})")
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    row = int(np.prod(CIFAR_IMAGE_SHAPE))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row:
        raise DatasetFileError(path, f"expected uint8 data of shape (N, {row}), found {data.dtype.name} {data.shape}")
    if labels.shape != (len(data),):
        raise DatasetFileError(path, f"{labels.size} labels for {len(data)} images")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DatasetFileError(path, f"labels outside 0..9 (min {labels.min()}, max {labels.max()})")
    return data.reshape(-1, *CIFAR_IMAGE_SHAPE), labels


def extract_member_dir(archive: str | Path, member_dir: str, dest_root: str | Path) -> Path:
    """Extract the folder `member_dir` of a tar archive into `dest_root/member_dir`, atomically.

    Returns the extracted folder. If another process finished the same extraction first, its
    result is kept and ours discarded.
    """
    archive, dest_root = Path(archive), Path(dest_root)
    target = dest_root / member_dir
    tmp = Path(tempfile.mkdtemp(prefix=f".{member_dir}.extract-", dir=dest_root))
    try:
        try:
            # one streaming pass: listing members first would decompress the archive twice
            with tarfile.open(archive, "r|*") as tar:
                found = False
                for member in tar:
                    if member.name == member_dir or member.name.startswith(member_dir + "/"):
                        _extract(tar, member, tmp)
                        found = True
            if not found:
                raise DatasetFileError(archive, f"the archive has no '{member_dir}/' folder")
        except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, gzip.BadGzipFile) as err:
            raise DatasetFileError(archive, f"corrupt or truncated archive ({type(err).__name__}: {err}); "
                                   "delete it and download it again") from err
        try:
            os.replace(tmp / member_dir, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):
        tar.extract(member, dest, filter="data")
        return
    # Pythons without extraction filters: refuse anything that could land outside `dest`
    if member.name.startswith("/") or ".." in Path(member.name).parts or not (member.isfile() or member.isdir()):
        raise tarfile.TarError(f"unsafe archive member {member.name!r}")
    tar.extract(member, dest)
