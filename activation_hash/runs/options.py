"""Run options read the same way by a solo run and a batched group: checkpointing, progress bar,
W&B tags of a sweep's job."""

from __future__ import annotations

import logging
import sys

import pytorch_lightning as pl
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def keeps_checkpoint(cfg: DictConfig) -> bool:
    if cfg.get("resume", "auto") != "auto":
        return False
    if (cfg.trainer.get("max_steps") or -1) > 0:
        # Lightning resumes step-limited ("iteration-based") training with its epoch counter one
        # ahead of an uninterrupted run's, which changes the data order: such runs restart instead
        log.info("trainer.max_steps=%d: no checkpoint is kept; an interrupted run restarts from epoch 0",
                 cfg.trainer.max_steps)
        return False
    return True


def progress_mode(cfg: DictConfig) -> str:
    mode = cfg.get("progress_bar", "auto")
    allowed = ("auto", "rich", "tqdm", "none")
    if mode not in allowed:
        raise ValueError(f"progress_bar={mode!r}: allowed values are {', '.join(allowed)}")
    if mode == "auto":
        return "rich" if sys.stdout.isatty() else "none"
    return mode


def epoch_label(trainer: pl.Trainer) -> str:
    """The epoch being trained, counted as captures count it: `epoch=k` is the state after k epochs
    of training (0 = at initialization), so the first epoch trained is "Epoch 1" (Lightning says 0)."""
    total = trainer.max_epochs if (trainer.max_epochs or -1) > 0 else None
    return f"Epoch {trainer.current_epoch + 1}" + (f"/{total}" if total else "")


def progress_bar(mode: str) -> list[pl.Callback]:
    """One bar per run, reset every epoch (leave=False: a 300-epoch run leaves one line, not 600),
    labelled with the epoch numbers that captures use."""
    if mode == "rich":
        from pytorch_lightning.callbacks import RichProgressBar

        class EpochBar(RichProgressBar):
            def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
                super().on_train_epoch_start(trainer, pl_module)
                if self.progress is not None and self.train_progress_bar_id is not None:
                    style = self.theme.description
                    label = epoch_label(trainer)
                    self.progress.update(self.train_progress_bar_id,
                                         description=f"[{style}]{label}" if style else label)

        return [EpochBar(leave=False)]
    if mode == "tqdm":
        from pytorch_lightning.callbacks import TQDMProgressBar

        class EpochTqdm(TQDMProgressBar):
            def on_train_epoch_start(self, trainer: pl.Trainer, *args) -> None:
                super().on_train_epoch_start(trainer, *args)
                self.train_progress_bar.set_description(epoch_label(trainer))

        return [EpochTqdm(leave=False)]
    return []


def sweep_tags() -> list[str]:
    """The overrides that define this job (its factor values), for W&B tags."""
    from hydra.core.hydra_config import HydraConfig
    if not HydraConfig.initialized():
        return []
    return [o.lstrip("+~") for o in HydraConfig.get().overrides.task if "/" not in o.split("=")[0]]
