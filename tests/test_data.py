"""Data layer: file readers, checked downloads (against a local HTTP server), the DataModule's
splits / subsets / label noise / random inputs, and the TensorBatchLoader (epochs, shards)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from activation_hash.data import (ChecksumError, DatasetFileError, DownloadError, InMemoryDataModule,
                                  MissingDataError, TensorBatchLoader, download_file, read_cifar_batch,
                                  read_idx)
from activation_hash.data.readers import extract_member_dir, read_idx_header
from activation_hash.data.sources import IDX_FILES

N_TRAIN, N_TEST = 30, 12  # tiny MNIST-format files: image i is filled with the value i


# ---------------------------------------------------------------- writing the official formats

def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def tiny_mnist_arrays() -> dict[str, np.ndarray]:
    train = np.broadcast_to(np.arange(N_TRAIN, dtype=np.uint8)[:, None, None], (N_TRAIN, 28, 28))
    test = np.broadcast_to(np.arange(100, 100 + N_TEST, dtype=np.uint8)[:, None, None], (N_TEST, 28, 28))
    return {IDX_FILES[0]: train, IDX_FILES[1]: np.arange(N_TRAIN, dtype=np.uint8) % 10,
            IDX_FILES[2]: test, IDX_FILES[3]: (np.arange(N_TEST, dtype=np.uint8) * 3) % 10}


def write_tiny_mnist(folder: Path, compress: bool = True) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_idx(folder / (base + (".gz" if compress else "")), arr, compress)
            for base, arr in tiny_mnist_arrays().items()]


def cifar_batch_bytes(data: np.ndarray, labels: np.ndarray) -> bytes:
    return pickle.dumps({b"batch_label": b"tiny", b"data": data.astype(np.uint8),
                         b"labels": [int(v) for v in labels]}, protocol=2)


def write_tiny_cifar_archive(path: Path, per_batch: int = 4, mode: str = "w:gz") -> None:
    """A cifar-10-python archive with `per_batch` images per batch; image values = global index."""
    with tarfile.open(path, mode) as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for b, name in enumerate(names):
            index = np.arange(b * per_batch, (b + 1) * per_batch)
            data = np.repeat(index[:, None] % 256, 3072, axis=1)
            payload = cifar_batch_bytes(data, index % 10)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- a local HTTP server

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path):
    """(folder served, base URL) of an HTTP server on 127.0.0.1 for this test."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _dead_url() -> str:
    """A URL on a local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# ---------------------------------------------------------------- readers

@pytest.mark.parametrize("compress", [True, False])
def test_idx_roundtrip_gz_and_raw(tmp_path: Path, compress: bool):
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    path = write_idx(tmp_path / "x", images, compress)
    np.testing.assert_array_equal(read_idx(path), images)
    assert read_idx_header(path) == (0x08, (3, 28, 28))


def test_idx_errors_name_the_file(tmp_path: Path):
    good = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    cases = {
        "short.gz": (gzip.compress(good[:-100]), "truncated"),
        "cut_stream.gz": (gzip.compress(good)[:-30], "gzip"),
        "magic": (b"\x01\x02\x08\x03" + good[4:], "magic"),
        "trailing": (good + b"\x00\x00", "trailing"),
        "tiny": (b"\x00\x00", "too short"),
    }
    for name, (data, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DatasetFileError) as err:
            read_idx(path)
        assert str(path) in str(err.value) and words in str(err.value), str(err.value)


def test_cifar_batch_roundtrip_and_errors(tmp_path: Path):
    data = np.random.default_rng(0).integers(0, 256, (5, 3072))
    good = tmp_path / "data_batch_1"
    good.write_bytes(cifar_batch_bytes(data, np.arange(5)))
    x, y = read_cifar_batch(good)
    assert x.shape == (5, 3, 32, 32) and x.dtype == np.uint8
    np.testing.assert_array_equal(x.reshape(5, -1), data)  # channel-major rows: R plane, G plane, B plane
    np.testing.assert_array_equal(y, np.arange(5))

    truncated = tmp_path / "truncated"
    truncated.write_bytes(good.read_bytes()[:1000])
    wrong_shape = tmp_path / "wrong_shape"
    wrong_shape.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    malicious = tmp_path / "malicious"
    malicious.write_bytes(pickle.dumps(os.getcwd))  # a global outside the numpy allow-list
    for path, words in ((truncated, "not a readable"), (wrong_shape, "(N, 3072)"), (malicious, "not allowed")):
        with pytest.raises(DatasetFileError) as err:
            read_cifar_batch(path)
        assert str(path) in str(err.value) and words in str(err.value), str(err.value)


def test_extract_member_dir_atomic_and_corrupt_archive(tmp_path: Path):
    archive = tmp_path / "cifar-10-python.tar.xz"
    write_tiny_cifar_archive(archive, mode="w:xz")
    out = extract_member_dir(archive, "cifar-10-batches-py", tmp_path)
    assert sorted(p.name for p in out.iterdir())[:2] == ["data_batch_1", "data_batch_2"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # temp folder gone

    bad = tmp_path / "bad" / "cifar-10-python.tar.gz"
    bad.parent.mkdir()
    bad.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DatasetFileError, match="corrupt or truncated archive") as err:
        extract_member_dir(bad, "cifar-10-batches-py", bad.parent)
    assert str(bad) in str(err.value)
    assert list(bad.parent.iterdir()) == [bad]  # nothing half-extracted


# ---------------------------------------------------------------- downloads

def test_download_verifies_and_moves_atomically(tmp_path: Path, http_root):
    served, url = http_root
    (served / "a.bin").write_bytes(b"hello" * 1000)
    dest = tmp_path / "out" / "a.bin"
    download_file("a.bin", [url], dest, md5(served / "a.bin"))
    assert dest.read_bytes() == b"hello" * 1000
    assert sorted(p.name for p in dest.parent.iterdir()) == ["a.bin"]


def test_checksum_mismatch_names_file_and_digests_and_leaves_nothing(tmp_path: Path, http_root):
    served, url = http_root
    (served / "a.bin").write_bytes(b"tampered")
    dest = tmp_path / "out" / "a.bin"
    with pytest.raises(ChecksumError) as err:
        download_file("a.bin", [url], dest, "0" * 32)
    message = str(err.value)
    assert "a.bin" in message and "0" * 32 in message and md5(served / "a.bin") in message
    assert list(dest.parent.iterdir()) == []


def test_download_falls_back_to_next_mirror_and_reports_all(tmp_path: Path, http_root):
    served, url = http_root
    (served / "a.bin").write_bytes(b"payload")
    dest = tmp_path / "a.bin"
    download_file("a.bin", [_dead_url(), url + "missing/", url], dest, md5(served / "a.bin"))
    assert dest.read_bytes() == b"payload"
    with pytest.raises(DownloadError, match="every mirror failed") as err:
        download_file("nope.bin", [_dead_url(), url], tmp_path / "nope.bin", None)
    assert "404" in str(err.value)
    assert not (tmp_path / "nope.bin").exists()


def test_download_from_file_url(tmp_path: Path):
    src = tmp_path / "mirror"
    src.mkdir()
    (src / "f.gz").write_bytes(b"abc")
    dest = tmp_path / "dest" / "f.gz"
    download_file("f.gz", [src.as_uri() + "/"], dest, md5(src / "f.gz"))
    assert dest.read_bytes() == b"abc"


def test_mnist_download_through_the_datamodule(tmp_path: Path, http_root):
    served, url = http_root
    files = write_tiny_mnist(served)
    table = {p.name: md5(p) for p in files}
    root = tmp_path / "data"
    dm = InMemoryDataModule("mnist", root=str(root), download=True, mirrors=[url], checksums=table,
                            val_fraction=0)
    dm.prepare_data()
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(table)
    dm.setup("fit")
    assert dm.x_train.shape == (N_TRAIN, 1, 28, 28) and dm.x_test.shape == (N_TEST, 1, 28, 28)

    bad = {**table, files[0].name: "f" * 32}
    with pytest.raises(ChecksumError, match=files[0].name):
        InMemoryDataModule("mnist", root=str(tmp_path / "other"), download=True, mirrors=[url],
                           checksums=bad).prepare_data()
    assert not (tmp_path / "other" / "MNIST" / "raw" / files[0].name).exists()


def test_cifar_download_and_extract_through_the_datamodule(tmp_path: Path, http_root):
    served, url = http_root
    write_tiny_cifar_archive(served / "cifar-10-python.tar.gz")
    root = tmp_path / "data"
    dm = InMemoryDataModule("cifar10", root=str(root), download=True, mirrors=[url], val_fraction=0,
                            checksums={"cifar-10-python.tar.gz": md5(served / "cifar-10-python.tar.gz")})
    dm.setup()
    assert dm.x_train.shape == (20, 3, 32, 32) and dm.x_test.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(dm.y_train.numpy(), np.arange(20) % 10)  # batches 1..5 in order
    assert torch.allclose(dm.x_test[:, 0, 0, 0] * 255, torch.arange(20, 24, dtype=torch.float32))
    assert (root / "cifar-10-batches-py" / "test_batch").is_file()


def test_cifar_archive_alone_is_extracted_without_download(tmp_path: Path):
    write_tiny_cifar_archive(tmp_path / "cifar-10-python.tar.xz", mode="w:xz")
    dm = InMemoryDataModule("cifar10", root=str(tmp_path), download=False)
    dm.setup()
    assert len(dm.y_train) + len(dm.y_val) == 20 and len(dm.y_test) == 4


# ---------------------------------------------------------------- finding files, and errors

def test_missing_files_message_names_paths_and_fixes(tmp_path: Path, monkeypatch):
    # Debian's dataset-fashion-mnist may be installed on this machine: look in an empty folder instead
    monkeypatch.setattr("activation_hash.data.sources.DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    for name, expected in (("mnist", tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"),
                           ("fashion_mnist", tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"),
                           ("cifar10", tmp_path / "cifar-10-batches-py" / "data_batch_1")):
        dm = InMemoryDataModule(name, root=str(tmp_path))
        with pytest.raises(MissingDataError) as err:
            dm.setup()
        message = str(err.value)
        assert str(expected) in message and "data.download=true" in message and "data.root=" in message
        assert isinstance(err.value, ValueError) and isinstance(err.value, FileNotFoundError)


@pytest.mark.parametrize("layout", ["torchvision", "debian", "uncompressed"])
def test_idx_layouts(tmp_path: Path, layout: str):
    folder = {"torchvision": tmp_path / "FashionMNIST" / "raw", "debian": tmp_path,
              "uncompressed": tmp_path / "FashionMNIST" / "raw"}[layout]
    write_tiny_mnist(folder, compress=layout != "uncompressed")
    dm = InMemoryDataModule("fashion_mnist", root=str(tmp_path), val_fraction=0)
    dm.setup()
    assert len(dm.y_train) == N_TRAIN and len(dm.y_test) == N_TEST


def test_corrupt_file_in_dataset_names_it(tmp_path: Path):
    files = write_tiny_mnist(tmp_path / "MNIST" / "raw")
    files[1].write_bytes(gzip.compress(idx_bytes(np.zeros(N_TRAIN - 3, np.uint8))))  # labels too few
    with pytest.raises(DatasetFileError, match=f"{files[1]}.*{N_TRAIN - 3} labels for {N_TRAIN} images"):
        InMemoryDataModule("mnist", root=str(tmp_path)).setup()


@pytest.mark.parametrize("kwargs, key", [
    ({"train_size": 0}, "data.train_size=0"),
    ({"train_size": 2.5}, "data.train_size=2.5"),
    ({"test_size": -1}, "data.test_size=-1"),
    ({"label_noise": 1.5}, "data.label_noise=1.5"),
    ({"label_noise": -0.1}, "data.label_noise=-0.1"),
    ({"random_inputs": "test"}, "data.random_inputs='test': allowed: none, train, eval, both"),
    ({"val_fraction": 1.0}, "data.val_fraction=1.0"),
    ({"batch_size": 0}, "data.batch_size=0"),
    ({"eval_batch_size": 0}, "data.eval_batch_size=0"),
    ({"seed": -1}, "data.seed=-1"),
    ({"name": "imagenet"}, "data.name='imagenet': unknown dataset; allowed: digits, mnist"),
    ({"options": {"n_train": 5}}, "data.options has unknown key(s) ['n_train']"),
])
def test_bad_values_raise_naming_the_key(kwargs: dict, key: str):
    with pytest.raises(ValueError) as err:
        InMemoryDataModule(**kwargs)
    assert key in str(err.value), str(err.value)


def test_root_that_is_a_file_is_rejected(tmp_path: Path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match=r"data\.root=.*existing file"):
        InMemoryDataModule("mnist", root=str(tmp_path / "f"))


def test_sizes_larger_than_available_say_the_available_number():
    with pytest.raises(ValueError, match=r"data\.train_size=1151: larger than the 1150 samples available"):
        InMemoryDataModule("digits", train_size=1151).setup()
    with pytest.raises(ValueError, match=r"data\.test_size=361: larger than the 360"):
        InMemoryDataModule("digits", test_size=361).setup()
    with pytest.raises(ValueError, match=r"data\.options\.n_train=0"):
        InMemoryDataModule("synthetic", options={"n_train": 0})


# ---------------------------------------------------------------- splits, subsets, noise, random inputs

@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    write_tiny_mnist(tmp_path / "MNIST" / "raw")
    return tmp_path


def pixel_ids(x: torch.Tensor) -> list[int]:
    """Recover the writer's image index (value i filled in image i)."""
    return (x[:, 0, 0, 0] * 255).round().long().tolist()


