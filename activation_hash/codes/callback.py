"""NeuralCodeCallback: at scheduled epochs, capture the codes of the train and test sets,
compute the encoding metrics, log them to every Lightning logger, append them to
`encoding.jsonl` and (optionally) save the codes as `codes/epoch=NNNN.npz`.

Epoch 0 is the network at initialization (captured when training starts); epoch e is the
network after e training epochs. If training stops early, the last epoch is captured too.
A run resumed from a checkpoint after e epochs calls `resume(e)` first: the captures up to e are
read back from encoding.jsonl (and not made again), the later ones are dropped and recomputed.
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
from activation_hash.codes.io import atomic_write, codes_path, save_codes
from activation_hash.codes.probes import enabled_probes, probes, run_probes
from activation_hash.codes.schedule import capture_epochs
from activation_hash.data.protocol import DataInfo
from activation_hash.devices import metrics_device
from activation_hash.data.protocol import describe as describe_data
from activation_hash.metrics import WHICH, compute_families
from activation_hash.metrics.registry import CodeSet, families

log = logging.getLogger(__name__)


class NeuralCodeCallback(pl.Callback):
    def __init__(self, epochs: Any = "log", layers: Any = "all", save: bool = False,
                 out_dir: str | Path = ".", metrics: Mapping[str, Any] | None = None,
                 capture_last: bool = True, memmap: bool = False, verbose: bool = True,
                 data: DataInfo | None = None):
        self.spec = epochs
        self.layer_spec = layers
        self.save = save
        self.out_dir = Path(out_dir)
        self.metric_kwargs = _plain(metrics or {})
        self.device_request = self.metric_kwargs.pop("device", "auto")
        # sections of registered network probes (metrics.<probe>.*) go to the probes, not the metrics
        self.probe_cfg = {name: self.metric_kwargs.pop(name) for name in probes() if name in self.metric_kwargs}
        self.probes: dict[str, dict[str, Any]] = {}
        self.capture_last = capture_last
        self.memmap = memmap
        self.verbose = verbose
        self.data = data  # read from trainer.datamodule at setup when not given
        self.epochs: list[int] = []
        self.records: list[dict[str, Any]] = []
        self._done: set[int] = set()

    @property
    def jsonl_path(self) -> Path:
        return self.out_dir / "encoding.jsonl"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.epochs = capture_epochs(self.spec, trainer.max_epochs)
        if self.data is None:
            self.data = describe_data(trainer.datamodule)
        self.units = describe_units(pl_module, self.data.input_shape)
        self.probes = enabled_probes(self.probe_cfg, self.data.input_shape)
        self.layers = parse_layers(self.layer_spec, len(self.units), names=[name for name, _ in self.units])

    def resume(self, epochs_trained: int) -> None:
        """Continue a run restored after `epochs_trained` epochs: keep its captures up to there."""
        self.records = restore_captures(self.out_dir, epochs_trained)
        self._done = {r["epoch"] for r in self.records}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if 0 in self.epochs and 0 not in self._done:
            self.capture(trainer, pl_module, epoch=0)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch in self.epochs:
            self.capture(trainer, pl_module, epoch=epoch)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # trainer.max_epochs=0 (analyse the network at initialization): Lightning skips the
        # training loop and its hooks, so epoch 0 is captured here
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
        data = self.data
        loaders = data.eval_loaders()
        sizes = {"train": data.n_train, "test": data.n_test}
        splits = {}
        for split, loader in loaders.items():
            splits[split] = collect_codes(pl_module, loader, self.layers, num_samples=sizes[split],
                                          memmap_path=self._memmap_path(epoch, split), extras=self._extras())
        train, test = splits["train"], splits["test"]
        codes = CodeSet(train.codes, train.labels, test.codes, test.labels, train.n_bits,
                        extras={f"{s}/{k}": v for s, part in splits.items() for k, v in part.extras.items()},
                        layer_names=tuple(train.layer_names), layer_units=tuple(train.layer_units))
        metrics = compute_families(codes, which=self.metric_kwargs.get("which", WHICH),
                                   options={k: v for k, v in self.metric_kwargs.items() if k != "which"},
                                   device=metrics_device(self.device_request, pl_module.device))
        metrics.update({"train/net_acc": train.acc, "train/net_loss": train.loss,
                        "test/net_acc": test.acc, "test/net_loss": test.loss})
        dead = metrics.get("n_bits_used") == 0
        if dead:  # every unit constant: no code to score; the code metrics are there, as null
            names = {n for name in self._which() if name in families() for n in families()[name].names}
            metrics = {**dict.fromkeys(names), **{k: (v if _kept_when_dead(k) else None) for k, v in metrics.items()}}
        if self.probes:
            metrics.update(run_probes(pl_module, data, self.layers, self.probes, self.out_dir, epoch))
        elapsed = time.perf_counter() - started
        common = {"epoch": epoch, "dead_network": dead, "step": trainer.global_step, "reason": reason,
                  "n_bits": metrics.get("n_bits", train.n_bits), "n_bits_used": metrics.get("n_bits_used"),
                  "capture_seconds": round(elapsed, 3), "backend": metrics.get("backend")}
        rows = [{**common, "split": split, **{k: v for k, v in metrics.items() if k.startswith(f"{split}/")}}
                for split in ("train", "test")]
        self.records.extend(rows)
        self._write_jsonl()
        if self.save:
            extra = {}
            if (clean := data.train_clean_labels) is not None:
                extra["train_clean_labels"] = clean
            save_codes(codes_path(self.out_dir / "codes", epoch), train_codes=train.codes,
                       test_codes=test.codes, train_labels=train.labels, test_labels=test.labels,
                       n_bits=train.n_bits, epoch=epoch, layer_names=train.layer_names,
                       layer_units=train.layer_units, **extra)
        for split in splits:
            if self.memmap:
                self._memmap_path(epoch, split).unlink(missing_ok=True)
        logged = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        logged["epoch"] = float(epoch)
        for logger in trainer.loggers:
            logger.log_metrics(logged, step=trainer.global_step)
        if self.verbose:
            _print_capture(epoch, metrics, elapsed, dead)
        return rows

    def _which(self) -> list[str]:
        which = self.metric_kwargs.get("which", WHICH)
        return [which] if isinstance(which, str) else list(which)

    def _extras(self) -> list[str]:
        """The per-sample arrays the selected metric families need or want (see registry.EXTRAS)."""
        known = families()
        return sorted({need for name in self._which() if name in known
                       for need in (*known[name].needs, *known[name].wants)})

    def _memmap_path(self, epoch: int, split: str) -> Path | None:
        return self.out_dir / "codes" / f".epoch={epoch:04d}.{split}.npy" if self.memmap else None

    def _write_jsonl(self) -> None:
        # rewrite the whole (small) file atomically so a crash never leaves a half line
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records)
        atomic_write(self.jsonl_path, text)


def restore_captures(out_dir: Path, epochs_trained: int) -> list[dict[str, Any]]:
    """For a run resumed after `epochs_trained` epochs: the rows of `out_dir/encoding.jsonl` up to
    there (the file rewritten to them) and no codes of later captures; returns the rows."""
    out_dir = Path(out_dir)
    jsonl = out_dir / "encoding.jsonl"
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()] if jsonl.is_file() else []
    records = [r for r in rows if r["epoch"] <= epochs_trained]
    atomic_write(jsonl, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    codes = out_dir / "codes"
    for path in codes.glob("epoch=*.npz") if codes.is_dir() else ():
        if int(path.stem.split("=")[1]) > epochs_trained:
            path.unlink()
    for path in codes.glob(".epoch=*.npy") if codes.is_dir() else ():  # memmaps of an unfinished capture
        path.unlink()
    return records


def _plain(obj: Any) -> Any:
    return OmegaConf.to_container(obj, resolve=True) if isinstance(obj, DictConfig) else dict(obj)


_SHORT = [("train/redundancy", "red.tr"), ("test/redundancy", "red.te"), ("test/kmeans_acc", "kmeans"),
          ("test/knn_acc", "knn"), ("test/logreg_acc", "logreg"), ("test/net_acc", "net")]


def _kept_when_dead(key: str) -> bool:
    return "/" not in key or key.split("/", 1)[1] in ("n", "net_acc", "net_loss")


def _print_capture(epoch: int, metrics: Mapping[str, Any], seconds: float, dead: bool = False) -> None:
    from rich import get_console
    parts = [f"{short} {metrics[key]:.3f}" for key, short in _SHORT if metrics.get(key) is not None]
    if dead:
        parts.insert(0, "[red]dead network: every unit is constant over train+test, no code to score[/]")
    get_console().print(f"[bold]epoch {epoch:>3}[/] " + " ".join(parts) + f" ({seconds:.1f}s)",
                        soft_wrap=True, highlight=False)
