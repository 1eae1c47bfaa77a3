"""run_group(cfgs): the runs of one batch group trained as one network (a BatchedMLP for MLPs, a
StackedNet for other stackable networks) in one LightningModule (`module.BatchedClassifier`) and
Trainer, each member's run directory written as `activation_hash.run.run(cfg)` writes it.

    from activation_hash.batched.run_group import run_group, unbatchable_reason, group_key
    results = run_group([cfg_seed0, cfg_seed1])   # per member what run(cfg) returns, in order

The configs must agree in every key but the batchable ones (`members.BATCHABLE_KEYS` and the
result-neutral `rundir.NOT_RESULT_KEYS`): `group_key(cfg)` is what they must share, and
`unbatchable_reason(cfg)` says why a config cannot be batched at all (None when it can). The
Hydra launcher `hydra/launcher=batched` (hydra_plugins/activation_hash_batched_launcher) groups a
sweep's jobs with these two and calls run_group per group.

Per member, as a solo run, through the same code (activation_hash/runs/): `runs.claim` (a finished
member is skipped, a locked one too), `runs.build` (seed, data, network), and a `runs.RunRecord`
writing config.yaml, meta.json (plus a "batched" entry naming the group), encoding.jsonl (the same
capture schedule as NeuralCodeCallback, the same rows), metrics.csv (Lightning's CSVLogger with a
solo run's rows: val/loss, val/acc when something reads them (runs.validation), the captures, train/loss, train/acc, epoch, at the same steps),
codes/epoch=NNNN.npz with codes.save, result.json last. The recipe's StepLR-like schedule is one
scheduler over the stacked optimizer (the same function of the epoch for every member);
EarlyStopping on train/loss is per member, with Lightning's rule. Members of step-limited runs may
differ in data.train_size (`batchable_keys`). A killed group resumes from its checkpoint
(`runs.checkpoint`); each member's metrics.csv rows are on disk before each checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from activation_hash.batched.capture import member_split, stack_padded
from activation_hash.batched.members import BATCHABLE_KEYS
from activation_hash.batched.mlp import BatchedMLP
from activation_hash.batched.module import BatchedClassifier, ZipLoader
from activation_hash.batched.stacked import StackedNet, stackable_reason
from activation_hash.codes.capture import parse_layers
from activation_hash.codes.gram import score_network
from activation_hash.codes.source import resolve_source
from activation_hash.codes.probes import enabled_probes, probes, run_probes
from activation_hash.codes.schedule import capture_epochs
from activation_hash.codes.select import parse_selections, primary, selection_specs
from activation_hash.devices import Placement, device_memory, metrics_device, set_threads
from activation_hash.loggers import build_loggers, finish_wandb, log_config
from activation_hash.metrics import WHICH
from activation_hash.metrics.encoding import resolve_max_ram
from activation_hash.metrics.registry import families, load_plugins
from activation_hash.models.classifier import NonFiniteLossError
from activation_hash.noise import ignore_third_party_warnings
from activation_hash.runs.build import build, set_up_data
from activation_hash.runs.checkpoint import GroupLastEpoch, flush_csv, forget, group_resume_point, position
from activation_hash.runs.claim import claim, comparable, move_aside
from activation_hash.runs.options import keeps_checkpoint, progress_bar, progress_mode
from activation_hash.runs.paths import GROUP_POINTER
from activation_hash.runs.record import RunRecord, complete, score_selections
from activation_hash.runs.signals import interruptible
from activation_hash.runs.space import check_writable, disk_full
from activation_hash.runs.validation import validation_readers
from activation_hash.validate import check_config

log = logging.getLogger(__name__)

MLP_TARGET = "activation_hash.models.mlp.MLP"
DATA_TARGET = "activation_hash.data.InMemoryDataModule"
# elementwise optimizers: one over the stacked parameters is M independent ones
OPTIMIZERS = ("torch.optim.Adam", "torch.optim.AdamW", "torch.optim.SGD")
# schedules that depend on the epoch count only (stepped once per epoch, as Lightning's "epoch" interval)
# and schedules stated in optimizer steps (Lightning's "step" interval; every member takes the same steps)
STEP_SCHEDULERS = ("activation_hash.models.schedulers.step_lr_in_steps",)
SCHEDULERS = ("torch.optim.lr_scheduler.StepLR", "torch.optim.lr_scheduler.MultiStepLR",
              "torch.optim.lr_scheduler.ExponentialLR", "activation_hash.models.schedulers.step_after",
              *STEP_SCHEDULERS)
# network probes a group runs per member, on the member's own network put back into its solo
# module (`_Group.capture`); the others (DeepFool, regions, halfspaces) make a run unbatchable
BATCHED_PROBES = ("diameter",)
# trainer keys the batched loop implements only at these values
TRAINER_VALUES = {"fast_dev_run": (False, 0), "accumulate_grad_batches": (1,),
                  "precision": ("32-true", "32", 32), "num_nodes": (1,),
                  "check_val_every_n_epoch": (None, 1), "devices": (1, "auto", None), "strategy": ("auto", None),
                  "limit_train_batches": (None, 1.0), "limit_val_batches": (None, 1.0), "min_epochs": (None, 0)}
# trainer keys the group's Trainer takes as they are, or that do not change what it computes
# (gradient clipping is per member: BatchedClassifier.configure_gradient_clipping)
TRAINER_IGNORED = ("_target_", "max_epochs", "max_steps", "accelerator", "deterministic", "benchmark", "enable_checkpointing",
                   "enable_model_summary", "num_sanity_val_steps", "log_every_n_steps", "enable_progress_bar",
                   "gradient_clip_val", "gradient_clip_algorithm")


def _plain(cfg: DictConfig | dict) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def unbatchable_reason(cfg: DictConfig) -> str | None:
    """Why this run cannot be a member of a batched group (one line), or None when it can."""
    c = _plain(cfg)
    data = c.get("data") or {}
    if data.get("_target_") != DATA_TARGET:
        return f"data._target_={data.get('_target_')}: only {DATA_TARGET} batches"
    if (c.get("optimizer") or {}).get("_target_") not in OPTIMIZERS:
        return f"optimizer._target_={(c.get('optimizer') or {}).get('_target_')}: batched: {', '.join(OPTIMIZERS)}"
    scheduler = c.get("scheduler")
    if scheduler and scheduler.get("_target_") not in SCHEDULERS:
        return f"scheduler._target_={scheduler.get('_target_')}: batched: epoch schedules {', '.join(SCHEDULERS)}"
    for key, value in (c.get("trainer") or {}).items():
        if key in TRAINER_IGNORED:
            continue
        if key not in TRAINER_VALUES:
            return f"trainer.{key}={value}: not implemented by the batched loop"
        if value not in TRAINER_VALUES[key] and not (key == "devices" and isinstance(value, list) and len(value) == 1):
            return f"trainer.{key}={value}: batched only at {TRAINER_VALUES[key][0]}"
    for name, spec in (c.get("callbacks") or {}).items():
        if not spec or "_target_" not in spec:
            continue
        if not spec["_target_"].endswith("EarlyStopping"):
            return f"callbacks.{name}: {spec['_target_']} is not batched (EarlyStopping on train/loss is)"
        if spec.get("monitor") != "train/loss" or spec.get("check_on_train_epoch_end") is not True:
            return f"callbacks.{name}: batched early stopping monitors train/loss at train epoch end only"
        if spec.get("stopping_threshold") is not None or spec.get("divergence_threshold") is not None:
            return f"callbacks.{name}: stopping/divergence thresholds are not batched"
        if spec.get("mode", "min") not in ("min", "max"):
            return f"callbacks.{name}.mode={spec.get('mode')}: min or max"
    for name, spec in (c.get("logger") or {}).items():
        if spec and "_target_" in spec and not spec["_target_"].endswith(("CSVLogger", "WandbLogger")):
            return f"logger.{name}: {spec['_target_']} is not batched; CSVLogger and WandbLogger are"
    metrics = c.get("metrics") or {}
    load_plugins(metrics.get("plugins") or ())
    which = metrics.get("which", WHICH)
    for name in [which] if isinstance(which, str) else which:
        family = families().get(name)
        if family is not None and (family.needs or family.wants):
            return f"metrics.which: {name} needs per-sample extras ({', '.join((*family.needs, *family.wants))})"
    try:
        dm = instantiate(c["data"])
        shape = tuple(dm.input_shape)
        running = [name for name in enabled_probes(metrics, shape)
                   if name not in BATCHED_PROBES and _probe_runs(name, metrics, shape)]
        if running:
            return f"metrics: network probes ({', '.join(running)}) are not batched"
        if (c.get("model") or {}).get("_target_") != MLP_TARGET:
            return _model_reason(c["model"], shape, int(dm.num_classes))
    except Exception as err:  # a bad data, model or probe config fails in the solo run with its own message
        return f"data/model/metrics: {err}"
    return None


_MODEL_REASONS: dict[str, str | None] = {}


def _model_reason(model: dict, shape: tuple[int, ...], num_classes: int) -> str | None:
    """`_network_reason` of the network a model config builds, once per (config, data shape): the
    launcher's plan and run_group ask for every job, and a sweep's seeds share an architecture."""
    key = json.dumps([model, shape, num_classes], sort_keys=True, default=str)
    if key not in _MODEL_REASONS:
        net = instantiate(model)(input_shape=shape, num_classes=num_classes)
        _MODEL_REASONS[key] = _network_reason(net, shape)
    return _MODEL_REASONS[key]


def _network_reason(net: torch.nn.Module, shape: tuple[int, ...]) -> str | None:
    """Why a network other than the MLP cannot be a StackedNet member (torch.func), or None."""
    # the solo Classifier's extension points, and the gates the halfspaces probe reads (DLGN)
    hooks = {"effective_gating": "the halfspaces probe reads it, and probes are not batched",
             "loss_terms": "the batched module does not add its terms", "set_epoch": "the batched module does not call it"}
    for name, module in net.named_modules():
        for hook, why in hooks.items():
            if callable(getattr(module, hook, None)):
                return f"model: {name or type(net).__name__} defines {hook}(): {why}"
    return stackable_reason(net, shape)


def _probe_runs(name: str, metrics: dict, shape: tuple[int, ...]) -> bool:
    """A probe that reads `enabled: auto` itself (regions) does nothing unless its input is 2-D."""
    if (metrics.get(name) or {}).get("enabled", probes()[name].options.get("enabled")) != "auto":
        return True
    auto = probes()[name].auto
    return bool(auto(shape)) if auto is not None else math.prod(shape) == 2


def batchable_keys(cfg: DictConfig | dict) -> tuple[str, ...]:
    """The keys in which this run's group members may differ: `members.BATCHABLE_KEYS`, plus
    `data.train_size` for step-limited runs (trainer.max_steps: every member takes the same
    steps, so Adam's step count, one per stacked tensor, stays each member's own) without an
    epoch scheduler (the members' epochs end at different steps; a schedule in steps is fine) or batch norm
    (a member's padded batch rows would enter its batch statistics)."""
    c = _plain(cfg)
    trainer, model = c.get("trainer") or {}, c.get("model") or {}
    in_steps = not c.get("scheduler") or c["scheduler"].get("_target_") in STEP_SCHEDULERS
    if (trainer.get("max_steps") or -1) > 0 and in_steps and not model.get("batch_norm"):
        return (*BATCHABLE_KEYS, "data.train_size")
    return BATCHABLE_KEYS


def group_key(cfg: DictConfig) -> str:
    """What the members of one group must share: the result-changing keys but the batchable ones."""
    flat, keys = comparable(_plain(cfg)), batchable_keys(cfg)
    return json.dumps({k: v for k, v in flat.items() if not any(k == b or k.startswith(b + ".") for b in keys)},
                      sort_keys=True, default=str)


def run_group(cfgs: list[DictConfig], device: str | torch.device | None = None,
              placement: Placement | None = None,
              tags: list[list[str]] | None = None,
              choices: list[dict[str, str]] | None = None) -> list[dict[str, Any] | BaseException]:
    """Train the group; per member its result dict (what run(cfg) returns: the summary, or a
    finished run's saved result, or {"skipped": ...}), or the exception that failed it. `tags`:
    per member the W&B tags a solo run takes from its job's overrides (the launcher's);
    `choices`: per member its job's config-group choices, for its meta.json (the launcher's)."""
    for cfg in cfgs:
        check_config(cfg)
        if (reason := unbatchable_reason(cfg)) is not None:
            raise ValueError(f"{cfg.output_dir}: not batchable: {reason}")
    if len({group_key(cfg) for cfg in cfgs}) > 1:
        raise ValueError("run_group: the configs differ in keys that do not batch")
    for cfg in cfgs:
        check_writable(cfg, Path(cfg.output_dir))
    results: list[Any] = [None] * len(cfgs)
    with interruptible([Path(cfg.output_dir) for cfg in cfgs]):  # SIGTERM/SIGINT: exit 143/130, one line
        try:
            _claim_and_train(cfgs, results, device, placement, tags, choices)
        except Exception as err:
            if (full := disk_full(err, Path(cfgs[0].output_dir))) is not None:
                raise full from err
            raise
    return results


def _claim_and_train(cfgs: list[DictConfig], results: list[Any], device: str | torch.device | None,
                     placement: Placement | None, tags: list[list[str]] | None,
                     choices: list[dict[str, str]] | None = None) -> None:
    with contextlib.ExitStack() as stack:
        todo = []
        for i, cfg in enumerate(cfgs):
            # an unfinished earlier run in a member's directory is kept only when it was a member of
            # a group that left a checkpoint (a solo run's is moved aside: a group does not resume it)
            previous = stack.enter_context(claim(cfg, Path(cfg.output_dir), can_resume="group"))
            if previous is not None:
                results[i] = previous
            else:
                todo.append(i)
        if todo:
            outs = [Path(cfgs[i].output_dir) for i in todo]
            checkpoint = group_resume_point([cfgs[i] for i in todo])
            if checkpoint is None:
                for out in outs:
                    if (out / GROUP_POINTER).is_file():
                        move_aside(out, "it holds a member of another group, or of this one without a "
                                        "readable checkpoint")
            group = _Group([cfgs[i] for i in todo], device, placement, [tags[i] for i in todo] if tags else None,
                           checkpoint, [choices[i] for i in todo] if choices else None)
            for i, result in zip(todo, group.train()):
                results[i] = result


def _device(cfg: DictConfig, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    accelerator = cfg.trainer.get("accelerator", "auto")
    use_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return torch.device("cuda" if use_gpu else "cpu")


# Data modules of recent groups, by their config: the groups of one sweep (e.g. one per width)
# share each seed's data; a data module is read-only once set up (loaders are made per call).
_DATA: OrderedDict[str, Any] = OrderedDict()
_DATA_KEPT = 4


def _datamodule(data_cfg: DictConfig, key: str) -> Any:
    if key in _DATA:
        _DATA.move_to_end(key)
        return _DATA[key]
    dm = set_up_data(data_cfg)
    _DATA[key] = dm
    while len(_DATA) > _DATA_KEPT:
        _DATA.popitem(last=False)
    return dm


class _EarlyStopping:
    """Lightning's EarlyStopping rule on one member's train/loss (checked at train epoch end)."""

    def __init__(self, spec: dict):
        self.patience, self.mode = int(spec.get("patience", 3)), spec.get("mode", "min")
        delta = abs(float(spec.get("min_delta", 0.0)))
        self.min_delta = -delta if self.mode == "min" else delta
        self.check_finite = spec.get("check_finite", True)
        self.best = torch.tensor(math.inf if self.mode == "min" else -math.inf)
        self.wait = 0

    def should_stop(self, value: float) -> bool:
        current = torch.tensor(value)
        if self.check_finite and not torch.isfinite(current):
            return True
        better = torch.lt if self.mode == "min" else torch.gt
        if better(current - self.min_delta, self.best):
            self.best, self.wait = current, 0
            return False
        self.wait += 1
        return self.wait >= self.patience


def _trainer_device(device: torch.device) -> tuple[str, Any]:
    """Lightning's accelerator and devices for the group's one device."""
    if device.type == "cuda":
        return "gpu", [device.index or 0]
    return device.type, 1


class _GroupRecorder(pl.Callback):
    """Per member epoch, what a solo run's callbacks do when that member's own epoch ends (after
    every `lengths[m]` steps; members of different training-set sizes end theirs at different
    steps): validation rows, the scheduled captures (NeuralCodeCallback's schedule and rows), the
    train rows, the non-finite-loss stop, each member's EarlyStopping on train/loss (Lightning's
    rule), and its end at max_epochs. A last epoch cut short by trainer.max_steps gets its train
    rows and capture at the end, without validation, as Lightning does it for a solo run."""

    def __init__(self, group: _Group, lengths: list[int]):
        cfg, count = group.cfg, len(group.cfgs)
        self.group, self.lengths = group, lengths
        self.max_epochs = int(cfg.trainer.max_epochs)
        self.epochs = capture_epochs(cfg.codes.epochs, self.max_epochs)
        self.validates = bool(validation_readers(cfg))  # as a solo run: only where something reads it
        self.stoppers = [[_EarlyStopping(_plain(s)) for s in (c.get("callbacks") or {}).values()
                          if s and "_target_" in s] for c in group.cfgs]
        self.step, self.trained = [0] * count, [0] * count
        self.failed: list[str | None] = [None] * count
        self.active: list[bool] | None = None  # restored from a group checkpoint
        self.loader: ZipLoader | None = None
        self.module: BatchedClassifier | None = None

    def state_dict(self) -> dict[str, Any]:
        """Where each member stands, for the group checkpoint (plain values: loads weights_only)."""
        active = list(self.module.active) if self.module is not None else self.active
        return {"step": self.step, "trained": self.trained, "failed": self.failed, "active": active,
                "stoppers": [[(float(s.best), s.wait) for s in stoppers] for stoppers in self.stoppers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.trained, self.failed = list(state["step"]), list(state["trained"]), list(state["failed"])
        self.active = list(state["active"])
        for stoppers, saved in zip(self.stoppers, state["stoppers"]):
            for stopper, (best, wait) in zip(stoppers, saved):
                stopper.best, stopper.wait = torch.tensor(best), wait

    def on_train_start(self, trainer: pl.Trainer, pl_module: BatchedClassifier) -> None:
        if pl_module.device != self.group.device:
            raise RuntimeError(f"batched group: Lightning put the model on {pl_module.device}, "
                               f"its data is on {self.group.device}")
        self.module = pl_module
        if self.active is not None:  # resumed
            pl_module.active = list(self.active)
        if 0 in self.epochs and self.active is None:  # a resumed group's networks are trained: no epoch 0
            self.group.capture([m for m in range(pl_module.members) if 0 not in self.group.records[m].done], 0,
                               self.step)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: BatchedClassifier) -> None:
        if self.loader is not None:  # each member's order is a function of (its seed, the epoch), as solo
            self.loader.set_epoch(trainer.current_epoch)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: BatchedClassifier, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        ended = []
        for m in range(pl_module.members):
            if pl_module.active[m]:
                self.step[m] += 1
                if self.step[m] % self.lengths[m] == 0:
                    ended.append(m)
        if ended:
            self._epoch_end(pl_module, ended, complete=True)
        if not any(pl_module.active):
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: BatchedClassifier) -> None:
        cut = [m for m in range(pl_module.members) if pl_module.active[m] and self.step[m] % self.lengths[m]]
        if cut:  # trainer.max_steps ended these members' last epoch part way
            self._epoch_end(pl_module, cut, complete=False)

    def _epoch_end(self, pl_module: BatchedClassifier, members: list[int], complete: bool) -> None:
        group = self.group
        stats = dict(zip(members, pl_module.end_epoch(members)))
        for m in members:
            self.trained[m] = -(-self.step[m] // self.lengths[m])
        if complete and self.validates:  # Lightning logs at step - 1
            for m, (loss, acc) in zip(members, group.validate(members)):
                group.log(m, {"val/acc": acc, "val/loss": loss, "epoch": float(self.trained[m])}, self.step[m] - 1)
        for epoch in sorted({self.trained[m] for m in members} & set(self.epochs)):
            group.capture([m for m in members if self.trained[m] == epoch], epoch, self.step)
        for m in members:
            loss, acc, terms = stats[m]
            group.log(m, {"epoch": float(self.trained[m]), "train/loss": loss, "train/acc": acc, **terms},
                      self.step[m] - 1)
            if not math.isfinite(loss):
                self.failed[m] = f"training loss became {loss} during epoch {self.trained[m]} (global step {self.step[m]})"
                pl_module.active[m] = False
            if any([s.should_stop(loss) for s in self.stoppers[m]]) or self.trained[m] >= self.max_epochs:
                pl_module.active[m] = False  # every stopper sees the epoch
            flush_csv(group.loggers[m])  # on disk before the epoch's checkpoint, as a solo run's rows

    def on_fit_end(self, trainer: pl.Trainer, pl_module: BatchedClassifier) -> None:
        group = self.group
        if self.max_epochs == 0 and 0 in self.epochs:  # Lightning skips the training loop's hooks then
            group.capture(range(pl_module.members), 0, self.step)
        if not group.cfg.codes.get("capture_last", True):
            return
        for m in range(pl_module.members):
            if self.trained[m] not in group.records[m].done and 0 < self.trained[m] < self.max_epochs:
                group.capture([m], self.trained[m], self.step, reason="stopped")


class _Group:
    def __init__(self, cfgs: list[DictConfig], device: str | torch.device | None, placement: Placement | None,
                 tags: list[list[str]] | None = None, checkpoint: Path | None = None,
                 choices: list[dict[str, str]] | None = None):
        self.cfgs, self.cfg = cfgs, cfgs[0]
        self.device = _device(self.cfg, device)
        # threads set once, as a solo run's, and recorded in every member's meta.json
        self.placement = set_threads(placement or Placement(self.device.type, [self.device.index or 0]
                                                            if self.device.type == "cuda" else 1, None))
        self.outs = [Path(cfg.output_dir) for cfg in cfgs]
        self.checkpoint = checkpoint
        self.resumed_at = position(checkpoint) if checkpoint else None  # (epochs trained, global step)
        cache: dict[str, Any] = {}
        self.dms, nets, self.units, infos = [], [], [], []
        for cfg in cfgs:  # run()'s order: seed, data, network (the data draws no torch randomness)
            key = json.dumps(_plain(cfg.data), sort_keys=True, default=str)
            if key not in cache:
                cache[key] = _datamodule(cfg.data, key)
            built = build(cfg, cache[key], verbose=False)
            nets.append(built.net)
            self.units.append(built.units)
            self.dms.append(built.datamodule)
            infos.append(built.data)
        # the callback names layers from the LightningModule, whose network is its `net`
        names = [f"net.{name}" for name, _ in self.units[0]]
        self.layers = parse_layers(self.cfg.codes.layers, len(names), names=names)
        self.layer_names = names
        self.infos = infos
        mlp = _plain(self.cfg.model).get("_target_") == MLP_TARGET
        self.model = (BatchedMLP(nets) if mlp else StackedNet(nets, infos[0].input_shape)).to(self.device)
        for dm in cache.values():
            dm.to(self.device)
        metric_kwargs = _plain(self.cfg.metrics)
        self.device_request = metric_kwargs.pop("device", "auto")
        self.which = metric_kwargs.get("which", WHICH)
        # as NeuralCodeCallback: the network probes' sections are not metric options
        self.options = {k: v for k, v in metric_kwargs.items() if k != "which" and k not in probes()}
        self.probes = enabled_probes({k: v for k, v in metric_kwargs.items() if k in probes()},
                                     tuple(infos[0].input_shape))
        # codes.source per member (auto: network when its codes would exceed metrics.max_ram)
        budget = resolve_max_ram(self.options.get("max_ram"))
        self.sources = [resolve_source(cfg.codes.get("source", "auto"), info.n_train + info.n_test,
                                       sum(units[i][1] for i in self.layers), budget,
                                       save=cfg.codes.get("save", False), memmap=cfg.codes.get("memmap", False),
                                       which=self.which, drop_constant=self.options.get("drop_constant", True),
                                       device_memory=device_memory(metrics_device(self.device_request, self.device)),
                                       n_train=info.n_train)
                        for cfg, info, units in zip(cfgs, infos, self.units)]
        # the probes and the network source read a plain network: each member's solo module, its
        # weights put back at a capture
        self.solos = [net.to(self.device) for net in nets] if self.probes or "network" in self.sources else None
        batched = {"members": len(cfgs), "device": str(self.device), "group": [str(o) for o in self.outs]}
        with warnings.catch_warnings():  # the run dir already holds config.yaml, as in run()
            warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
            self.records = [RunRecord(cfg, clean_labels=info.train_clean_labels) for cfg, info in zip(cfgs, infos)]
            if self.resumed_at:
                log.info("batched group resuming from epoch %d (%s)", self.resumed_at[0], checkpoint)
            for m, (record, units) in enumerate(zip(self.records, self.units)):
                # as a solo run: config.yaml, meta.json (its job's config choices), and the captures
                # up to the checkpoint
                own = {"config_choices": choices[m]} if choices else {}
                record.start(units, self.placement, self.resumed_at, batched=batched, **own)
            # after meta.json (its first start names each member's W&B run)
            self.loggers = [build_loggers(cfg.get("logger"), extra_tags=t, own_run=True)
                            for cfg, t in zip(cfgs, tags or [[]] * len(cfgs))]
            for record, cfg, loggers, t in zip(self.records, cfgs, self.loggers, tags or [[]] * len(cfgs)):
                record.attach(loggers)  # resumed: the CSV rows up to the checkpoint, before the CSV writer exists
                log_config(loggers, cfg, t)  # creates the CSV writer (it warns on first use)

    def train(self) -> list[dict[str, Any] | BaseException]:
        cfg = self.cfg
        module = BatchedClassifier(self.model, instantiate(cfg.optimizer),
                                   instantiate(cfg.scheduler) if cfg.get("scheduler") else None)
        loaders = [dm.train_dataloader() for dm in self.dms]
        lengths = [len(loader) for loader in loaders]
        recorder = _GroupRecorder(self, lengths)
        progress = progress_mode(cfg)
        accelerator, devices = _trainer_device(self.device)
        max_epochs, max_steps = int(cfg.trainer.max_epochs), int(cfg.trainer.get("max_steps") or -1)
        if len(set(lengths)) == 1:  # the members' epochs are Lightning's (and the scheduler's)
            zipped = ZipLoader(loaders)
        elif max_steps <= 0:
            raise ValueError(f"run_group: members' epochs have {lengths} steps; only step-limited runs "
                             "(trainer.max_steps) may differ in data.train_size")
        else:  # training-set sizes differ: one Lightning epoch of all the steps
            zipped = ZipLoader(loaders, steps=max(min(max_steps, max_epochs * n) for n in lengths))
            max_epochs, max_steps = min(max_epochs, 1), -1
        if len(set(lengths)) == 1:
            recorder.loader = zipped
        keep = [GroupLastEpoch(self.outs)] if keeps_checkpoint(cfg) else []
        trainer = pl.Trainer(max_epochs=max_epochs, max_steps=max_steps, accelerator=accelerator, devices=devices,
                             callbacks=[recorder, *progress_bar(progress), *keep], logger=False,
                             enable_checkpointing=bool(keep), enable_model_summary=False,
                             enable_progress_bar=progress != "none", num_sanity_val_steps=0, limit_val_batches=0,
                             deterministic=cfg.trainer.get("deterministic"),
                             gradient_clip_val=cfg.trainer.get("gradient_clip_val"),
                             gradient_clip_algorithm=cfg.trainer.get("gradient_clip_algorithm"),
                             benchmark=cfg.trainer.get("benchmark"), default_root_dir=str(self.outs[0]))
        started, finished = time.perf_counter(), False
        try:
            with warnings.catch_warnings():
                ignore_third_party_warnings()  # pytorch_lightning's LeafSpec FutureWarning, every batch
                trainer.fit(module, train_dataloaders=zipped, ckpt_path=self.checkpoint, weights_only=True)
            finished = True
        finally:  # every member's loggers are closed, its W&B run finished, whatever happened
            for m, loggers in enumerate(self.loggers):
                for logger in loggers:
                    logger.finalize("success" if finished and recorder.failed[m] is None else "failed")
                if offline_dir := finish_wandb(loggers, own_runs=True):
                    log.warning("W&B offline run saved in %s; upload it with `wandb sync %s`", offline_dir, offline_dir)
        seconds = round(time.perf_counter() - started, 2)
        results: list[dict[str, Any] | BaseException] = []
        for m, out in enumerate(self.outs):
            failed = recorder.failed[m]
            if failed is not None:
                results.append(NonFiniteLossError(
                    f"{failed}; training stopped. The {len(self.records[m].rows) // 2} capture(s) made before are kept "
                    f"in {out / 'encoding.jsonl'}. Try a lower optimizer.lr or set trainer.gradient_clip_val."))
                continue
            results.append(self.records[m].finish(epochs_trained=recorder.trained[m], train_seconds=seconds,
                                                  units_per_layer={name: n for name, n in self.units[m]}))
        forget(self.outs)
        return results

    def _capture_network(self, m: int, epoch: int, step: int, reason: str, device: Any, started: float) -> None:
        """Member m's capture with codes.source=network (`codes.gram.score_network`) on its solo
        network, its rows written as the memory path's."""
        solo = self.model.member_state(m, self.solos[m])
        info = self.infos[m]
        units = [(name, n) for name, (_, n) in zip(self.layer_names, self.units[m])]
        chosen = parse_selections(selection_specs(self.cfgs[m].codes), [self.layer_names[i] for i in self.layers])
        train, test, raw = score_network(solo, info.eval_loaders(), self.layers, units, chosen,
                                         {"train": info.n_train, "test": info.n_test}, self.options, self.which, device)
        scored = {name: complete(metrics, self.which, train, test) for name, metrics in raw.items()}
        if self.probes:
            scored[primary(list(scored))].update(run_probes(solo, info, self.layers, self.probes, self.outs[m], epoch))
        self.records[m].add_selections(epoch, step, reason, train, test, scored, time.perf_counter() - started)

    def log(self, m: int, metrics: dict[str, float], step: int) -> None:
        self.records[m].log(metrics, step)

    @torch.no_grad()
    def validate(self, members: list[int]) -> list[tuple[float, float]]:
        """Per member, val/loss (the batch-size-weighted mean of batch means, as Lightning's epoch
        mean) and val/acc, in eval mode; empty when there is no validation set."""
        if not members or any(dm.y_val is None or len(dm.y_val) == 0 for dm in self.dms):
            return []
        self.model.eval()
        size = int(self.cfg.data.eval_batch_size)
        n = torch.tensor([len(dm.y_val) for dm in self.dms], device=self.device)
        loss = torch.zeros(self.model.members, device=self.device)
        correct = torch.zeros(self.model.members, dtype=torch.int64, device=self.device)
        for start in range(0, int(n.max()), size):
            x, _ = stack_padded([dm.x_val[start:start + size] for dm in self.dms])
            y, rows = stack_padded([dm.y_val[start:start + size] for dm in self.dms])
            logits = self.model(x)
            per = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
            r = torch.tensor(rows, device=self.device)
            valid = torch.arange(y.shape[1], device=self.device) < r[:, None]  # padded rows of short members
            # the batch mean x its size, as Lightning weights a solo run's batches
            loss += torch.where(valid, per, 0).sum(1) / r.clamp_min(1) * r
            correct += ((logits.argmax(-1) == y) & valid).sum(1)
        self.model.train()
        return [(float(loss[m] / n[m]), float(correct[m] / n[m])) for m in members]

    def capture(self, members, epoch: int, step: list[int], reason: str = "scheduled") -> None:
        """NeuralCodeCallback._capture for each member in `members`, one after another: its codes
        from its own slice of the batched network (`member_split`), scored, its probes run on its
        solo network, its rows written; then the next member's. A capture holds one member's codes."""
        size = int(self.cfg.data.eval_batch_size)
        device = metrics_device(self.device_request, self.device)
        for m in members:
            started = time.perf_counter()
            if self.sources[m] == "network":  # no codes held: the solo network's Gram capture
                self._capture_network(m, epoch, step[m], reason, device, started)
                continue
            splits = member_split(self.model, m, self.dms[m], self.layers, size, self.layer_names,
                                  [n for _, n in self.units[m]])
            train, test = splits.pop("train"), splits.pop("test")
            chosen = parse_selections(selection_specs(self.cfgs[m].codes), train.layer_names)  # codes.selections
            scored = score_selections(train, test, chosen, self.which, self.options, device)
            if self.probes:  # network probes measure the captured layers: on the primary selection's rows
                solo = self.model.member_state(m, self.solos[m])
                scored[primary(list(scored))].update(run_probes(solo, self.infos[m], self.layers, self.probes,
                                                                self.outs[m], epoch))
            self.records[m].add_selections(epoch, step[m], reason, train, test, scored, time.perf_counter() - started)
            del train, test