def test_last_fraction_is_validation_in_file_order(tiny_root: Path):
    dm = InMemoryDataModule("mnist", root=str(tiny_root), val_fraction=0.2)
    dm.setup()
    assert pixel_ids(dm.x_train) == list(range(24)) and pixel_ids(dm.x_val) == list(range(24, 30))
    assert dm.y_val.tolist() == [i % 10 for i in range(24, 30)]
    assert pixel_ids(dm.x_test) == list(range(100, 112))
    assert dm.x_train.dtype == torch.float32 and dm.y_train.dtype == torch.int64
    none = InMemoryDataModule("mnist", root=str(tiny_root), val_fraction=0)
    none.setup()
    assert len(none.y_train) == N_TRAIN and none.x_val.shape == (0, 1, 28, 28)


def test_subsets_are_seeded_sorted_and_nested(tiny_root: Path):
    def ids(seed: int, size: int, test_size: int | None = None) -> tuple[list[int], list[int]]:
        dm = InMemoryDataModule("mnist", root=str(tiny_root), train_size=size, test_size=test_size, seed=seed)
        dm.setup()
        assert torch.equal(dm.y_train, torch.tensor([i % 10 for i in pixel_ids(dm.x_train)]))
        return pixel_ids(dm.x_train), pixel_ids(dm.x_test)

    small, test = ids(0, 8, 5)
    assert small == sorted(small) and len(set(small)) == 8 and max(small) < 24  # never from validation
    assert len(test) == 5 and set(test) <= set(range(100, 112))
    assert ids(0, 8, 5) == (small, test)
    assert ids(1, 8)[0] != small
    assert set(small) <= set(ids(0, 16)[0])


