"""Checks of a composed config that must fail before any training starts."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from activation_hash.devices import check_metrics_device
from activation_hash.schema import ConfigError, validate


def check_config(cfg: DictConfig) -> None:
    """Static checks that need no data or model. Raises ConfigError naming key, value, allowed."""
    validate(cfg)
    if cfg.metrics.get("device", "auto") != "auto":
        check_metrics_device(cfg.metrics.device)
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError("output_dir", str(out), "is a file; it must be a directory (or not exist yet)", sep=" ")


def check_against_data(cfg: DictConfig, n_train: int | None) -> None:
    """Checks that need the training-set size (skipped when the datamodule cannot tell it)."""
    k = cfg.metrics.knn_k
    if n_train is not None and "knn" in cfg.metrics.get("which", ["knn"]) and k > n_train:
        raise ConfigError("metrics.knn_k", k, f"is larger than the training set ({n_train} samples); "
                          f"allowed: 1..{n_train}", sep=" ")
