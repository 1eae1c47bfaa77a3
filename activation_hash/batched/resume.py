"""Resuming a killed or preempted batched group from its last epoch (`resume: auto`).

    python -m activation_hash +experiment=training_time -m hydra/launcher=batched   # killed in epoch 7
    python -m activation_hash +experiment=training_time -m hydra/launcher=batched   # the same command:
    ... batched group resuming from epoch 6 (.../checkpoints/group.ckpt)

A group keeps one checkpoint, `checkpoints/group.ckpt` in its first member's run directory,
written by `GroupLastEpoch` (a `resume.LastEpoch`: Lightning's checkpoint of the stacked weights,
optimizer, scheduler and loops, the group callback's per-member state and the random number
generators') at the end of every epoch, and each member a pointer, `checkpoints/group.json`:
{"checkpoint": that file, "members": the group's run directories}. A rerun of the same group (the
same unfinished members, in the same order, with the same configs: `rundir.claim(...,
can_resume="group")` keeps them) resumes from it; the captures and metrics.csv rows up to that
epoch stay (`restore_captures`, `restore_csv`, as for a solo run). Any other rerun moves the
members' outputs aside and trains from epoch 0. Step-limited groups (`trainer.max_steps`) keep no
checkpoint, as solo runs. A group that ends deletes its checkpoint and pointers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytorch_lightning as pl

from activation_hash.atomic import atomic_write_json
from activation_hash.resume import LastEpoch, position
from activation_hash.rundir import GROUP_POINTER

log = logging.getLogger(__name__)

GROUP_CHECKPOINT = Path("checkpoints") / "group.ckpt"


def _pointer(outs: list[Path]) -> dict:
    return {"checkpoint": str(outs[0] / GROUP_CHECKPOINT), "members": [str(o) for o in outs]}


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
                atomic_write_json(out / GROUP_POINTER, _pointer(self.outs))
            self._pointed = True


def resume_point(outs: list[Path]) -> Path | None:
    """The checkpoint these members (in this order) left as one group, when it can be resumed."""
    outs = [Path(o) for o in outs]
    want = _pointer(outs)
    for out in outs:
        pointer = out / GROUP_POINTER
        if not pointer.is_file() or json.loads(pointer.read_text()) != want:
            return None
    checkpoint = Path(want["checkpoint"])
    try:
        position(checkpoint)
    except Exception as err:  # missing, or cut short by a full disk: start over rather than fail each time
        log.warning("%s cannot be read (%s: %s); the group starts over", checkpoint, type(err).__name__, err)
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
