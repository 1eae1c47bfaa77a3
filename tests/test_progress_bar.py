"""The progress bar of a run: one bar reused every epoch (not a line per epoch), labelled with the
epoch numbers captures use (the first epoch trained is 1: its capture is epoch=1)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from activation_hash.runs.options import progress_bar


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 2)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.fc(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Seen(pl.Callback):
    """What the bar shows during each epoch (read at the first batch, after the bar's epoch start)."""

    def __init__(self, bar):
        self.bar, self.labels, self.bars = bar, [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx:
            return
        if hasattr(self.bar, "train_progress_bar_id"):    # rich
            task = next(t for t in self.bar.progress.tasks if t.id == self.bar.train_progress_bar_id)
            self.labels.append(task.description)
            self.bars.append(id(self.bar.progress))
        else:                                             # tqdm
            self.labels.append(self.bar.train_progress_bar.desc)
            self.bars.append(id(self.bar.train_progress_bar))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("mode", ["rich", "tqdm"])
def test_the_bar_is_reused_and_counts_epochs_as_captures_do(mode: str) -> None:
    if mode == "rich":
        pytest.importorskip("rich")
    (bar,) = progress_bar(mode)
    seen = Seen(bar)
    data = DataLoader(TensorDataset(torch.rand(8, 2), torch.randint(0, 2, (8,))), batch_size=4)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_model_summary=False, callbacks=[bar, seen])
    trainer.fit(Tiny(), data)
    assert [label.rstrip(": ").rsplit("]", 1)[-1] for label in seen.labels] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert len(set(seen.bars)) == 1          # one bar for the whole run (a new one per epoch leaves a line each)
