"""InMemoryDataModule: one LightningDataModule for every dataset, held as tensors in memory.

What `setup()` builds from the official train / test files (all choices seeded by `seed`, each
from its own random stream, so changing one option never reshuffles another):

    train file -> first (1 - val_fraction) = the training pool, last val_fraction = validation
                  (the authors' split); `train_size` draws that many samples from the pool
                  (a seeded permutation's first train_size, kept in file order, so smaller
                  subsets are nested in larger ones for the same seed)
    test file  -> `test_size` samples drawn the same way, or all of it
    label_noise -> round(label_noise * n_train) training samples, chosen without replacement,
                  get a label drawn uniformly from ALL classes, the true one included (the
                  authors' convention), so about label_noise * (K - 1) / K of the labels end up
                  wrong. `noisy_mask` marks the chosen samples; `y_train_clean` keeps the truth.
    random_inputs -> random inputs of the same shape replace the inputs of the training set
                  (`train`), of the validation and test sets (`eval`), or all (`both`); labels are
                  kept. `random_inputs_dist`: uniform01 (i.i.d. U[0, 1) pixels, the default) |
                  uniform_pm1 | unit_ball | gaussian (activation_hash.data.random_inputs).

Inputs are float32 (N, C, H, W) in [0, 1], labels int64. Every value is checked in `__init__`
(and against the data in `setup()`) before any training, with errors of the form
`data.KEY=VALUE: what is allowed`.
"""

from __future__ import annotations

import os
import weakref
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from activation_hash.data.augment import make_augment
from activation_hash.data.random_inputs import DISTRIBUTIONS, random_inputs
from activation_hash.data.sources import DATASETS, Arrays, Source, make_source
from activation_hash.data.tensor_loader import TensorBatchLoader

RANDOM_INPUTS = ("none", "train", "eval", "both")
FILE_DATASETS = ("mnist", "fashion_mnist", "cifar10")


def default_root() -> str:
    """Where downloadable datasets live unless data.root says otherwise."""
    return os.environ.get("ACTIVATION_HASH_DATA", "data")


def seeded_rng(seed: int, purpose: str) -> np.random.Generator:
    """An independent random stream per purpose (subset, label noise, ...) for one seed."""
    return np.random.default_rng([seed, zlib.crc32(purpose.encode())])


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


