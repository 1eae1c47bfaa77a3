"""What the pipeline needs from a LightningDataModule, and how it is read from any of them.

`run()` and the code-capture callback read a datamodule only through `DataInfo`:

    input_shape   shape of one input, e.g. (1, 28, 28)
    num_classes   number of labels
    eval_loaders  {"train": ..., "test": ...}: iterables of (x, y) batches over the whole
                  training and test sets, in a fixed order (never shuffled, never sharded)
    n_train, n_test  sizes of those sets (None when they cannot be known without a pass)
    train_clean_labels  true labels of a label-noise run (saved beside the codes), else None

A datamodule may provide each of these as an attribute of that name (`eval_loaders` as a
method); `InMemoryDataModule` provides them all. For any other `LightningDataModule` they are
derived from its loaders: the evaluation sets are `DataLoader(train_dataloader().dataset)` and
`DataLoader(test_dataloader().dataset)` without shuffling (batch size `eval_batch_size`, default
1024), the input shape is that of the first training batch and the number of classes is one more
than the largest training label. Its batches must be `(x, y)` pairs.

    python -m activation_hash data=custom data.datamodule._target_=my_pkg.MyDataModule
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader


class DataProtocolError(ValueError):
    """A datamodule that does not give what the pipeline needs."""


def custom(datamodule: pl.LightningDataModule) -> pl.LightningDataModule:
    """Target of conf/data/custom.yaml: Hydra has built the user's datamodule; check and return it.
    A `lightning.LightningDataModule` (`import lightning as L`) is accepted as well as a
    `pytorch_lightning` one: it is wrapped for the Trainer (activation_hash.lightning_ns)."""
    from activation_hash.lightning_ns import as_trainer_datamodule
    adapted = as_trainer_datamodule(datamodule)
    if adapted is None:
        raise DataProtocolError(f"data.datamodule._target_ built a {type(datamodule).__name__}, not a "
                                "LightningDataModule (of lightning or pytorch_lightning)")
    return adapted


@dataclass
class DataInfo:
    datamodule: Any
    input_shape: tuple[int, ...]
    num_classes: int
    n_train: int | None
    n_test: int | None
    eval_batch_size: int = 1024

    def eval_loaders(self) -> Mapping[str, Iterable]:
        provided = getattr(self.datamodule, "eval_loaders", None)
        if callable(provided):
            return provided()
        return {"train": _unshuffled(self.datamodule.train_dataloader(), self.eval_batch_size, "train"),
                "test": _unshuffled(self.datamodule.test_dataloader(), self.eval_batch_size, "test")}

    @property
    def train_clean_labels(self) -> np.ndarray | None:
        labels = getattr(self.datamodule, "train_clean_labels", None)
        if labels is None:
            labels = getattr(self.datamodule, "y_train_clean", None)
        return None if labels is None else np.asarray(torch.as_tensor(labels).cpu())

    def test_batch(self, n: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """The first `n` test inputs and labels (fewer if the test set is smaller), on `device`."""
        xs, ys, have = [], [], 0
        for x, y in self.eval_loaders()["test"]:
            xs.append(x[: n - have])
            ys.append(y[: n - have])
            have += len(xs[-1])
            if have >= n:
                break
        return torch.cat(xs).to(device), torch.cat(ys).to(device)


def describe(datamodule: Any) -> DataInfo:
    """Read the protocol from a datamodule that has been set up (`setup("fit")`)."""
    batch_size = int(getattr(datamodule, "eval_batch_size", 1024) or 1024)
    if not callable(getattr(datamodule, "eval_loaders", None)):
        datamodule.setup("test")  # its test_dataloader() is read for the codes of the test set
    info = DataInfo(datamodule, (), 0, None, None, batch_size)
    shape = getattr(datamodule, "input_shape", None)
    classes = getattr(datamodule, "num_classes", None)
    if shape is None or classes is None:
        x, y = _first_batch(datamodule)
        shape = tuple(x.shape[1:]) if shape is None else shape
        if classes is None:
            classes = 1 + int(max(int(torch.as_tensor(yb).max()) for _, yb in info.eval_loaders()["train"]))
    info.input_shape, info.num_classes = tuple(int(s) for s in shape), int(classes)
    info.n_train = _size(datamodule, "n_train", "y_train", info, "train")
    info.n_test = _size(datamodule, "n_test", "y_test", info, "test")
    return info


def _size(dm: Any, attr: str, labels: str, info: DataInfo, split: str) -> int | None:
    if isinstance(getattr(dm, attr, None), int):
        return getattr(dm, attr)
    if getattr(dm, labels, None) is not None:
        return len(getattr(dm, labels))
    loader = info.eval_loaders()[split]
    dataset = getattr(loader, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None


def _first_batch(datamodule: Any) -> tuple[torch.Tensor, torch.Tensor]:
    batch = next(iter(datamodule.train_dataloader()))
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise DataProtocolError(f"{type(datamodule).__name__}.train_dataloader() yields {type(batch).__name__} "
                                "batches; the pipeline needs (x, y) pairs")
    return batch[0], batch[1]


def _unshuffled(loader: Any, batch_size: int, split: str) -> Iterable:
    dataset = getattr(loader, "dataset", None)
    if dataset is None:
        raise DataProtocolError(f"the {split} loader ({type(loader).__name__}) has no .dataset to read in order; "
                                "give the datamodule an eval_loaders() method returning "
                                "{'train': ..., 'test': ...} loaders of (x, y) batches")
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)
