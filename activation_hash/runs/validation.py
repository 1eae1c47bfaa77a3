"""Whether a run validates: only where something reads the validation metrics (issue 20, "no
waste"). Read alike by a solo run (run.py), a batched group (batched/run_group.py) and the cost
model (plan/cost.py); a pure function of the config (plain dict or DictConfig), no torch.

A run validates when
  - the user set `trainer.check_val_every_n_epoch`, `trainer.val_check_interval` or a non-zero
    `trainer.limit_val_batches` (the default config leaves them null/absent), or
  - an EarlyStopping or ModelCheckpoint callback monitors a `val/*` metric, or
  - any other user callback is configured (it may read `trainer.callback_metrics`), or
  - a sweeper optimizes a `val/*` metric (`optimized_metric`).
Otherwise the Trainer gets `limit_val_batches=0` (Lightning's documented switch that turns the
validation loop and its sanity check off): the data split (`data.val_fraction`) is unchanged, so
the network trains on the same images either way, and metrics.csv has no val/loss, val/acc rows.
"""

from __future__ import annotations

from typing import Any

TRAINER_KEYS = ("check_val_every_n_epoch", "val_check_interval", "limit_val_batches")
MONITORING = ("EarlyStopping", "ModelCheckpoint")


def validation_readers(cfg: Any) -> list[str]:
    """The config keys that read (or ask for) validation; empty: the run does not validate."""
    trainer = cfg.get("trainer") or {}
    if trainer.get("limit_val_batches") == 0:  # the user turned validation off
        return []
    readers = [f"trainer.{key}" for key in TRAINER_KEYS if trainer.get(key) is not None]
    for name, spec in (cfg.get("callbacks") or {}).items():
        if not spec or "_target_" not in spec:
            continue
        if str(spec["_target_"]).endswith(MONITORING):
            if str(spec.get("monitor") or "").startswith("val/"):
                readers.append(f"callbacks.{name}.monitor")
        else:
            readers.append(f"callbacks.{name}")
    if str(cfg.get("optimized_metric") or "").startswith("val/"):
        readers.append("optimized_metric")
    return readers


def trainer_validation(cfg: Any) -> dict[str, Any]:
    """The Trainer arguments that switch validation on or off for this run (they override the
    config's trainer keys): off, `limit_val_batches=0`; on, every epoch unless the user said how often."""
    trainer = cfg.get("trainer") or {}
    every = {} if trainer.get("check_val_every_n_epoch") is not None or trainer.get("val_check_interval") is not None \
        else {"check_val_every_n_epoch": 1}
    if not validation_readers(cfg):
        return {**every, "limit_val_batches": 0}
    return every
