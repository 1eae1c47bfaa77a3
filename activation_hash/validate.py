"""Checks of a composed config that must fail before any training starts."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from activation_hash.codes.schedule import capture_epochs


def check_config(cfg: DictConfig) -> None:
    """Static checks that need no data or model. Raises ValueError naming key, value, allowed."""
    max_epochs = cfg.trainer.get("max_epochs")
    if not isinstance(max_epochs, int) or max_epochs < 0:
        raise ValueError(f"trainer.max_epochs={max_epochs!r}: must be an int >= 0")
    capture_epochs(cfg.codes.epochs, max_epochs)
    clip = cfg.trainer.get("gradient_clip_val")
    if clip is not None and not clip > 0:
        raise ValueError(f"trainer.gradient_clip_val={clip!r}: must be null (no clipping) or > 0")
    lr = cfg.optimizer.get("lr")
    if lr is not None and not lr > 0:
        raise ValueError(f"optimizer.lr={lr!r}: must be > 0")
    wd = cfg.optimizer.get("weight_decay")
    if wd is not None and wd < 0:
        raise ValueError(f"optimizer.weight_decay={wd!r}: must be >= 0")
    k = cfg.metrics.get("knn_k")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"metrics.knn_k={k!r}: must be an int >= 1")
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir={str(out)!r} is a file; it must be a directory (or not exist yet)")


def check_against_data(cfg: DictConfig, n_train: int) -> None:
    """Checks that need the training-set size."""
    k = cfg.metrics.knn_k
    if "knn" in cfg.metrics.get("which", ["knn"]) and k > n_train:
        raise ValueError(f"metrics.knn_k={k} is larger than the training set ({n_train} samples); "
                         f"allowed: 1..{n_train}")