def test_label_noise_exact_count_seeded_uniform_over_all_classes():
    kwargs = {"name": "synthetic", "options": {"n_train": 1000, "num_classes": 4}, "val_fraction": 0.0}
    dm = InMemoryDataModule(label_noise=0.3, seed=5, **kwargs)
    dm.setup()
    clean = InMemoryDataModule(**kwargs)
    clean.setup()
    assert int(dm.noisy_mask.sum()) == 300
    assert torch.equal(dm.y_train_clean, clean.y_train)
    assert torch.equal(dm.y_train[~dm.noisy_mask], dm.y_train_clean[~dm.noisy_mask])
    kept = (dm.y_train[dm.noisy_mask] == dm.y_train_clean[dm.noisy_mask]).float().mean().item()
    assert 0.1 < kept < 0.4  # a random label equals the true one about 1/K of the time
    again = InMemoryDataModule(label_noise=0.3, seed=5, **kwargs)
    again.setup()
    assert torch.equal(again.y_train, dm.y_train) and torch.equal(again.noisy_mask, dm.noisy_mask)
    other = InMemoryDataModule(label_noise=0.3, seed=6, **kwargs)
    other.setup()
    assert not torch.equal(other.noisy_mask, dm.noisy_mask)
    assert torch.equal(dm.x_train, clean.x_train)  # noise touches labels only
    full = InMemoryDataModule(label_noise=1.0, **kwargs)
    full.setup()
    assert bool(full.noisy_mask.all())


