"""Resuming a killed or preempted run, solo or batched group, from its last epoch (`resume: auto`).

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

A batched group keeps one checkpoint, `checkpoints/group.ckpt` in its first member's run directory
(`GroupLastEpoch`), and each member a pointer, `checkpoints/group.json`: {"checkpoint": that file,
"members": the group's run directories}. A rerun of the same group (the same unfinished members, in
the same order, with the same configs) resumes from it (`resume_point`); a group that ends deletes
its checkpoint and pointers (`forget`). What each member's files must hold to be continued is
checked by `activation_hash.runs.record.check_files`.
"""

from __future__ import annotations

import csv
import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.loggers import CSVLogger, Logger

from omegaconf import DictConfig

from activation_hash.runs import signals
from activation_hash.atomic import atomic_write_json
from activation_hash.runs.claim import changed_keys, comparable, saved_config
from activation_hash.runs.paths import CHECKPOINT, GROUP_CHECKPOINT, GROUP_POINTER, RESULT
from activation_hash.runs.record import check_files

log = logging.getLogger(__name__)

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
            signals.hold()  # a SIGTERM now would leave a checkpoint ahead of metrics.csv's rows
            trainer.save_checkpoint(self.path, weights_only=False)  # written whole, then renamed into place

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        signals.release()  # the previous epoch's rows are logged: a held signal interrupts here

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        signals.release()

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


class GroupLastEpoch(LastEpoch):
    """`LastEpoch` for a group: the checkpoint in the first member's directory, a pointer in each."""

    def __init__(self, outs: list[Path]):
        self.outs = [Path(o) for o in outs]
        self.path = self.outs[0] / GROUP_CHECKPOINT
        self._pointed = False

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not self._pointed and self.path.is_file():
            for out in self.outs:
                atomic_write_json(out / GROUP_POINTER, pointer(self.outs))
            self._pointed = True


def position(checkpoint: Path) -> tuple[int, int]:
    """(epochs trained, global step) stored in a checkpoint written by `LastEpoch`."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)[KEY]
    return int(saved["epochs_trained"]), int(saved["global_step"])


def members_trained(checkpoint: Path) -> list[int] | None:
    """Per member, the epochs it had trained when a group checkpoint was written (members that stop
    early have trained fewer than the group); None for a solo checkpoint."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    for state in (saved.get("callbacks") or {}).values():
        if isinstance(state, dict) and "trained" in state and "stoppers" in state:
            return [int(t) for t in state["trained"]]
    return None


def pointer(outs: list[Path]) -> dict:
    return {"checkpoint": str(Path(outs[0]) / GROUP_CHECKPOINT), "members": [str(o) for o in outs]}


def resume_point(outs: list[Path]) -> Path | None:
    """The checkpoint these members (in this order) left as one group, when it can be read."""
    outs = [Path(o) for o in outs]
    want = pointer(outs)
    for out in outs:
        path = out / GROUP_POINTER
        try:
            if json.loads(path.read_text()) != want:
                return None
        except (OSError, ValueError):
            return None
    checkpoint = Path(want["checkpoint"])
    try:
        position(checkpoint)
    except Exception as err:  # missing, or cut short by a full disk: start over rather than fail each time
        log.warning("%s cannot be read (%s: %s); the group starts over", checkpoint, type(err).__name__, err)
        return None
    return checkpoint


def resumable(cfg: DictConfig, out: Path) -> Path | None:
    """The checkpoint an unfinished run of this same config left in `out`, when it may be resumed:
    the checkpoint reads, and every file the run would continue from agrees with it."""
    checkpoint = out / CHECKPOINT
    if cfg.get("resume", "auto") != "auto" or (out / RESULT).exists() or not checkpoint.is_file():
        return None
    saved = saved_config(out)
    if saved is None or changed_keys(comparable(saved), comparable(cfg)):
        return None
    try:
        epochs, _ = position(checkpoint)
    except Exception as err:  # e.g. a file cut short by a full disk: start over rather than fail each time
        log.warning("%s cannot be read (%s: %s); the run starts over", checkpoint, type(err).__name__, err)
        return None
    if (why := check_files(cfg, out, epochs)) is not None:
        log.warning("%s: %s after the checkpoint's epoch %d; the run starts over", out, why, epochs)
        return None
    return checkpoint


def group_resume_point(cfgs: list[DictConfig]) -> Path | None:
    """The checkpoint these members (in this order) left as one group, when it can be read and
    every member's files agree with it (each up to the epochs it had trained then); else None,
    with one log line naming the member's file and why."""
    checkpoint = resume_point([Path(cfg.output_dir) for cfg in cfgs])
    if checkpoint is None:
        return None
    epochs, _ = position(checkpoint)
    trained = members_trained(checkpoint) or [epochs] * len(cfgs)
    for cfg, done in zip(cfgs, trained):
        if (why := check_files(cfg, Path(cfg.output_dir), min(epochs, done))) is not None:
            log.warning("%s: %s after the checkpoint's epoch %d; the group starts over", cfg.output_dir, why,
                        min(epochs, done))
            return None
    return checkpoint


def forget(outs: list[Path]) -> None:
    """Delete the group's checkpoint and its members' pointers (the group has ended)."""
    outs = [Path(o) for o in outs]
    (outs[0] / GROUP_CHECKPOINT).unlink(missing_ok=True)
    for out in outs:
        (out / GROUP_POINTER).unlink(missing_ok=True)
        folder = out / GROUP_POINTER.parent
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


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


def flush_csv(loggers: list[Logger]) -> None:
    """Write each CSV logger's rows so far to its metrics.csv (before the epoch's checkpoint), so a
    killed run keeps them on disk; Lightning does this for a solo run's Trainer."""
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            logger.save()
