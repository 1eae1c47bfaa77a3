"""run(cfg) -> dict: build data, network and trainer from a composed config, train, capture
the neural codes at the scheduled epochs, and return the last capture's metrics.

Pure apart from the run directory it writes (cfg.output_dir):
    config.yaml      the resolved config            meta.json     git revision, versions, command
    encoding.jsonl   one row per capture and split  metrics.csv   Lightning's CSV logger
    codes/           epoch=NNNN.npz when codes.save  result.json   summary, written last
    checkpoints/     last.ckpt, the last epoch trained (resume: auto): an unfinished run of the
                     same config continues from it (activation_hash/resume.py)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import activation_hash
from activation_hash.codes.callback import NeuralCodeCallback
from activation_hash.codes.capture import describe_units, parse_layers
from activation_hash.data.protocol import describe as describe_data
from activation_hash.devices import Placement, assign_devices, jobs_at_once
from activation_hash.atomic import atomic_write, atomic_write_json
from activation_hash.loggers import build_callbacks, build_loggers, finish_wandb, log_config
from activation_hash.models.classifier import Classifier, NonFiniteLossError
from activation_hash.resume import LastEpoch, position, restore_csv
from activation_hash.rundir import CHECKPOINT, claim, resumable
from activation_hash.summary import print_summary
from activation_hash.validate import check_against_data, check_config

log = logging.getLogger(__name__)


class _DropAdvertisements(logging.Filter):
    """Lightning logs a product tip at every Trainer start; it is noise in every run's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_DropAdvertisements())


def run(cfg: DictConfig) -> dict[str, Any]:
    check_config(cfg)
    with claim(cfg, Path(cfg.output_dir)) as previous:  # owns the run dir; reuses or clears it
        return previous if previous is not None else _train(cfg)


def _train(cfg: DictConfig) -> dict[str, Any]:
    out = Path(cfg.output_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    data = describe_data(datamodule)
    check_against_data(cfg, data.n_train)
    net = instantiate(cfg.model)(input_shape=data.input_shape, num_classes=data.num_classes)
    units = describe_units(net, data.input_shape)
    chosen = parse_layers(cfg.codes.layers, len(units), names=[name for name, _ in units])  # bad layer selections fail here, not mid-training
    log.info("%d code layers, %d units per input (%s); the code uses %d bits", len(units), sum(n for _, n in units),
             ", ".join(f"{name}: {n}" for name, n in units[:8]) + (", ..." if len(units) > 8 else ""),
             sum(units[i][1] for i in chosen))
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = Classifier(net, data.num_classes, optimizer=instantiate(cfg.optimizer), scheduler=scheduler)

    placement = _placement(cfg)
    checkpoint = resumable(cfg, out)  # claim() kept the directory only for an unfinished run of this config
    resumed_at = position(checkpoint) if checkpoint else None
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "config.yaml", OmegaConf.to_yaml(_used(cfg), resolve=True))
    atomic_write_json(out / "meta.json", _meta(units, placement, out / "meta.json", resumed_at))

    codes = NeuralCodeCallback(**OmegaConf.to_container(cfg.codes, resolve=True), out_dir=out, metrics=cfg.metrics,
                               data=data)
    progress = _progress_mode(cfg)
    keep_checkpoint = _keeps_checkpoint(cfg)
    callbacks: list[pl.Callback] = [codes, *_user_callbacks(cfg), *_progress_bar(progress),
                                    *([LastEpoch(out)] if keep_checkpoint else [])]
    loggers = build_loggers(cfg.get("logger"), extra_tags=_sweep_tags())
    if resumed_at:
        _resume(codes, loggers, *resumed_at)
    log_config(loggers, cfg, _sweep_tags())  # the config to every logger, after the CSV rows are restored
    if placement.threads:
        torch.set_num_threads(placement.threads)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                      accelerator=placement.accelerator, devices=placement.devices,
                                      default_root_dir=str(out),
                                      enable_progress_bar=progress != "none",
                                      **({"enable_checkpointing": True} if keep_checkpoint else {}),
                                      **_cluster_plugins())
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # the run dir already holds config.yaml when the CSV logger starts: expected, not a problem
            warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated", category=DeprecationWarning)
            trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True)
    finally:
        offline_dir = finish_wandb(loggers)
    if offline_dir:
        log.warning("W&B offline run saved in %s; upload it with `wandb sync %s`", offline_dir, offline_dir)

    if module.nonfinite_loss:
        raise NonFiniteLossError(f"{module.nonfinite_loss}; training stopped. The {len(codes.records) // 2} "
                                 f"capture(s) made before are kept in {out / 'encoding.jsonl'}. "
                                 "Try a lower optimizer.lr or set trainer.gradient_clip_val.")
    result = _summary(codes.records)
    result.update(run_dir=str(out), epochs_trained=trainer.current_epoch,
                  train_seconds=round(time.perf_counter() - started, 2),
                  units_per_layer={name: n for name, n in units})
    atomic_write_json(out / "result.json", result)
    print_summary(codes.records)
    log.info("run directory: %s", out)
    return result