@pytest.mark.parametrize("mode, random_splits", [
    ("train", {"train"}), ("eval", {"val", "test"}), ("both", {"train", "val", "test"}), ("none", set())])
def test_random_inputs(mode: str, random_splits: set[str]):
    real = InMemoryDataModule("digits", seed=3)
    real.setup()
    dm = InMemoryDataModule("digits", random_inputs=mode, seed=3)
    dm.setup()
    for split in ("train", "val", "test"):
        x, x_real = getattr(dm, f"x_{split}"), getattr(real, f"x_{split}")
        assert x.shape == x_real.shape and x.dtype == torch.float32
        assert torch.equal(getattr(dm, f"y_{split}"), getattr(real, f"y_{split}"))
        if split in random_splits:
            assert 0 <= x.min() and x.max() < 1 and abs(x.mean().item() - 0.5) < 0.02
            assert len(torch.unique(x)) > 0.9 * x.numel()  # continuous, not the 17 digit levels
        else:
            assert torch.equal(x, x_real)
    again = InMemoryDataModule("digits", random_inputs=mode, seed=3)
    again.setup()
    assert torch.equal(again.x_train, dm.x_train) and torch.equal(again.x_test, dm.x_test)


def test_digits_and_synthetic_shapes_and_ranges():
    dm = InMemoryDataModule("digits", val_fraction=0)
    assert dm.input_shape == (1, 8, 8) and dm.num_classes == 10  # before setup
    dm.setup()
    assert dm.x_train.shape == (1437, 1, 8, 8) and dm.x_test.shape == (360, 1, 8, 8)
    assert dm.x_train.min() == 0 and dm.x_train.max() == 1
    syn = InMemoryDataModule("synthetic", options={"n_train": 50, "n_test": 20, "shape": [2, 3, 3],
                                                   "num_classes": 5})
    assert syn.input_shape == (2, 3, 3) and syn.num_classes == 5
    syn.setup()
    assert syn.x_train.shape == (40, 2, 3, 3) and syn.x_val.shape == (10, 2, 3, 3)
    assert 0 <= syn.x_train.min() and syn.x_train.max() <= 1 and set(syn.y_test.tolist()) == set(range(5))
    assert syn.describe()["n_train"] == 40


