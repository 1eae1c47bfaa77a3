"""run(cfg) -> dict: build data, network and trainer from a composed config, train, capture
the neural codes at the scheduled epochs, and return the last capture's metrics.

Pure apart from the run directory it writes (cfg.output_dir):
    config.yaml      the resolved config            meta.json     git revision, versions, command
    encoding.jsonl   one row per capture and split  metrics.csv   Lightning's CSV logger
    codes/           epoch=NNNN.npz when codes.save  result.json   summary, written last
    checkpoints/     last.ckpt, the last epoch trained (resume: auto): an unfinished run of the
                     same config continues from it (activation_hash/runs/)
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from activation_hash.codes.callback import NeuralCodeCallback
from activation_hash.codes.select import selection_specs
from activation_hash.devices import Placement, assign_devices, jobs_at_once, set_threads
from activation_hash.loggers import build_callbacks, build_loggers, finish_wandb, log_config
from activation_hash.models.classifier import Classifier, NonFiniteLossError
from activation_hash.noise import ignore_third_party_warnings
from activation_hash.runs.build import build
from activation_hash.runs.checkpoint import LastEpoch, position, resumable
from activation_hash.runs.claim import claim
from activation_hash.runs.options import keeps_checkpoint, progress_bar, progress_mode, sweep_tags
from activation_hash.runs.paths import CHECKPOINT
from activation_hash.runs.record import RunRecord
from activation_hash.runs.signals import interruptible
from activation_hash.runs.space import check_writable, disk_full
from activation_hash.runs.validation import trainer_validation
from activation_hash.validate import check_config

log = logging.getLogger(__name__)


class _DropAdvertisements(logging.Filter):
    """Lightning logs a product tip at every Trainer start; it is noise in every run's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_DropAdvertisements())


def run(cfg: DictConfig) -> dict[str, Any]:
    check_config(cfg)
    out = Path(cfg.output_dir)
    check_writable(cfg, out)  # read-only, not a directory, full: one line before anything is built
    with interruptible([out]):  # SIGTERM/SIGINT: exit 143/130, one line, resumable
        try:
            with claim(cfg, out) as previous:  # owns the run dir; reuses or clears it
                return previous if previous is not None else _train(cfg)
        except Exception as err:
            if (full := disk_full(err, out)) is not None:
                raise full from err
            raise


def _train(cfg: DictConfig) -> dict[str, Any]:
    out = Path(cfg.output_dir)
    built = build(cfg)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = Classifier(built.net, built.data.num_classes, optimizer=instantiate(cfg.optimizer), scheduler=scheduler)

    placement = set_threads(_placement(cfg))  # threads set once, recorded in meta.json (placement)
    checkpoint = resumable(cfg, out)  # claim() kept the directory only for an unfinished run of this config
    resumed_at = position(checkpoint) if checkpoint else None
    with warnings.catch_warnings():  # the CSV logger's "directory is not empty": config.yaml, or a resumed run
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        record = RunRecord(cfg, clean_labels=built.data.train_clean_labels)
        if resumed_at:
            log.info("resuming from epoch %d (%s)", resumed_at[0], CHECKPOINT)
        record.start(built.units, placement, resumed_at)  # resumed: the rows up to the checkpoint stay
        loggers = build_loggers(cfg.get("logger"), extra_tags=sweep_tags())  # after meta.json: the W&B run id
        record.attach(loggers)
    log_config(loggers, cfg, sweep_tags())  # the config to every logger, after the CSV rows are restored

    codes = NeuralCodeCallback(record, epochs=cfg.codes.epochs, layers=cfg.codes.layers, metrics=cfg.metrics,
                               capture_last=cfg.codes.get("capture_last", True),
                               memmap=cfg.codes.get("memmap", False), data=built.data,
                               selections=selection_specs(cfg.codes), source=cfg.codes.get("source", "auto"),
                               save=bool(cfg.codes.get("save", False)))
    progress = progress_mode(cfg)
    keep_checkpoint = keeps_checkpoint(cfg)
    callbacks: list[pl.Callback] = [codes, *_user_callbacks(cfg), *progress_bar(progress),
                                    *([LastEpoch(out)] if keep_checkpoint else [])]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                      accelerator=placement.accelerator, devices=placement.devices,
                                      default_root_dir=str(out),
                                      enable_progress_bar=progress != "none",
                                      **trainer_validation(cfg),  # no validation loop unless something reads it
                                      **({"enable_checkpointing": True} if keep_checkpoint else {}),
                                      **_cluster_plugins())
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # the run dir already holds config.yaml when the CSV logger starts: expected, not a problem
            warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
            ignore_third_party_warnings()  # pytorch_lightning's LeafSpec FutureWarning, every batch
            trainer.fit(module, datamodule=built.datamodule, ckpt_path=checkpoint, weights_only=True)
    finally:
        offline_dir = finish_wandb(loggers)
    if offline_dir:
        log.warning("W&B offline run saved in %s; upload it with `wandb sync %s`", offline_dir, offline_dir)

    if module.nonfinite_loss:
        raise NonFiniteLossError(f"{module.nonfinite_loss}; training stopped. The {len(record.rows) // 2} "
                                 f"capture(s) made before are kept in {out / 'encoding.jsonl'}. "
                                 "Try a lower optimizer.lr or set trainer.gradient_clip_val.")
    return record.finish(epochs_trained=trainer.current_epoch,
                         train_seconds=round(time.perf_counter() - started, 2),
                         units_per_layer={name: n for name, n in built.units})


def _placement(cfg: DictConfig) -> Placement:
    accelerator, devices = cfg.trainer.get("accelerator", "auto"), cfg.trainer.get("devices", "auto")
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return Placement(accelerator, devices, None)
    hydra_cfg = HydraConfig.get()
    n_jobs = jobs_at_once(OmegaConf.select(hydra_cfg, "launcher.n_jobs", default=1) or 1)
    return assign_devices(accelerator, devices, hydra_cfg.job.num, n_jobs)


def _user_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    return build_callbacks(cfg.get("callbacks"))  # either Lightning namespace (lightning_ns.py)


def _cluster_plugins() -> dict[str, Any]:
    """Under submitit on SLURM, submitit requeues a preempted or timed-out job (and the rerun resumes
    from checkpoints/last.ckpt): Lightning's own SLURM requeue handling is turned off."""
    from pytorch_lightning.plugins.environments import SLURMEnvironment
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and SLURMEnvironment.detect():
        return {"plugins": [SLURMEnvironment(auto_requeue=False)]}
    return {}