class InMemoryDataModule(pl.LightningDataModule):
    """See the module docstring. `input_shape` and `num_classes` are known right after __init__."""

    def __init__(self, name: str = "digits", root: str | Path | None = None, download: bool = False,
                 train_size: int | None = None, val_fraction: float = 0.2, label_noise: float = 0.0,
                 random_inputs: str | None = "none", test_size: int | None = None, batch_size: int = 128,
                 eval_batch_size: int = 1024, seed: int = 0, shuffle: bool = True, drop_last: bool = False,
                 mirrors: Sequence[str] | None = None, checksums: Mapping[str, str | None] | None = None,
                 options: Mapping[str, Any] | None = None, augment: str | None = None,
                 random_inputs_dist: str = "uniform01"):
        super().__init__()
        self.augment = make_augment(augment)  # data.augment (training batches only): none | flip_crop
        random_inputs = "none" if random_inputs is None else random_inputs
        if root is None and name in FILE_DATASETS:
            root = default_root()
        _validate(name=name, root=root, download=download, train_size=train_size, val_fraction=val_fraction,
                  label_noise=label_noise, random_inputs=random_inputs, test_size=test_size,
                  batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed, shuffle=shuffle,
                  drop_last=drop_last)
        self.name = name
        self.root = Path(os.path.abspath(os.path.expanduser(str(root)))) if root is not None else None
        self.download = download
        self.train_size, self.test_size = train_size, test_size
        self.val_fraction, self.label_noise = float(val_fraction), float(label_noise)
        self.random_inputs = random_inputs
        if random_inputs_dist not in DISTRIBUTIONS:
            raise ValueError(f"data.random_inputs_dist={random_inputs_dist!r}: allowed: {', '.join(DISTRIBUTIONS)}")
        self.random_inputs_dist = random_inputs_dist
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.seed, self.shuffle, self.drop_last = int(seed), shuffle, drop_last
        if isinstance(mirrors, str):
            mirrors = [mirrors]
        self.source: Source = make_source(name, self.root, list(mirrors) if mirrors else None,
                                          dict(checksums) if checksums else None,
                                          dict(options) if options else None)
        self.device = torch.device("cpu")
        self._loaders: weakref.WeakSet[TensorBatchLoader] = weakref.WeakSet()
        self._ready = False
        self.x_train = self.y_train = self.y_train_clean = self.noisy_mask = None
        self.x_val = self.y_val = self.x_test = self.y_test = None
        self.n_train_file = self.n_test_file = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.source.input_shape)

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    def describe(self) -> dict[str, Any]:
        """Name, input shape and classes (always), and the split sizes once set up."""
        info: dict[str, Any] = {"name": self.name, "input_shape": self.input_shape,
                                "num_classes": self.num_classes}
        if self._ready:
            info.update(n_train=len(self.y_train), n_val=len(self.y_val), n_test=len(self.y_test),
                        n_train_file=self.n_train_file, n_test_file=self.n_test_file,
                        n_noisy=int(self.noisy_mask.sum()), random_inputs=self.random_inputs)
        return info

    def prepare_data(self) -> None:
        """Make the dataset files present: download (when data.download) or extract; no loading."""
        self.source.ensure(self.download)

    def setup(self, stage: str | None = None) -> None:
        """Load and build every split once; later calls (any stage) return at once."""
        if self._ready:
            return
        self.source.ensure(self.download)
        arrays = self.source.load()
        self._build(arrays)
        self._ready = True
        if self.device != torch.device("cpu"):  # to() was called before setup()
            self.to(self.device)

    def _build(self, arrays: Arrays) -> None:
        n_file, n_test_file = len(arrays.y_train), len(arrays.y_test)
        n_val = int(round(n_file * self.val_fraction))
        n_pool = n_file - n_val
        if n_pool < 1:
            raise ValueError(f"data.val_fraction={self.val_fraction}: leaves no training samples out of the "
                             f"{n_file} in the {self.name} training file")
        held_out = (f" minus the last {n_val} kept for validation by data.val_fraction={self.val_fraction}"
                    if n_val else "")
        train_idx = self._subset(n_pool, self.train_size, "train_size", "subset/train",
                                 f"{n_file} in the {self.name} training file{held_out}")
        test_idx = self._subset(n_test_file, self.test_size, "test_size", "subset/test",
                                f"the size of the {self.name} test set")
        scale = arrays.scale
        self.n_train_file, self.n_test_file = n_file, n_test_file
        self.x_train = _to_float(arrays.x_train, train_idx, scale)
        self.y_train_clean = torch.from_numpy(arrays.y_train[train_idx].astype(np.int64))
        self.x_val = _to_float(arrays.x_train, np.arange(n_pool, n_file), scale)
        self.y_val = torch.from_numpy(arrays.y_train[n_pool:].astype(np.int64))
        self.x_test = _to_float(arrays.x_test, test_idx, scale)
        self.y_test = torch.from_numpy(arrays.y_test[test_idx].astype(np.int64))
        self.y_train, self.noisy_mask = self._noisy_labels(self.y_train_clean)
        if self.random_inputs in ("train", "both"):
            self.x_train = self._uniform(self.x_train, "random_inputs/train")
        if self.random_inputs in ("eval", "both"):
            self.x_val = self._uniform(self.x_val, "random_inputs/val")
            self.x_test = self._uniform(self.x_test, "random_inputs/test")

    def _subset(self, n: int, size: int | None, key: str, purpose: str, available: str) -> np.ndarray:
        if size is None or size == n:
            return np.arange(n)
        if size > n:
            raise ValueError(f"data.{key}={size}: larger than the {n} samples available; allowed: 1..{n} "
                             f"or null for all ({available})")
        return np.sort(seeded_rng(self.seed, purpose).permutation(n)[:size])

    def _noisy_labels(self, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(clean)
        mask = torch.zeros(n, dtype=torch.bool)
        labels = clean.clone()
        k = int(round(self.label_noise * n))
        if k:
            rng = seeded_rng(self.seed, "label_noise")
            chosen = rng.choice(n, size=k, replace=False)
            labels[torch.from_numpy(chosen)] = torch.from_numpy(rng.integers(0, self.num_classes, size=k))
            mask[torch.from_numpy(chosen)] = True
        return labels, mask

    def _uniform(self, like: torch.Tensor, purpose: str) -> torch.Tensor:
        return torch.from_numpy(random_inputs(seeded_rng(self.seed, purpose), tuple(like.shape),
                                              self.random_inputs_dist))

    def to(self, device: torch.device | str) -> InMemoryDataModule:
        """Move every held tensor, and every loader handed out so far, to `device`."""
        self.device = torch.device(device)
        for attr in ("x_train", "y_train", "y_train_clean", "noisy_mask", "x_val", "y_val", "x_test", "y_test"):
            value = getattr(self, attr)
            if value is not None:
                setattr(self, attr, value.to(self.device))
        for loader in list(self._loaders):
            loader.to(self.device)
        return self

    def _loader(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False,
                drop_last: bool = False, whole: bool = False, augment=None) -> TensorBatchLoader:
        self.setup()
        rank_args = {"rank": 0, "world_size": 1} if whole else {}
        loader = TensorBatchLoader(x, y, batch_size, shuffle=shuffle, seed=self.seed, drop_last=drop_last,
                                   augment=augment, **rank_args)
        self._loaders.add(loader)
        return loader

    def train_dataloader(self) -> TensorBatchLoader:
        return self._loader(self.x_train, self.y_train, self.batch_size, self.shuffle, self.drop_last,
                            augment=self.augment)

    def val_dataloader(self) -> TensorBatchLoader:
        return self._loader(self.x_val, self.y_val, self.eval_batch_size)

    def test_dataloader(self) -> TensorBatchLoader:
        return self._loader(self.x_test, self.y_test, self.eval_batch_size)

    def eval_loaders(self) -> dict[str, TensorBatchLoader]:
        """In-order loaders over the whole (noisy-labelled) training set and the test set, never
        sharded: what the code-capture callback runs on rank 0."""
        return {"train": self._loader(self.x_train, self.y_train, self.eval_batch_size, whole=True),
                "test": self._loader(self.x_test, self.y_test, self.eval_batch_size, whole=True)}

    def __repr__(self) -> str:
        return f"InMemoryDataModule({', '.join(f'{k}={v!r}' for k, v in self.describe().items())})"

    __str__ = __repr__  # LightningDataModule's own __str__ builds every dataloader


def _to_float(images: np.ndarray, index: np.ndarray, scale: float) -> torch.Tensor:
    """Selected images as float32 in [0, 1] (uint8 is indexed before the 4x larger float copy)."""
    chosen = torch.from_numpy(np.ascontiguousarray(images[index]))
    out = chosen.to(torch.float32)
    return out.div_(scale) if scale != 1.0 else out


def _validate(**values: Any) -> None:
    """Static checks of the constructor arguments; raises ValueError `data.KEY=VALUE: allowed`."""
    def fail(key: str, allowed: str) -> None:
        raise ValueError(f"data.{key}={values[key]!r}: {allowed}")

    if values["name"] not in DATASETS:
        fail("name", f"unknown dataset; allowed: {', '.join(DATASETS)}")
    root = values["root"]
    if root is not None and Path(os.path.expanduser(str(root))).exists() \
            and not Path(os.path.expanduser(str(root))).is_dir():
        fail("root", "is an existing file; it must be a folder (it may not exist yet when data.download=true)")
    for key in ("download", "shuffle", "drop_last"):
        if not isinstance(values[key], bool):
            fail(key, "must be true or false")
    for key in ("train_size", "test_size"):
        if values[key] is not None and not (_is_int(values[key]) and values[key] >= 1):
            fail(key, "must be an int >= 1, or null for all available samples")
    if not (_is_number(values["val_fraction"]) and 0 <= values["val_fraction"] < 1):
        fail("val_fraction", "must be a number in [0, 1) (0 disables validation)")
    if not (_is_number(values["label_noise"]) and 0 <= values["label_noise"] <= 1):
        fail("label_noise", "must be a number in [0, 1]")
    if values["random_inputs"] not in RANDOM_INPUTS:
        fail("random_inputs", f"allowed: {', '.join(RANDOM_INPUTS)}")
    for key in ("batch_size", "eval_batch_size"):
        if not (_is_int(values[key]) and values[key] >= 1):
            fail(key, "must be an int >= 1")
    if not (_is_int(values["seed"]) and values["seed"] >= 0):
        fail("seed", "must be an int >= 0")