def _keeps_checkpoint(cfg: DictConfig) -> bool:
    if cfg.get("resume", "auto") != "auto":
        return False
    if (cfg.trainer.get("max_steps") or -1) > 0:
        # Lightning resumes step-limited ("iteration-based") training with its epoch counter one
        # ahead of an uninterrupted run's, which changes the data order: such runs restart instead
        log.info("trainer.max_steps=%d: no checkpoint is kept; an interrupted run restarts from epoch 0",
                 cfg.trainer.max_steps)
        return False
    return True


def _resume(codes: NeuralCodeCallback, loggers: list, epochs: int, step: int) -> None:
    """Continue from the checkpoint after `epochs` epochs: the captures and CSV rows up to there stay."""
    log.info("resuming from epoch %d (%s)", epochs, CHECKPOINT)
    codes.resume(epochs)
    with warnings.catch_warnings():  # the CSV logger's "directory is not empty": it is being resumed
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        restore_csv(loggers, epochs, step)


def _used(cfg: DictConfig) -> DictConfig:
    """The config without the experiment's grid table (its values for this run are in the keys)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("grid", None)
    return OmegaConf.create(plain)


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The metrics of the last capture (both splits merged)."""
    if not records:
        return {}
    last = max(r["epoch"] for r in records)
    merged: dict[str, Any] = {}
    for row in records:
        if row["epoch"] == last:
            merged.update({k: v for k, v in row.items() if k not in ("split", "reason", "capture_seconds")})
    return merged


def _placement(cfg: DictConfig) -> Placement:
    accelerator, devices = cfg.trainer.get("accelerator", "auto"), cfg.trainer.get("devices", "auto")
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return Placement(accelerator, devices, None)
    hydra_cfg = HydraConfig.get()
    n_jobs = jobs_at_once(OmegaConf.select(hydra_cfg, "launcher.n_jobs", default=1) or 1)
    return assign_devices(accelerator, devices, hydra_cfg.job.num, n_jobs)


def _sweep_tags() -> list[str]:
    """The overrides that define this job (its factor values), for W&B tags."""
    if not HydraConfig.initialized():
        return []
    return [o.lstrip("+~") for o in HydraConfig.get().overrides.task if "/" not in o.split("=")[0]]


def _user_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    return build_callbacks(cfg.get("callbacks"))  # either Lightning namespace (lightning_ns.py)


def _progress_mode(cfg: DictConfig) -> str:
    mode = cfg.get("progress_bar", "auto")
    allowed = ("auto", "rich", "tqdm", "none")
    if mode not in allowed:
        raise ValueError(f"progress_bar={mode!r}: allowed values are {', '.join(allowed)}")
    if mode == "auto":
        return "rich" if sys.stdout.isatty() else "none"
    return mode


def _progress_bar(mode: str) -> list[pl.Callback]:
    if mode == "rich":
        from pytorch_lightning.callbacks import RichProgressBar
        return [RichProgressBar(leave=True)]
    if mode == "tqdm":
        from pytorch_lightning.callbacks import TQDMProgressBar
        return [TQDMProgressBar()]
    return []


def _cluster_plugins() -> dict[str, Any]:
    """Under submitit on SLURM, submitit requeues a preempted or timed-out job (and the rerun resumes
    from checkpoints/last.ckpt): Lightning's own SLURM requeue handling is turned off."""
    from pytorch_lightning.plugins.environments import SLURMEnvironment
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and SLURMEnvironment.detect():
        return {"plugins": [SLURMEnvironment(auto_requeue=False)]}
    return {}


def _meta(units: list[tuple[str, int]], placement: Placement, previous: Path | None = None,
          resumed_at: tuple[int, int] | None = None) -> dict[str, Any]:
    """The run's provenance; a resumed run keeps its first start and lists each resumption."""
    earlier = json.loads(previous.read_text()) if resumed_at and previous and previous.is_file() else {}
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    resumed = [*earlier.get("resumed", []), {"epoch": resumed_at[0], "at": now}] if resumed_at else []
    return {
        "git_revision": _git_revision(),
        "activation_hash": activation_hash.__version__,
        "torch": torch.__version__, "pytorch_lightning": pl.__version__,
        "python": platform.python_version(), "host": socket.gethostname(),
        "command": sys.argv, "units_per_layer": [{"name": n, "units": u} for n, u in units],
        "started": earlier.get("started", now),
        **({"resumed": resumed} if resumed else {}),
        "placement": dataclasses.asdict(placement),
        "config_choices": _choices(),
    }


def _choices() -> dict[str, str]:
    """The config-group options this run was composed from (e.g. model: tiny/vgg19), for the report."""
    if not HydraConfig.initialized():
        return {}
    return {k: str(v) for k, v in HydraConfig.get().runtime.choices.items() if v is not None and "hydra" not in k}


def _git_revision() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
