"""Checks of a composed config that must fail before any training starts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from activation_hash.data.datamodule import InMemoryDataModule
from activation_hash.schema import ConfigError, validate

# optimizer steps per Lightning training_step where that trains exactly as one (bench/README.md)
AUTO_STEPS_PER_CALL = 16


def check_config(cfg: DictConfig) -> None:
    """Static checks that need no data or model. Raises ConfigError naming key, value, allowed."""
    validate(cfg)
    steps = cfg.get("steps_per_call", "auto")
    if steps != "auto" and not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1):
        raise ValueError(f"steps_per_call={steps!r}: must be auto or an int >= 1")
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError("output_dir", str(out), "is a file; it must be a directory (or not exist yet)", sep=" ")


def check_against_data(cfg: DictConfig, n_train: int) -> None:
    """Checks that need the training-set size."""
    k = cfg.metrics.knn_k
    if "knn" in cfg.metrics.get("which", ["knn"]) and k > n_train:
        raise ConfigError("metrics.knn_k", k, f"is larger than the training set ({n_train} samples); "
                          f"allowed: 1..{n_train}", sep=" ")


def resolve_steps_per_call(requested: Any, trainer: Mapping[str, Any], datamodule: Any) -> int:
    """Optimizer steps per training_step: `requested`, or for "auto" 16 where fusing steps trains
    exactly as one step per call and 1 elsewhere. An explicit k > 1 where it would not fails."""
    unsafe = _why_not_fused(trainer, datamodule)
    if requested == "auto":
        return 1 if unsafe else AUTO_STEPS_PER_CALL
    if requested > 1 and unsafe:
        raise ValueError(f"steps_per_call={requested}: {unsafe}; use steps_per_call=1 (or auto)")
    return requested


def _why_not_fused(trainer: Mapping[str, Any], datamodule: Any) -> str | None:
    """Why several optimizer steps per training_step would change the training, or None."""
    def unset(key: str, *defaults: Any) -> bool:
        # compared with their type too: limit_train_batches=1 is one batch, 1.0 all of them
        value = trainer.get(key)
        return value is None or any(type(value) is type(d) and value == d for d in defaults)

    if not unset("max_steps", -1):
        return f"trainer.max_steps={trainer.get('max_steps')} is checked once per call, so it could be overshot"
    if not unset("accumulate_grad_batches", 1):
        return (f"trainer.accumulate_grad_batches={trainer.get('accumulate_grad_batches')} needs Lightning's "
                "automatic optimization")
    for key, defaults in (("limit_train_batches", (1.0,)), ("val_check_interval", (1.0,)),
                          ("overfit_batches", (0, 0.0))):
        if not unset(key, *defaults):
            return f"trainer.{key}={trainer.get(key)!r} would count calls (chunks of batches), not batches"
    strategy = trainer.get("strategy") or "auto"
    if not (isinstance(strategy, str) and (strategy == "auto" or strategy.startswith("ddp"))):
        return f"trainer.strategy={strategy!r}: only the default and DDP strategies are checked to train the same"
    if trainer.get("gradient_clip_val") is not None and str(trainer.get("precision")) in ("16", "16-mixed"):
        return (f"trainer.gradient_clip_val={trainer.get('gradient_clip_val')} with "
                f"trainer.precision={trainer.get('precision')!r}: clipping needs the automatic loop's unscaling")
    if not isinstance(datamodule, InMemoryDataModule):
        return f"the training data ({type(datamodule).__name__}) is not served by the in-memory TensorBatchLoader"
    return None
