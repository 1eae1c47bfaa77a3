"""NeuralCodeCallback: *when* to capture. At scheduled epochs it captures the codes of the train
and test sets and hands them to the run's `RunRecord` (activation_hash.runs.record), which turns
them into rows (encoding.jsonl, codes/epoch=NNNN.npz, the loggers, a console line).

Epoch 0 is the network at initialization (captured when training starts); epoch e is the
network after e training epochs. If training stops early, the last epoch is captured too.
A run resumed from a checkpoint after e epochs has its record restored first: the captures up to
e are read back (and not made again), the later ones are dropped and recomputed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from activation_hash.codes.capture import describe_units, parse_layers
from activation_hash.codes.collect import collect_codes
from activation_hash.codes.gram import score_network
from activation_hash.codes.source import resolve_source
from activation_hash.codes.probes import enabled_probes, probes, run_probes
from activation_hash.codes.schedule import capture_epochs
from activation_hash.codes.select import parse_selections, primary
from activation_hash.data.protocol import DataInfo
from activation_hash.data.protocol import describe as describe_data
from activation_hash.devices import device_memory, metrics_device
from activation_hash.metrics import WHICH
from activation_hash.metrics.encoding import resolve_max_ram
from activation_hash.metrics.registry import families
from activation_hash.runs.record import RunRecord, complete, score_selections

log = logging.getLogger(__name__)


class NeuralCodeCallback(pl.Callback):
    def __init__(self, record: RunRecord, epochs: Any = "log", layers: Any = "all",
                 metrics: Mapping[str, Any] | None = None, capture_last: bool = True, memmap: bool = False,
                 data: DataInfo | None = None, selections: Mapping[str, Any] | None = None,
                 source: str = "auto", save: bool = False):
        self.record = record
        self.selection_specs = dict(selections or {"all": "all"})  # codes.selections: views of the captured layers
        self.spec = epochs
        self.layer_spec = layers
        self.metric_kwargs = _plain(metrics or {})
        self.device_request = self.metric_kwargs.pop("device", "auto")
        # sections of registered network probes (metrics.<probe>.*) go to the probes, not the metrics
        self.probe_cfg = {name: self.metric_kwargs.pop(name) for name in probes() if name in self.metric_kwargs}
        self.probes: dict[str, dict[str, Any]] = {}
        self.capture_last = capture_last
        self.memmap = memmap
        self.source_spec, self.save = source, save  # codes.source (resolved at setup), codes.save
        self.source: str | None = None
        self.data = data  # read from trainer.datamodule at setup when not given
        self.epochs: list[int] = []

    @property
    def out_dir(self) -> Path:
        return self.record.out

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.record.rows

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.epochs = capture_epochs(self.spec, trainer.max_epochs)
        if self.data is None:
            self.data = describe_data(trainer.datamodule)
        self.units = describe_units(pl_module, self.data.input_shape)
        self.probes = enabled_probes(self.probe_cfg, self.data.input_shape)
        self.layers = parse_layers(self.layer_spec, len(self.units), names=[name for name, _ in self.units])
        # each selection: 0-based indices into the captured layers (the selections' numbering)
        self.selections = parse_selections(self.selection_specs, [self.units[i][0] for i in self.layers])
        self.source = None  # resolved at the first capture, on the device the metrics run on

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # only a run that starts at epoch 0 captures epoch 0: a resumed run's network is trained
        if 0 in self.epochs and 0 not in self.record.done and trainer.current_epoch == 0:
            self.capture(trainer, pl_module, epoch=0)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch in self.epochs:
            self.capture(trainer, pl_module, epoch=epoch)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # trainer.max_epochs=0 (analyse the network at initialization): Lightning skips the
        # training loop and its hooks, so epoch 0 is captured here
        if 0 in self.epochs and 0 not in self.record.done and trainer.current_epoch == 0:
            self.capture(trainer, pl_module, epoch=0)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch  # epochs completed when training stopped
        if self.capture_last and epoch not in self.record.done and 0 < epoch < trainer.max_epochs:
            self.capture(trainer, pl_module, epoch=epoch, reason="stopped")

    def capture(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int,
                reason: str = "scheduled") -> list[dict[str, Any]]:
        self.record.done.add(epoch)
        rows: list[dict[str, Any]] = []
        if trainer.is_global_zero:
            rows = self._capture(trainer, pl_module, epoch, reason)
        trainer.strategy.barrier("neural_code_capture")
        return rows

    def _capture(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int,
                 reason: str) -> list[dict[str, Any]]:
        started = time.perf_counter()
        data = self.data
        sizes = {"train": data.n_train, "test": data.n_test}
        which = self.metric_kwargs.get("which", WHICH)
        device = metrics_device(self.device_request, pl_module.device)
        if self.source is None:
            self.source = resolve_source(self.source_spec, data.n_train + data.n_test,
                                         sum(self.units[i][1] for i in self.layers),
                                         resolve_max_ram(self.metric_kwargs.get("max_ram")), save=self.save,
                                         memmap=self.memmap, which=self.metric_kwargs.get("which"),
                                         drop_constant=self.metric_kwargs.get("drop_constant", True),
                                         device_memory=device_memory(device), n_train=data.n_train)
        if self.source == "network":  # no codes held: the rows' Gram matrix, layer group by layer group
            train, test, raw = score_network(pl_module, data.eval_loaders(), self.layers, self.units, self.selections,
                                             sizes, self.metric_kwargs, which, device)
            scored = {name: complete(metrics, which, train, test) for name, metrics in raw.items()}
            if self.probes:
                scored[primary(list(scored))].update(run_probes(pl_module, data, self.layers, self.probes,
                                                                self.out_dir, epoch))
            return self.record.add_selections(epoch, trainer.global_step, reason, train, test, scored,
                                              time.perf_counter() - started)
        splits = {split: collect_codes(pl_module, loader, self.layers, num_samples=sizes[split],
                                       memmap_path=self._memmap_path(epoch, split), extras=self._extras())
                  for split, loader in data.eval_loaders().items()}
        train, test = splits["train"], splits["test"]
        scored = score_selections(train, test, self.selections, which,
                                  {k: v for k, v in self.metric_kwargs.items() if k != "which"}, device,
                                  extras={f"{s}/{k}": v for s, part in splits.items() for k, v in part.extras.items()})
        if self.probes:  # network probes measure the captured layers: on the primary selection's rows
            scored[primary(list(scored))].update(run_probes(pl_module, data, self.layers, self.probes, self.out_dir, epoch))
        rows = self.record.add_selections(epoch, trainer.global_step, reason, train, test, scored,
                                          time.perf_counter() - started)
        for split in splits:
            if self.memmap:
                self._memmap_path(epoch, split).unlink(missing_ok=True)
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


def _plain(obj: Any) -> Any:
    return OmegaConf.to_container(obj, resolve=True) if isinstance(obj, DictConfig) else dict(obj)
