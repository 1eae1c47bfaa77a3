"""Datasets as in-memory tensors: readers for the official file formats, checked downloads,
and the one LightningDataModule (`InMemoryDataModule`) every run uses.

    from activation_hash.data import InMemoryDataModule
    dm = InMemoryDataModule("mnist", root="data", download=True, train_size=1000, seed=0)
    dm.setup("fit"); dm.input_shape, dm.num_classes, dm.x_train.shape
"""

from activation_hash.data.datamodule import RANDOM_INPUTS, InMemoryDataModule, default_root
from activation_hash.data.download import ChecksumError, DownloadError, download_file
from activation_hash.data.readers import DatasetFileError, read_cifar_batch, read_idx
from activation_hash.data.sources import DATASETS, MissingDataError, make_source
from activation_hash.data.tensor_loader import TensorBatchLoader

__all__ = [
    "DATASETS", "RANDOM_INPUTS", "ChecksumError", "DatasetFileError", "DownloadError", "InMemoryDataModule",
    "MissingDataError", "TensorBatchLoader", "default_root", "download_file", "make_source",
    "read_cifar_batch", "read_idx",
]
