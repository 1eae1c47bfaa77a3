"""The datasets: where their files live, how to fetch them, and how to read them into arrays.

Every source gives `input_shape` and `num_classes` without touching the disk, `ensure(download)`
to make its files present (download or extract when allowed, otherwise raise naming the exact
paths expected), and `load()` returning the official train and test splits as `Arrays`.

    digits         sklearn's 8x8 digits, embedded (no files). 1,797 images, no official split:
                   the first 1,437 are the training file and the last 360 the test set.
    mnist          ROOT/MNIST/raw/*-ubyte[.gz]          (torchvision layout; or the files in ROOT)
    fashion_mnist  ROOT/FashionMNIST/raw/*-ubyte[.gz]   (or in ROOT, e.g. Debian's
                                                         /usr/share/datasets/fashion-mnist)
    cifar10        ROOT/cifar-10-batches-py/            (extracted from ROOT/cifar-10-python.tar.gz
                                                         or .tar.xz when only the archive is there)
    synthetic      a seeded Gaussian mixture clipped to [0, 1], image-shaped; for fast tests
    moons, circles, spirals   seeded 2-D points, input_shape (2,) (activation_hash/data/planar.py)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from activation_hash.data.download import download_file
from activation_hash.data.planar import PLANAR, PLANAR_DEFAULTS, SPIRAL_DEFAULTS, PlanarSource
from activation_hash.data.readers import (check_idx_pair, extract_member_dir, read_cifar_batch, read_idx,
                                          read_idx_header)

DIGITS_TRAIN = 1437  # sklearn's digits: the first 1,437 images train, the last 360 test

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # apt install dataset-fashion-mnist
FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
CIFAR_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_ARCHIVES = (CIFAR_ARCHIVE, "cifar-10-python.tar.xz")  # the second: the shared CI copy
CIFAR_MD5 = {CIFAR_ARCHIVE: "c58f30108f718f92721af3b95e74349a"}
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class MissingDataError(FileNotFoundError, ValueError):
    """Dataset files are absent and downloading is off (or the dataset has no download)."""


@dataclass
class Arrays:
    """The official train and test splits. Images (N, C, H, W); pixel value / `scale` is in [0, 1]."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    scale: float


class Source(Protocol):
    name: str
    input_shape: tuple[int, int, int]
    num_classes: int

    def ensure(self, download: bool) -> None: ...

    def load(self) -> Arrays: ...


def _missing(name: str, root: Path, paths: Sequence[Path], can_download: bool,
             extra: str = "") -> MissingDataError:
    listed = "\n".join(f"  {p}" for p in paths)
    fix = ("pass data.download=true to fetch them, or " if can_download else "") + \
          "point data.root=... at a folder that has them"
    return MissingDataError(f"data.root={str(root)!r}: {name} files not found; expected\n{listed}\n{extra}{fix}")


DIGITS_SPLITS = ("shuffled", "sequential")


class DigitsSource:
    """sklearn.datasets.load_digits: 8x8 grey images with values 0..16, 10 classes.

    No official split. `split=shuffled` (default): a fixed permutation (seed 0, the same for every
    run) puts 1,437 images in training and 360 in test, so both hold every writer. `sequential`:
    the first 1,437 images train and the last 360 test; those come from other writers, which costs
    about 10 points of test accuracy."""
    name = "digits"
    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self, split: str = "shuffled"):
        if split not in DIGITS_SPLITS:
            raise ValueError(f"data.options.split={split!r}: must be one of {', '.join(DIGITS_SPLITS)}")
        self.split = split

    def ensure(self, download: bool) -> None:
        return None

    def load(self) -> Arrays:
        from sklearn.datasets import load_digits
        digits = load_digits()
        x = digits.images.astype(np.uint8).reshape(-1, *self.input_shape)
        y = digits.target.astype(np.int64)
        if self.split == "shuffled":
            order = np.random.default_rng(0).permutation(len(y))
            x, y = x[order], y[order]
        return Arrays(x[:DIGITS_TRAIN], y[:DIGITS_TRAIN], x[DIGITS_TRAIN:], y[DIGITS_TRAIN:], scale=16.0)


