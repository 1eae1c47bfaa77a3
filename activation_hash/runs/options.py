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


def progress_bar(mode: str) -> list[pl.Callback]:
    if mode == "rich":
        from pytorch_lightning.callbacks import RichProgressBar
        return [RichProgressBar(leave=True)]
    if mode == "tqdm":
        from pytorch_lightning.callbacks import TQDMProgressBar
        return [TQDMProgressBar()]
    return []


def sweep_tags() -> list[str]:
    """The overrides that define this job (its factor values), for W&B tags."""
    from hydra.core.hydra_config import HydraConfig
    if not HydraConfig.initialized():
        return []
    return [o.lstrip("+~") for o in HydraConfig.get().overrides.task if "/" not in o.split("=")[0]]