def test_setup_is_idempotent_and_seed_changes_nothing_but_seeded_choices():
    dm = InMemoryDataModule("synthetic", train_size=100, seed=0)
    dm.setup("fit")
    x = dm.x_train
    dm.setup("test")
    assert dm.x_train is x
    other = InMemoryDataModule("synthetic", train_size=100, seed=1)
    other.setup()
    assert torch.equal(other.x_test, dm.x_test) and not torch.equal(other.x_train, dm.x_train)


# ---------------------------------------------------------------- TensorBatchLoader

def _index_loader(n: int, **kwargs) -> TensorBatchLoader:
    return TensorBatchLoader(torch.arange(n).float()[:, None], torch.arange(n), **kwargs)


def test_loader_covers_every_sample_once_per_epoch():
    loader = _index_loader(103, batch_size=10, shuffle=True, seed=7)
    assert len(loader) == 11
    epochs = []
    for _ in range(3):
        seen = torch.cat([y for _, y in loader])
        assert sorted(seen.tolist()) == list(range(103))
        epochs.append(seen.tolist())
    assert epochs[0] != epochs[1] != epochs[2]
    loader.set_epoch(1)
    assert torch.cat([y for _, y in loader]).tolist() == epochs[1]
    iter(loader)  # an unconsumed iterator (Lightning's iterability check) uses up no epoch
    assert loader.sampler.epoch == 2
    batches = list(_index_loader(103, batch_size=10, shuffle=True, seed=7))
    assert torch.cat([y for _, y in batches]).tolist() == epochs[0]  # same seed, same order
    for x, y in batches:
        assert torch.equal(x[:, 0].long(), y)


def test_loader_without_shuffle_is_in_order_and_drop_last():
    loader = _index_loader(25, batch_size=10)
    assert [y.tolist()[0] for _, y in loader] == [0, 10, 20] and len(loader) == 3
    dropping = _index_loader(25, batch_size=10, drop_last=True, shuffle=True)
    assert len(dropping) == 2 and [len(y) for _, y in dropping] == [10, 10]


