"""NeuralCodeCallback: at scheduled epochs, capture the codes of the train and test sets,
compute the encoding metrics, log them to every Lightning logger, append them to
`encoding.jsonl` and (optionally) save the codes as `codes/epoch=NNNN.npz`.

Epoch 0 is the network at initialization (captured when training starts); epoch e is the
network after e training epochs. If training stops early, the last epoch is captured too.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from activation_hash.codes.capture import parse_layers, describe_units
from activation_hash.codes.collect import collect_codes
from activation_hash.codes.diameters import diameter_metrics
from activation_hash.codes.io import atomic_write, codes_path, save_codes
from activation_hash.codes.schedule import capture_epochs
from activation_hash.codes.family_adapter import family_metrics, probe_metrics

log = logging.getLogger(__name__)


class NeuralCodeCallback(pl.Callback):
    def __init__(self, epochs: Any = "log", layers: Any = "all", save: bool = False,
                 out_dir: str | Path = ".", metrics: Mapping[str, Any] | None = None,
                 capture_last: bool = True, memmap: bool = False, verbose: bool = True):
        self.spec = epochs
        self.layer_spec = layers
        self.save = save
        self.out_dir = Path(out_dir)
        self.metric_kwargs = _plain(metrics or {})
        diameter = self.metric_kwargs.pop("diameter", None) or {}
        self.diameter = diameter if diameter.get("enabled", False) else None
        self.capture_last = capture_last
        self.memmap = memmap
        self.verbose = verbose
        self.epochs: list[int] = []
        self.records: list[dict[str, Any]] = []
        self._done: set[int] = set()

    @property
    def jsonl_path(self) -> Path:
        return self.out_dir / "encoding.jsonl"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.epochs = capture_epochs(self.spec, trainer.max_epochs)
        self.units = describe_units(pl_module, trainer.datamodule.input_shape)
        # names as the network has them (the module wraps it as `net`)
        names = [name.removeprefix("net.") for name, _ in self.units]
        self.layers = parse_layers(self.layer_spec, len(self.units), names=names)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if 0 in self.epochs:
            self.capture(trainer, pl_module, epoch=0)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch in self.epochs:
            self.capture(trainer, pl_module, epoch=epoch)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # trainer.max_epochs=0 skips the training loop and its hooks: analyse the network at init
        if 0 in self.epochs and 0 not in self._done:
            self.capture(trainer, pl_module, epoch=0)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch  # epochs completed when training stopped
        if self.capture_last and epoch not in self._done and 0 < epoch < trainer.max_epochs:
            self.capture(trainer, pl_module, epoch=epoch, reason="stopped")

    def capture(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int,
                reason: str = "scheduled") -> list[dict[str, Any]]:
        self._done.add(epoch)
        rows: list[dict[str, Any]] = []
        if trainer.is_global_zero:
            rows = self._capture(trainer, pl_module, epoch, reason)
        trainer.strategy.barrier("neural_code_capture")
        return rows

    def _capture(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int,
                 reason: str) -> list[dict[str, Any]]:
        started = time.perf_counter()
        dm = trainer.datamodule
        loaders = dm.eval_loaders()
        sizes = {"train": len(dm.y_train), "test": len(dm.y_test)}
        splits = {}
        for split, loader in loaders.items():
            splits[split] = collect_codes(pl_module, loader, self.layers, num_samples=sizes[split],
                                          memmap_path=self._memmap_path(epoch, split))
        train, test = splits["train"], splits["test"]
        # interim adapter (activation_hash/codes/family_adapter.py) until the core rewrite lands
        metrics = family_metrics(pl_module, loaders, train, test, self.metric_kwargs)
        metrics.update(probe_metrics(pl_module, dm, self.layers, self.metric_kwargs, self.out_dir, epoch))
        metrics.update({"train/net_acc": train.acc, "train/net_loss": train.loss,
                        "test/net_acc": test.acc, "test/net_loss": test.loss})
        if self.diameter is not None:
            metrics.update(diameter_metrics(pl_module, dm.x_test, self.layers, self.diameter))
        metrics = mark_dead_network(metrics)
        elapsed = time.perf_counter() - started
        common = {"epoch": epoch, "step": trainer.global_step, "reason": reason,
                  "n_bits": metrics.get("n_bits", train.n_bits), "n_bits_used": metrics.get("n_bits_used"),
                  "dead_network": metrics.pop("dead_network"),
                  "capture_seconds": round(elapsed, 3)}
        rows = [{**common, "split": split, **{k: v for k, v in metrics.items() if k.startswith(f"{split}/")}}
                for split in ("train", "test")]
        self.records.extend(rows)
        self._write_jsonl()
        if self.save:
            extra = {}
            if getattr(dm, "y_train_clean", None) is not None:
                extra["train_clean_labels"] = dm.y_train_clean.cpu().numpy()
            save_codes(codes_path(self.out_dir / "codes", epoch), train_codes=train.codes,
                       test_codes=test.codes, train_labels=train.labels, test_labels=test.labels,
                       n_bits=train.n_bits, epoch=epoch, layer_names=train.layer_names,
                       layer_units=train.layer_units, **extra)
        for split in splits:
            if self.memmap:
                self._memmap_path(epoch, split).unlink(missing_ok=True)
        logged = {k: float(v) for k, v in metrics.items()
                  if isinstance(v, (int, float)) and v is not None and math.isfinite(v)}
        logged["epoch"] = float(epoch)
        for logger in trainer.loggers:
            logger.log_metrics(logged, step=trainer.global_step)
        if self.verbose:
            _print_capture(epoch, metrics, elapsed, dead=common["dead_network"])
        return rows

    def _memmap_path(self, epoch: int, split: str) -> Path | None:
        return self.out_dir / "codes" / f".epoch={epoch:04d}.{split}.npy" if self.memmap else None

    def _write_jsonl(self) -> None:
        # rewrite the whole (small) file atomically so a crash never leaves a half line
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records)
        atomic_write(self.jsonl_path, text)


def _plain(obj: Any) -> Any:
    return OmegaConf.to_container(obj, resolve=True) if isinstance(obj, DictConfig) else dict(obj)


_SHORT = [("train/redundancy", "red.tr"), ("test/redundancy", "red.te"), ("test/kmeans_acc", "kmeans"),
          ("test/knn_acc", "knn"), ("test/logreg_acc", "logreg"), ("test/net_acc", "net")]


# measured on the network itself, not on its codes: meaningful for a dead network too
_NOT_FROM_CODES = ("net_acc", "net_loss", "/n")


def mark_dead_network(metrics: dict[str, Any]) -> dict[str, Any]:
    """Flag a capture whose codes have no varying bit (`n_bits_used == 0`: every unit constant on
    the training set). Its code metrics would score one shared code, so they become None."""
    dead = metrics.get("n_bits_used") == 0
    out = dict(metrics, dead_network=dead)
    if dead:
        for key in out:
            if key.startswith(("train/", "test/")) and not key.endswith(_NOT_FROM_CODES):
                out[key] = None
    return out


def _print_capture(epoch: int, metrics: Mapping[str, Any], seconds: float, dead: bool = False) -> None:
    from rich import get_console
    parts = [f"{short} {metrics[key]:.3f}" for key, short in _SHORT if metrics.get(key) is not None]
    if dead:
        parts.insert(0, "[red]dead network: every unit constant, 0 bits used, code metrics not scored[/]")
    get_console().print(f"[bold]epoch {epoch:>3}[/] " + " ".join(parts) + f" ({seconds:.1f}s)",
                        soft_wrap=True, highlight=False)
