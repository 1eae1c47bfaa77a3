"""Resuming a killed or preempted run from its last epoch (`resume: auto`, the default).

    python -m activation_hash trainer.max_epochs=50      # killed after epoch 17, then the same command:
    ... resuming from epoch 17 (checkpoints/last.ckpt)    # trains epochs 18..50 only

`LastEpoch(out)`, the callback run() adds, writes `checkpoints/last.ckpt` with
`trainer.save_checkpoint` at the end of every training epoch (after that epoch's capture: as a
`Checkpoint` callback it runs after the others), with the epochs trained, the global step and the
random number generators' states beside Lightning's own entries (tensors and plain values only: it
loads with `weights_only=True`). Lightning restores weights, optimizer, scheduler, loop counters and
the callbacks' states from it; the data order depends only on (seed, epoch) (TensorBatchLoader), so
a resumed run trains exactly as the uninterrupted one. `restore_csv` rewrites `metrics.csv` to the
rows logged up to the checkpoint, through the logger, so the rows the resumed run appends follow.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.loggers import CSVLogger, Logger

from activation_hash.rundir import CHECKPOINT

KEY = "activation_hash"  # this module's entry in the checkpoint dict


class LastEpoch(Checkpoint):
    """Keep `out/checkpoints/last.ckpt` at the last epoch trained, with where training stands."""

    def __init__(self, out: Path):
        self.path = Path(out) / CHECKPOINT

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The epoch at which training stops early (early stopping, a non-finite loss, max_steps) is
        # not kept: a rerun redoes it from the epoch before and stops the same way, through the same
        # hooks (its stopped capture, its error), with nothing of Lightning's loop to fake.
        stops = trainer.should_stop or 0 < trainer.max_steps <= trainer.global_step
        if not trainer.fast_dev_run and not trainer.sanity_checking and not stops:
            trainer.save_checkpoint(self.path, weights_only=False)  # written whole, then renamed into place

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        numpy_state = np.random.get_state()
        checkpoint[KEY] = {
            "epochs_trained": trainer.fit_loop.epoch_progress.current.processed,
            "global_step": trainer.global_step,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                    "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
                    "python": random.getstate()},
        }

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get(KEY, {}).get("rng")
        if not rng:
            return
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
        kind, keys, *rest = rng["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
        random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in rng["python"]))


def position(checkpoint: Path) -> tuple[int, int]:
    """(epochs trained, global step) stored in a checkpoint written by `LastEpoch`."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)[KEY]
    return int(saved["epochs_trained"]), int(saved["global_step"])


def restore_csv(loggers: list[Logger], epochs: int, step: int) -> None:
    """Keep in each CSV logger's metrics.csv the rows logged up to `epochs` trained (the rest is
    recomputed), re-logged through the logger so that its header covers them."""
    for logger in loggers:
        if not isinstance(logger, CSVLogger):
            continue
        path = Path(logger.log_dir) / "metrics.csv"
        kept = path.with_name(".metrics.csv.resumed")  # the old file until the new one is written
        if path.is_file():
            path.replace(kept)
        if not kept.is_file():
            continue
        with open(kept, newline="") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            values = {k: float(v) for k, v in row.items() if v not in ("", None) and k != "step"}
            row_step = int(float(row["step"]))
            # rows with an epoch (train, val, captures) by their epoch; others (per-step) by their step
            if ("epoch" in values and values["epoch"] <= epochs) or ("epoch" not in values and row_step < step):
                logger.log_metrics(values, step=row_step)
        logger.save()
        kept.unlink()