@pytest.mark.parametrize("n, world", [(103, 2), (100, 4), (7, 3)])
def test_loader_shards_are_disjoint_and_equal(n: int, world: int):
    for epoch in (0, 1):
        shards = []
        for rank in range(world):
            loader = _index_loader(n, batch_size=8, shuffle=True, seed=3, rank=rank, world_size=world)
            loader.set_epoch(epoch)
            shards.append(torch.cat([y for _, y in loader]).tolist())
            assert len(loader) == -(-(n // world) // 8)
        assert all(len(s) == n // world for s in shards)
        flat = [i for s in shards for i in s]
        assert len(set(flat)) == len(flat) == n - n % world
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        _index_loader(10, batch_size=2, rank=2, world_size=2)


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        loader = _index_loader(21, batch_size=4, shuffle=True, seed=11)  # rank and world from torch.distributed
        torch.save({"len": len(loader), "ids": [y.tolist() for _, y in loader]}, f"{out_dir}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow  # two spawned processes importing torch: ~10 s
def test_loader_shards_under_torch_distributed(tmp_path: Path):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    ids = [sum(r["ids"], []) for r in results]
    assert [r["len"] for r in results] == [3, 3] and len(ids[0]) == len(ids[1]) == 10
    assert not set(ids[0]) & set(ids[1])


def test_datamodule_loaders_and_device_moves():
    dm = InMemoryDataModule("synthetic", batch_size=32, eval_batch_size=100, label_noise=0.5)
    dm.setup()
    train = dm.train_dataloader()
    assert len(train) == 10 and train.shuffle
    evals = dm.eval_loaders()
    assert set(evals) == {"train", "test"}
    ordered = torch.cat([y for _, y in evals["train"]])
    assert torch.equal(ordered, dm.y_train) and not torch.equal(ordered, dm.y_train_clean)  # noisy labels
    assert torch.equal(torch.cat([x for x, _ in evals["test"]]), dm.x_test)
    assert len(dm.val_dataloader()) == 1 and len(dm.test_dataloader()) == 2
    assert dm.to("cpu") is dm and next(iter(dm.train_dataloader()))[0].device.type == "cpu"
    # tensors and loaders handed out earlier follow to(); "meta" stands in for an accelerator
    dm.to("meta")
    assert dm.x_train.device.type == dm.y_test.device.type == dm.noisy_mask.device.type == "meta"
    x, y = next(iter(train))
    assert x.device.type == y.device.type == "meta" and x.shape == (32, 1, 4, 4)
    assert next(iter(dm.eval_loaders()["test"]))[0].device.type == "meta"


class _TinyNet(pl.LightningModule):
    def __init__(self, input_dim: int, classes: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(input_dim, classes))
        self.epochs_seen: list[list[int]] = []

    def on_fit_start(self) -> None:
        self.trainer.datamodule.to(self.device)

    def on_train_epoch_start(self) -> None:
        self.epochs_seen.append([])

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.epochs_seen[-1].append(int(x.shape[0]))
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_fit_uses_the_loaders_and_sets_their_epoch(tmp_path: Path):
    dm = InMemoryDataModule("synthetic", batch_size=50, seed=0)
    dm.setup("fit")
    model = _TinyNet(16, dm.num_classes)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=dm)
    assert model.epochs_seen == [[50] * 6 + [20]] * 3
    assert trainer.train_dataloader.sampler.epoch == 3  # Lightning set 0, 1, 2; the last pass moved to 3
    assert "val/loss" in trainer.callback_metrics


# ---------------------------------------------------------------- the conf/data files

@pytest.mark.parametrize("name", ["digits", "mnist", "fashion_mnist", "cifar10", "synthetic"])
def test_conf_data_files_instantiate(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    monkeypatch.setenv("ACTIVATION_HASH_DATA", str(tmp_path))
    with initialize_config_module(config_module="activation_hash.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"data={name}", "seed=4", "data.train_size=10"])
    dm = instantiate(cfg.data)
    assert isinstance(dm, InMemoryDataModule) and dm.name == name and dm.seed == 4 and dm.train_size == 10
    assert (dm.batch_size, dm.eval_batch_size, dm.val_fraction, dm.random_inputs, dm.download) == \
        (cfg.data.batch_size, 1024, 0.2, "none", False)
    if name in ("mnist", "fashion_mnist", "cifar10"):
        assert dm.root == tmp_path
    else:
        dm.setup()
        assert len(dm.y_train) == 10
