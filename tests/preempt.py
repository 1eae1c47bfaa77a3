"""A callback that preempts its own job the way SLURM does through submitit: it sends the job
submitit's preemption signal (USR2) at the start of epoch `epoch + 1`, i.e. after the checkpoint
of epoch `epoch`; only in the first attempt (a resumed run has `trainer.ckpt_path`), so the
requeued job runs to the end. Used by tests/test_submitit.py:
    +callbacks.preempt._target_=tests.preempt.PreemptAt +callbacks.preempt.epoch=2
"""

from __future__ import annotations

import os
import signal

import pytorch_lightning as pl


class PreemptAt(pl.Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch and trainer.ckpt_path is None:
            os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")))