class IdxSource:
    """MNIST-format datasets (four IDX files), in ROOT/FOLDER/raw/ or directly in ROOT."""
    input_shape = (1, 28, 28)
    num_classes = 10

    def __init__(self, name: str, folder: str, root: str | Path, mirrors: Sequence[str],
                 checksums: Mapping[str, str | None], also: Sequence[Path] = ()):
        self.name, self.folder, self.root, self.also = name, folder, Path(root), tuple(also)
        self.mirrors, self.checksums = tuple(mirrors), dict(checksums)

    @property
    def download_dir(self) -> Path:
        return self.root / self.folder / "raw"

    def find_files(self) -> list[Path] | None:
        """The four files (gz or raw) from the first folder that has all of them, else None."""
        for folder in (self.download_dir, self.root, *self.also):
            found = []
            for base in IDX_FILES:
                candidates = [folder / f"{base}.gz", folder / base]
                hit = next((p for p in candidates if p.is_file()), None)
                if hit is None:
                    break
                found.append(hit)
            else:
                return found
        return None

    def ensure(self, download: bool) -> None:
        files = self.find_files()
        if files is None:
            expected = [self.download_dir / f"{base}.gz" for base in IDX_FILES]
            if not download:
                raise _missing(self.name, self.root, expected, True,
                               f"(the same files without .gz, or directly in {self.root}"
                               + "".join(f" or {p}" for p in self.also) + ", are accepted too);\n")
            for path in expected:
                if not path.is_file():
                    download_file(path.name, self.mirrors, path, self.checksums.get(path.name))
            files = expected
        for path in files:
            read_idx_header(path)

    def load(self) -> Arrays:
        files = self.find_files()
        if files is None:
            self.ensure(download=False)  # raises, naming the expected paths
            files = self.find_files()
        train_x_path, train_y_path, test_x_path, test_y_path = files
        splits = []
        for x_path, y_path in ((train_x_path, train_y_path), (test_x_path, test_y_path)):
            x, y = read_idx(x_path), read_idx(y_path)
            check_idx_pair(x, y, x_path, y_path, self.input_shape[1:], self.num_classes)
            splits.append((x.reshape(-1, *self.input_shape), y.astype(np.int64)))
        (x_train, y_train), (x_test, y_test) = splits
        return Arrays(x_train, y_train, x_test, y_test, scale=255.0)


class Cifar10Source:
    """CIFAR-10 python batches in ROOT/cifar-10-batches-py/ (or directly in ROOT)."""
    name = "cifar10"
    input_shape = (3, 32, 32)
    num_classes = 10

    def __init__(self, root: str | Path, mirrors: Sequence[str], checksums: Mapping[str, str | None]):
        self.root = Path(root)
        self.mirrors, self.checksums = tuple(mirrors), dict(checksums)

    def batch_dir(self) -> Path | None:
        for folder in (self.root / CIFAR_DIR, self.root):
            if all((folder / b).is_file() for b in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH)):
                return folder
        return None

    def ensure(self, download: bool) -> None:
        if self.batch_dir() is not None:
            return
        archive = next((self.root / a for a in CIFAR_ARCHIVES if (self.root / a).is_file()), None)
        if archive is None:
            if not download:
                expected = [self.root / CIFAR_DIR / b for b in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH)]
                raise _missing(self.name, self.root, expected, True,
                               f"(or the archive {self.root / CIFAR_ARCHIVE}, or .tar.xz, to extract);\n")
            archive = download_file(CIFAR_ARCHIVE, self.mirrors, self.root / CIFAR_ARCHIVE,
                                    self.checksums.get(CIFAR_ARCHIVE))
        extract_member_dir(archive, CIFAR_DIR, self.root)
        if self.batch_dir() is None:
            missing = [self.root / CIFAR_DIR / b for b in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH)
                       if not (self.root / CIFAR_DIR / b).is_file()]
            raise _missing(self.name, self.root, missing, False,
                           f"(still missing after extracting {archive}: remove an incomplete "
                           f"{self.root / CIFAR_DIR} and retry);\n")

    def load(self) -> Arrays:
        folder = self.batch_dir()
        if folder is None:
            self.ensure(download=False)
            folder = self.batch_dir()
        train = [read_cifar_batch(folder / b) for b in CIFAR_TRAIN_BATCHES]
        x_test, y_test = read_cifar_batch(folder / CIFAR_TEST_BATCH)
        x_train = np.concatenate([x for x, _ in train])
        y_train = np.concatenate([y for _, y in train])
        return Arrays(x_train, y_train, x_test, y_test, scale=255.0)


SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "n_train": 400, "n_test": 200, "shape": (1, 4, 4), "num_classes": 4, "noise": 0.15, "data_seed": 0,
}


class SyntheticSource:
    """Gaussian blobs around random class centres in [0.2, 0.8]^D, clipped to [0, 1].

    `data_seed` fixes the dataset itself (like a file on disk); the run's `seed` still picks
    subsets, label noise and batch order. With noise 0.15 and D = 16 the classes barely overlap.
    """
    name = "synthetic"

    def __init__(self, n_train: int = 400, n_test: int = 200, shape: Sequence[int] = (1, 4, 4),
                 num_classes: int = 4, noise: float = 0.15, data_seed: int = 0):
        shape = tuple(int(s) for s in shape)
        for key, value, ok, allowed in (
                ("n_train", n_train, isinstance(n_train, int) and n_train >= 1, "an int >= 1"),
                ("n_test", n_test, isinstance(n_test, int) and n_test >= 1, "an int >= 1"),
                ("shape", list(shape), len(shape) == 3 and min(shape) >= 1, "[C, H, W] with every size >= 1"),
                ("num_classes", num_classes, isinstance(num_classes, int) and num_classes >= 2, "an int >= 2"),
                ("noise", noise, isinstance(noise, (int, float)) and noise >= 0, "a number >= 0")):
            if not ok:
                raise ValueError(f"data.options.{key}={value!r}: must be {allowed}")
        self.n_train, self.n_test, self.noise, self.data_seed = n_train, n_test, float(noise), int(data_seed)
        self.input_shape = shape
        self.num_classes = num_classes

    def ensure(self, download: bool) -> None:
        return None

    def load(self) -> Arrays:
        rng = np.random.default_rng(self.data_seed)
        dim = int(np.prod(self.input_shape))
        centres = rng.uniform(0.2, 0.8, size=(self.num_classes, dim))

        def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
            y = rng.permutation(np.arange(n) % self.num_classes)
            x = centres[y] + self.noise * rng.standard_normal((n, dim))
            return np.clip(x, 0.0, 1.0).astype(np.float32).reshape(n, *self.input_shape), y.astype(np.int64)

        x_train, y_train = draw(self.n_train)
        x_test, y_test = draw(self.n_test)
        return Arrays(x_train, y_train, x_test, y_test, scale=1.0)


DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "synthetic", *PLANAR)
OPTION_DEFAULTS: dict[str, Mapping[str, Any]] = {
    "digits": {"split": "shuffled"}, "synthetic": SYNTHETIC_DEFAULTS, "moons": PLANAR_DEFAULTS, "circles": PLANAR_DEFAULTS,
    "spirals": SPIRAL_DEFAULTS}


def make_source(name: str, root: str | Path | None, mirrors: Sequence[str] | None = None,
                checksums: Mapping[str, str | None] | None = None,
                options: Mapping[str, Any] | None = None) -> Source:
    """Build the source called `name`. `mirrors` replaces the official base URLs and `checksums`
    overrides the official MD5s per file name (None as a value skips the check)."""
    if name not in DATASETS:
        raise ValueError(f"data.name={name!r}: unknown dataset; allowed: {', '.join(DATASETS)}")
    options = dict(options or {})
    allowed_options = OPTION_DEFAULTS.get(name, {})
    unknown = sorted(set(options) - set(allowed_options))
    if unknown:
        allowed = ", ".join(allowed_options) or "none for this dataset"
        raise ValueError(f"data.options has unknown key(s) {unknown} for data.name={name!r}; allowed: {allowed}")
    if name == "digits":
        return DigitsSource(**options)
    if name == "synthetic":
        return SyntheticSource(**options)
    if name in PLANAR:
        return PlanarSource(name, **options)
    if root is None:
        raise ValueError(f"data.root=None: the {name} dataset needs a folder for its files")
    if name == "mnist":
        return IdxSource("mnist", "MNIST", root, mirrors or MNIST_MIRRORS, {**MNIST_MD5, **(checksums or {})})
    if name == "fashion_mnist":
        return IdxSource("fashion_mnist", "FashionMNIST", root, mirrors or FASHION_MIRRORS,
                         {**FASHION_MD5, **(checksums or {})}, also=(DEBIAN_FASHION_MNIST,))
    return Cifar10Source(root, mirrors or CIFAR_MIRRORS, {**CIFAR_MD5, **(checksums or {})})
