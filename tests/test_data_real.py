"""The real datasets (the shared CI copies) through the DataModule, when they are present.

Shared copies: $ACTIVATION_HASH_SHARED_DATASETS, default <repo>/../shared/datasets (MNIST IDX
files and the CIFAR-10 archive); Fashion-MNIST from Debian's dataset-fashion-mnist package.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from activation_hash.data import InMemoryDataModule

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ACTIVATION_HASH_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
CIFAR_ARCHIVE = SHARED / "cifar-10-python.tar.xz"
FASHION = Path("/usr/share/datasets/fashion-mnist")


def _require(path: Path, what: str) -> None:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (set ACTIVATION_HASH_SHARED_DATASETS or install it)")


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding only a link to the shared archive; the DataModule extracts it (once)."""
    _require(CIFAR_ARCHIVE, "the CIFAR-10 archive")
    root = tmp_path_factory.mktemp("cifar")
    (root / CIFAR_ARCHIVE.name).symlink_to(CIFAR_ARCHIVE)
    InMemoryDataModule("cifar10", root=str(root)).prepare_data()
    return root


@pytest.fixture(scope="module")
def mnist_full() -> InMemoryDataModule:
    _require(SHARED / "MNIST" / "raw", "the MNIST copy")
    dm = InMemoryDataModule("mnist", root=str(SHARED), val_fraction=0)
    dm.setup()
    return dm


def test_real_mnist(mnist_full: InMemoryDataModule):
    dm = mnist_full
    assert dm.x_train.shape == (60000, 1, 28, 28) and dm.x_test.shape == (10000, 1, 28, 28)
    assert dm.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert dm.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert torch.bincount(dm.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert dm.x_train.mean().item() == pytest.approx(33.318 / 255, abs=1e-4)
    assert dm.x_train.min() == 0 and dm.x_train.max() == 1


def test_real_mnist_authors_split_and_subset(mnist_full: InMemoryDataModule):
    dm = InMemoryDataModule("mnist", root=str(SHARED), train_size=1000, test_size=500, seed=0)
    dm.setup()
    assert len(dm.y_train) == 1000 and len(dm.y_test) == 500
    assert torch.equal(dm.x_val, mnist_full.x_train[48000:])  # the last 20% of the training file
    assert torch.equal(dm.y_val, mnist_full.y_train[48000:])
    pool = mnist_full.x_train[:48000].flatten(1)
    rows = {bytes(r.numpy()) for r in (pool * 255).to(torch.uint8)}
    assert all(bytes(r.numpy()) in rows for r in (dm.x_train.flatten(1) * 255).to(torch.uint8))


def test_real_fashion_mnist_debian_layout():
    _require(FASHION, "Fashion-MNIST (apt-get install dataset-fashion-mnist)")
    dm = InMemoryDataModule("fashion_mnist", root=str(FASHION), val_fraction=0)
    dm.setup()
    assert dm.x_train.shape == (60000, 1, 28, 28) and dm.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(dm.y_train).tolist() == [6000] * 10
    assert torch.bincount(dm.y_test).tolist() == [1000] * 10


def test_real_cifar10(cifar_root: Path):
    dm = InMemoryDataModule("cifar10", root=str(cifar_root), val_fraction=0)
    dm.setup()
    assert dm.x_train.shape == (50000, 3, 32, 32) and dm.x_test.shape == (10000, 3, 32, 32)
    assert torch.bincount(dm.y_train).tolist() == [5000] * 10
    assert torch.bincount(dm.y_test).tolist() == [1000] * 10
    means = dm.x_train.mean(dim=(0, 2, 3))
    assert torch.allclose(means, torch.tensor([0.4913, 0.4821, 0.4465]), atol=2e-3)
