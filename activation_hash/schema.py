"""Typed checks of every config group, run on the composed config before anything is built.

`validate(cfg)` walks a table of rules (key -> check) and raises `ConfigError("KEY=VALUE: what
is allowed")` at the first value of the wrong type, out of range or unknown. Keys absent from the
config (a group option that does not have them, e.g. `model.width` for a CNN) are not checked.
Hydra structured configs were not used: the groups are plain YAML shared with W&B sweeps and the
wheel, and one table of rules also checks values that depend on each other (the metric options,
the regularizer/recipe conflict).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


class ConfigError(ValueError):
    """A user error in the config: the message is `KEY=VALUE: what is allowed`."""

    def __init__(self, key: str, value: Any, allowed: str, sep: str = ": ") -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={_show(value)}{sep}{allowed}")


def _show(value: Any) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if not isinstance(value, (list, dict)) else repr(value)


Check = Callable[[Any], str | None]  # returns what is allowed when the value is bad, else None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(lo: int | None = None, hi: int | None = None, nullable: bool = False) -> Check:
    def check(v: Any) -> str | None:
        if nullable and v is None:
            return None
        if _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi):
            return None
        bounds = (f" >= {lo}" if hi is None else f" in {lo}..{hi}") if lo is not None else ""
        return f"must be an int{bounds}" + (" or null" if nullable else "")
    return check


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
           nullable: bool = False, null_means: str = "") -> Check:
    def check(v: Any) -> str | None:
        if nullable and v is None:
            return None
        ok = _is_number(v) and (lo is None or (v > lo if lo_open else v >= lo)) \
            and (hi is None or (v < hi if hi_open else v <= hi))
        if ok:
            return None
        if lo is not None and hi is not None:
            rng = f" in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        elif lo is not None:
            rng = f" {'>' if lo_open else '>='} {lo}"
        else:
            rng = ""
        return f"must be a number{rng}" + (f" or null{null_means}" if nullable else "")
    return check


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def choice(*allowed: Any) -> Check:
    def check(v: Any) -> str | None:
        return None if v in allowed and not isinstance(v, (DictConfig, ListConfig)) else \
            "allowed: " + ", ".join(_show(a) for a in allowed)
    return check


def int_list(lo: int, nullable: bool = True) -> Check:
    def check(v: Any) -> str | None:
        if nullable and v is None:
            return None
        if isinstance(v, (list, ListConfig)) and len(v) > 0 and all(_is_int(x) and x >= lo for x in v):
            return None
        return f"must be a non-empty list of ints >= {lo}" + (" or null" if nullable else "")
    return check


def betas(v: Any) -> str | None:
    if isinstance(v, (list, ListConfig)) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v):
        return None
    return "must be a list of two numbers in [0, 1), e.g. [0.9,0.999]"


def _capture_schedule(cfg: DictConfig) -> Check:
    from activation_hash.codes.schedule import ALLOWED, capture_epochs  # noqa: F401

    def check(v: Any) -> str | None:
        max_epochs = cfg.trainer.get("max_epochs")
        if not _is_int(max_epochs) or max_epochs < 0:
            return None  # reported under trainer.max_epochs
        try:
            capture_epochs(OmegaConf.to_object(v) if isinstance(v, ListConfig) else v, max_epochs)
        except ValueError as err:  # its message already names the bad epochs and what is allowed
            import re
            message = re.sub(r"^\S+=.*?\s(?=(has|is|must|are)\s)", "", str(err), count=1)
            return message if message != str(err) else f"use {ALLOWED}"
        return None
    return check


def _layer_selection(v: Any) -> str | None:
    from activation_hash.codes.capture import parse_layers
    if isinstance(v, str) and v.startswith("name:"):  # a glob on layer names, matched once the network is built
        return None if len(v) > len("name:") else "name:GLOB needs a pattern, e.g. 'name:layer1.*'"
    try:  # the number of layers is known only once the network is built; check the syntax here
        parse_layers(OmegaConf.to_object(v) if isinstance(v, ListConfig) else v, 1000)
    except ValueError:
        return "allowed: all, an int k >= 1, a list of ints >= 1, a range 'i..j', '..j', 'i..', or 'name:GLOB'"
    return None


def _selections(v: Any) -> str | None:
    """codes.selections: null, or a non-empty mapping of names to layer selections (codes.layers' syntax)."""
    if v is None:
        return None
    if not isinstance(v, (DictConfig, Mapping)) or not len(v):
        return "must be null or a non-empty mapping of names to layer selections, e.g. {all: all, '1': 1, '..2': '..2'}"
    for name, spec in v.items():
        if not str(name).strip():
            return "every selection needs a non-empty name"
        if (why := _layer_selection(spec)) is not None:
            return f"selection {name!r}={spec!r}: {why}"
    return None


def _metric_families() -> tuple[str, ...]:
    from activation_hash.metrics.encoding import WHICH
    from activation_hash.metrics.registry import families
    return tuple(dict.fromkeys([*WHICH, *families()]))


def _which(v: Any) -> str | None:
    allowed = _metric_families()
    if isinstance(v, (list, ListConfig)) and len(v) and all(isinstance(w, str) and w in allowed for w in v):
        return None
    return f"must be a non-empty list of metric families from: {', '.join(allowed)}"


def _logger(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, (DictConfig, Mapping)) and all(
            isinstance(spec, (DictConfig, Mapping)) and "_target_" in spec for spec in v.values()):
        return None
    return "choose a logger group option: logger=csv | wandb | tensorboard | mlflow | many | none"


def str_list(*allowed: Any, nonempty: bool = True) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, (list, ListConfig)) and (len(v) or not nonempty) and all(x in allowed for x in v):
            return None
        return f"must be a {'non-empty ' if nonempty else ''}list from: {', '.join(map(str, allowed))}"
    return check


def int_list_or(lo: int, *words: str, nonempty: bool = True) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, (list, ListConfig)) and (len(v) or not nonempty) and \
                all((_is_int(x) and x >= lo) or x in words for x in v):
            return None
        extra = "".join(f" or {w}" for w in words)
        return f"must be a {'non-empty ' if nonempty else ''}list of ints >= {lo}{extra}"
    return check


def text(nullable: bool = False) -> Check:
    def check(v: Any) -> str | None:
        return None if isinstance(v, str) or (nullable and v is None) else \
            "must be a string" + (" or null" if nullable else "")
    return check


def str_or_str_list(v: Any) -> str | None:
    if isinstance(v, str) or (isinstance(v, (list, ListConfig)) and all(isinstance(x, str) for x in v)):
        return None
    return "must be a list of strings, e.g. [a,b]"


def tags(v: Any) -> str | None:
    if isinstance(v, (list, ListConfig)) and all(isinstance(x, (str, int, float)) for x in v):
        return None
    return "must be a list of strings, e.g. 'tags=[a,b]'"


def mapping_or_null(v: Any) -> str | None:
    return None if v is None or isinstance(v, (DictConfig, Mapping)) else "must be a mapping or null"


def batches_limit(v: Any) -> str | None:
    """Lightning's limit_*_batches: an int >= 1 (batches) or a float in (0, 1] (a fraction); 0
    would run no batch at all (nothing trained, or no validation), which a run never wants."""
    if v is None or (_is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v <= 1):
        return None
    return "must be an int >= 1 (batches) or a fraction in (0, 1]; 0 runs no batch at all"


def devices(v: Any) -> str | None:
    if v == "auto" or (_is_int(v) and (v >= 1 or v == -1)) or \
            (isinstance(v, (list, ListConfig)) and len(v) and all(_is_int(x) and x >= 0 for x in v)):
        return None
    return "allowed: an int >= 1, -1 (all), auto, or a list of device indices"


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")
PRECISIONS = ("64", "64-true", "32", "32-true", "16", "16-mixed", "bf16", "bf16-mixed", "16-true", "bf16-true",
              "transformer-engine", "transformer-engine-float16")


def precision(v: Any) -> str | None:
    return None if str(v) in PRECISIONS and not isinstance(v, bool) else "allowed: " + ", ".join(PRECISIONS)


def metrics_device(v: Any) -> str | None:
    if not isinstance(v, str):
        return "allowed: auto, cpu, cuda, cuda:N"
    if v == "auto":
        return None
    try:
        from activation_hash.devices import check_metrics_device
        check_metrics_device(v)
    except ValueError as err:
        return str(err).split(": ", 1)[-1]
    return None


def optimized_metric(v: Any) -> str | None:
    """A metric name a run returns: SPLIT/NAME of the families' names (or null: nothing to return)."""
    if v is None:
        return None
    if isinstance(v, str) and "/" in v:
        split, name = v.split("/", 1)
        known = _known_metric_names()
        if split in ("train", "test") and (not known or name in known or any(name.startswith(k) for k in known)):
            return None
    known = _known_metric_names()
    near = _closest(str(v).split("/", 1)[-1], sorted(known))
    return "must be a metric a run reports, SPLIT/NAME with SPLIT train or test (e.g. test/knn_acc)" + \
        (f"; did you mean test/{near}?" if near else "")


def _known_metric_names() -> set[str]:
    """Metric names without the split: the families' declared names, the network's own, and those
    of the probes (what `encoding.jsonl` rows hold)."""
    names = {"net_acc", "net_loss", "redundancy", "kmeans_acc", "kmeans_hungarian_acc", "knn_acc", "knn_acc_index",
             "logreg_acc", "code_bits", "n_bits", "diameter_mean", "random_diameter_mean", "deepfool_ratio",
             "binarity_separation", "binarity_sigma", "same_encoding_frac", "reliability_auroc", "map", "nc1",
             "equinorm", "equiangularity", "maxangle", "distinct_codes", "distinct_frac"}
    try:
        from activation_hash.metrics.registry import families
        for fam in families().values():
            for attr in ("names", "metrics", "outputs"):
                declared = getattr(fam, attr, None)
                if isinstance(declared, (list, tuple, set, frozenset)):
                    names.update(str(n).split("/", 1)[-1] for n in declared)
            names.add(fam.name if hasattr(fam, "name") else "")
    except Exception:  # noqa: BLE001 - the built-in list still applies
        pass
    return {n for n in names if n}


def _closest(word: str, options: list[str]) -> str | None:
    import difflib
    near = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return near[0] if near else None


RANDOM_INPUTS = ("none", "train", "eval", "both")

# key -> check; `None` values of optional keys are handled by each check's `nullable`.
RULES: dict[str, Check] = {
    "seed": integer(0, 2**32 - 1),
    "skip_finished": boolean,
    "resume": choice("auto", "never"),
    "progress_bar": choice("auto", "rich", "tqdm", "none"),
    "logger": _logger,
    "logger.wandb.offline": choice("auto", True, False),
    "model.width": integer(1),
    "model.depth": integer(1),
    "model.widths": int_list(1),
    "model.split_width": boolean,
    "model.batch_norm": boolean,
    "model.init": choice("torch", "glorot_uniform"),
    "model.l2": number(0),
    "model.freeze_gates": boolean,
    "model.base_width": integer(1),
    "model.modularize": boolean,
    "optimizer.lr": number(0, lo_open=True),
    "optimizer.weight_decay": number(0),
    "optimizer.momentum": number(0, 1, hi_open=True),
    "optimizer.betas": betas,
    "optimizer.nesterov": boolean,
    "scheduler.step_size": integer(1),
    "scheduler.gamma": number(0, lo_open=True),
    "data.train_size": integer(1, nullable=True),
    "data.test_size": integer(1, nullable=True),
    "data.val_fraction": number(0, 1, hi_open=True),
    "data.label_noise": number(0, 1),
    "data.random_inputs": choice(*RANDOM_INPUTS),
    "data.random_inputs_dist": choice("uniform01", "uniform_pm1", "unit_ball", "gaussian"),
    "data.batch_size": integer(1),
    "data.eval_batch_size": integer(1),
    "data.download": boolean,
    "data.shuffle": boolean,
    "data.drop_last": boolean,
    "trainer.max_epochs": integer(0),
    "trainer.max_steps": integer(-1),
    "trainer.gradient_clip_val": number(0, lo_open=True, nullable=True, null_means=" (no clipping)"),
    "trainer.gradient_clip_algorithm": choice("norm", "value"),
    "trainer.deterministic": choice(True, False, "warn"),
    "trainer.check_val_every_n_epoch": integer(1, nullable=True),
    "trainer.accumulate_grad_batches": integer(1),
    "codes.save": boolean,
    "codes.memmap": boolean,
    "codes.source": choice("auto", "memory", "network"),
    "codes.capture_last": boolean,
    "codes.verbose": boolean,
    "codes.layers": _layer_selection,
    "codes.selections": _selections,
    "metrics.which": _which,
    "metrics.drop_constant": boolean,
    "metrics.knn_k": integer(1),
    "metrics.kmeans_seed": integer(0),
    "metrics.logreg_seed": integer(0),
    "metrics.logreg_mode": choice("ovo", "ovr", "multinomial"),
    "metrics.backend": choice("auto", "sklearn", "torch"),
    "metrics.max_ram": integer(2**20, nullable=True),
    "metrics.diameter.enabled": boolean,
    "metrics.diameter.n_samples": integer(1),
    "metrics.diameter.method": choice("exact", "grid", "both"),
    "metrics.diameter.t_max": number(0, lo_open=True, nullable=True, null_means=" (unbounded)"),
    "metrics.diameter.grid_step": number(0, lo_open=True),
    "metrics.diameter.grid_t_max": number(0, lo_open=True),
    "metrics.diameter.random": boolean,
    "metrics.diameter.seed": integer(0),
    "metrics.diameter.sample": choice("first", "random"),
    "metrics.halfspaces.enabled": choice("auto", True, False),
    "metrics.halfspaces.save": boolean,
    "metrics.halfspaces.images": choice("auto", True, False),
    "metrics.halfspaces.max_gates": integer(1),
    "metrics.halfspaces.columns": integer(1),
    "metrics.halfspaces.dpi": integer(1),
    # the rest of the shipped keys (tests/test_schema_coverage.py checks that every one has a rule)
    "study": text(nullable=True),
    "tags": tags,
    "output_root": text(),
    "output_dir": text(),
    "optimized_metric": optimized_metric,
    "run_dir_lock": choice("skip", "wait"),
    "model.bias": boolean,
    "data.name": text(),
    "data.root": text(nullable=True),
    "data.seed": integer(0, 2**32 - 1),
    "data.mirrors": lambda v: None if v is None else str_or_str_list(v),
    "data.checksums": mapping_or_null,
    "data.options": mapping_or_null,
    "data.augment": text(nullable=True),
    "data.num_workers": integer(0),
    "data.pin_memory": boolean,
    "trainer._target_": text(),
    "trainer.fast_dev_run": lambda v: None if isinstance(v, bool) or (_is_int(v) and v >= 1)
    else "must be true, false or an int >= 1 (batches)",
    "trainer.accelerator": choice(*ACCELERATORS),
    "trainer.devices": devices,
    "trainer.precision": precision,
    "trainer.benchmark": choice(True, False, None),
    "trainer.enable_checkpointing": boolean,
    "trainer.enable_model_summary": boolean,
    "trainer.enable_progress_bar": boolean,
    "trainer.num_sanity_val_steps": integer(-1),
    "trainer.log_every_n_steps": integer(1),
    "trainer.strategy": text(),
    "trainer.num_nodes": integer(1),
    "trainer.limit_train_batches": batches_limit,
    "trainer.limit_val_batches": batches_limit,
    "trainer.limit_test_batches": batches_limit,
    "trainer.limit_predict_batches": batches_limit,
    "trainer.val_check_interval": number(0, lo_open=True, nullable=True),
    "trainer.min_epochs": integer(0, nullable=True),
    "trainer.min_steps": integer(-1, nullable=True),
    "trainer.max_time": text(nullable=True),
    "metrics.plugins": lambda v: None if isinstance(v, (list, ListConfig)) and all(isinstance(x, str) for x in v)
    else "must be a list of importable module names",
    "metrics.device": metrics_device,
    "metrics.kmeans_n_init": integer(1),
    "metrics.max_dense_bytes": integer(1),
    "metrics.retrieval.protocol": choice("test_vs_train", "split_1k"),
    "metrics.retrieval.bits": int_list_or(1, "full"),
    "metrics.retrieval.units": str_list("all", "last_layer", "random", "balanced"),
    "metrics.retrieval.baselines": str_list("lsh", "itq", "pcah", nonempty=False),
    "metrics.retrieval.baseline_features": str_list("pixels", "penultimate", nonempty=False),
    "metrics.retrieval.top_k": int_list_or(1, nonempty=False),
    "metrics.retrieval.queries_per_class": integer(1),
    "metrics.retrieval.seed": integer(0),
    "metrics.retrieval.pr_curves": boolean,
    "metrics.deepfool.enabled": boolean,
    "metrics.deepfool.n_samples": integer(1),
    "metrics.deepfool.pool": integer(1),
    "metrics.deepfool.seed": integer(0),
    "metrics.deepfool.overshoot": number(0),
    "metrics.deepfool.max_iter": integer(1),
    "metrics.regions.enabled": choice("auto", True, False),
    "logger.csv.save_dir": text(),
    "logger.csv.name": text(nullable=True),
    "logger.csv.version": lambda v: None if v is None or isinstance(v, (str, int)) else "must be a string, int or null",
    "logger.wandb.project": text(),
    "logger.wandb.entity": text(nullable=True),
    "logger.wandb.group": text(nullable=True),
    "logger.wandb.tags": tags,
    "logger.wandb.name": text(nullable=True),
    "logger.wandb.save_dir": text(),
    "logger.wandb.log_model": choice(True, False, "all"),
    "logger.wandb.job_type": text(nullable=True),
    "callbacks.early_stopping.monitor": text(),
    "callbacks.early_stopping.mode": choice("min", "max"),
    "callbacks.early_stopping.patience": integer(0),
    "callbacks.early_stopping.min_delta": number(0),
    "callbacks.early_stopping.check_on_train_epoch_end": choice(True, False, None),
    "callbacks.early_stopping.check_finite": boolean,
    "profile.name": text(),
    "scheduler": lambda v: None if v is None or isinstance(v, (DictConfig, Mapping)) else
    "choose a scheduler group option: scheduler=none | step | step_after",
    "regularizer": lambda v: None if v is None or isinstance(v, (DictConfig, Mapping)) else
    "choose a regularizer group option: regularizer=none | batch_norm | gradient_clip | weight_decay",
}

# Keys of a group option, checked where the node's `_target_` is that class (relative to the node).
_MODELS = "activation_hash.models."
TARGET_RULES: dict[str, dict[str, Check]] = {
    _MODELS + "mlp.MLP": {"depth": integer(1), "width": integer(1), "split_width": boolean, "widths": int_list(1),
                          "batch_norm": boolean, "bias": boolean, "activation": choice("relu", "silu"),
                          "init": choice("torch", "glorot_uniform"), "l2": number(0)},
    _MODELS + "dlgn.DLGN": {
        "variant": choice("dlgn", "dlgn_sf", "dgn"), "beta": number(0, lo_open=True), "hard_gates": boolean,
        "value_input": choice("ones", "x"), "gating_bias": boolean, "value_bias": boolean},
    _MODELS + "binary_encoding.BinaryEncodingNet": {
        "variant": choice("bin_enc", "lin_pen", "nonlin_pen", "no_pen"), "latent_dim": integer(1),
        "gamma0": number(0), "gamma_growth": number(0, lo_open=True), "gamma_max": number(0, lo_open=True),
        "backbone.activation": choice("relu", "silu")},
    _MODELS + "resnet.ResNet": {"num_blocks": int_list(1, nullable=False), "base_width": integer(1),
                                "shortcut": choice("A", "B"), "batch_norm": boolean},
    _MODELS + "vgg.VGG": {"depth": choice(11, 13, 16, 19), "cfg": lambda v: None if v is None or (
        isinstance(v, (list, ListConfig)) and len(v) and all((_is_int(x) and x >= 1) or x == "M" for x in v))
        else "must be null or a list of ints >= 1 and M (max-pool)", "width_multiplier": number(0, lo_open=True),
        "batch_norm": boolean, "classifier_widths": int_list_or(1, nonempty=False)},
    _MODELS + "densenet.DenseNet": {"depth": integer(4), "growth_rate": integer(1),
                                    "block_config": int_list(1), "reduction": number(0, 1, lo_open=True),
                                    "bottleneck": boolean, "batch_norm": boolean},
    _MODELS + "resnext.ResNeXt": {"cardinality": integer(1), "bottleneck_width": integer(1),
                                  "num_blocks": int_list(1, nullable=False), "expansion": number(0, lo_open=True),
                                  "stem_width": integer(1), "stem_kernel": choice(1, 3), "batch_norm": boolean},
    _MODELS + "zoo.custom": {"num_classes_arg": text(nullable=True), "input_shape_arg": text(nullable=True),
                             "modularize": boolean},
    "activation_hash.data.planar.planar_datamodule": {
        "name": choice("moons", "circles", "spirals"), "n_samples": integer(1), "noise": number(0),
        "n_test": integer(1), "data_seed": integer(0), "num_classes": integer(2)},
    "torch.optim.lr_scheduler.StepLR": {"step_size": integer(1), "gamma": number(0, lo_open=True)},
    _MODELS + "schedulers.step_after": {"hold": integer(0), "step_size": integer(1),
                                         "gamma": number(0, lo_open=True)},
}

def n_jobs(v: Any) -> str | None:
    if (_is_int(v) and v >= 1) or str(v).lower() == "auto":
        return None
    return "must be an int >= 1, or auto (one per visible GPU)"


# hydra.launcher.* of the project's launchers, by the launcher's _target_
LAUNCHER_RULES: dict[str, dict[str, Check]] = {
    "hydra_plugins.activation_hash_batched_launcher.batched_launcher.BatchedLauncher": {
        "max_members": integer(1, nullable=True), "pad_widths": lambda v: None if str(v).lower() in ("auto", "true", "false") else "allowed: auto, true, false",
        "n_jobs": n_jobs, "submitit": mapping_or_null, "submitit.cluster": choice("local", "slurm", "debug")},
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher": {
        "n_jobs": lambda v: None if _is_int(v) and (v >= 1 or v == -1) else "must be an int >= 1, or -1 (all cores)"},
}


def validate_launcher(hydra_cfg: DictConfig) -> None:
    """hydra.launcher's keys (the launcher is built by Hydra only once the sweep starts)."""
    launcher = OmegaConf.select(hydra_cfg, "launcher", default=None)
    if not isinstance(launcher, DictConfig):
        return
    for key, check in LAUNCHER_RULES.get(str(launcher.get("_target_")), {}).items():
        value = OmegaConf.select(launcher, key, default=_ABSENT, throw_on_missing=False)
        if value is not _ABSENT and (allowed := check(value)) is not None:
            raise ConfigError(f"hydra.launcher.{key}", value, allowed)


# data.options per data set (activation_hash.data.sources.OPTION_DEFAULTS names them)
DATA_OPTION_RULES: dict[str, dict[str, Check]] = {
    "digits": {"split": choice("shuffled", "sequential")},
    "synthetic": {"n_train": integer(1), "n_test": integer(1), "shape": int_list(1, nullable=False),
                  "num_classes": integer(2), "noise": number(0), "data_seed": integer(0)},
}
# (training file, test set) sizes of the data sets read from files or embedded
DATA_SIZES = {"digits": (1437, 360), "mnist": (60000, 10000), "fashion_mnist": (60000, 10000),
              "cifar10": (50000, 10000)}

_ABSENT = object()


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first bad value of `cfg` (a composed config)."""
    _load_metric_plugins(cfg)  # before metrics.which and optimized_metric: a plugin's family is allowed there
    rules = dict(RULES)
    rules["codes.epochs"] = _capture_schedule(cfg)
    late = ("optimized_metric",)  # metric names are known once metrics.plugins are loaded (_metric_options)
    for key, check in rules.items():
        if key in late:
            continue
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        if value is _ABSENT:
            continue
        allowed = check(value)
        if allowed is not None:
            raise ConfigError(key, value, allowed)
    _target_rules(cfg)
    _data_rules(cfg)
    _contradictions(cfg)
    _metric_options(cfg)
    for key in late:
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        if value is not _ABSENT and (allowed := rules[key](value)) is not None:
            raise ConfigError(key, value, allowed)
    _group_conflicts(cfg)
    _targets(cfg)
    _signatures(cfg)


def _target_rules(cfg: DictConfig) -> None:
    for path in ("model", "data", "scheduler", "optimizer", "model.backbone"):
        node = OmegaConf.select(cfg, path, default=None, throw_on_missing=False)
        if not isinstance(node, DictConfig):
            continue
        for key, check in TARGET_RULES.get(str(node.get("_target_")), {}).items():
            value = OmegaConf.select(node, key, default=_ABSENT, throw_on_missing=False)
            if value is not _ABSENT and (allowed := check(value)) is not None:
                raise ConfigError(f"{path}.{key}", value, allowed)


def _data_rules(cfg: DictConfig) -> None:
    data = cfg.get("data")
    if not isinstance(data, DictConfig) or "name" not in data:
        return
    name = data.get("name")
    options = data.get("options")
    rules = DATA_OPTION_RULES.get(str(name), {})
    if isinstance(options, DictConfig):
        for key, value in options.items():
            if key not in rules:
                allowed = ", ".join(rules) or f"none for data.name={name} (options: null)"
                raise ConfigError(f"data.options.{key}", value, f"no such option of data.name={name}; allowed: {allowed}")
            if (allowed := rules[key](value)) is not None:
                raise ConfigError(f"data.options.{key}", value, allowed)
    if str(data.get("_target_", "")).endswith("InMemoryDataModule"):
        from activation_hash.data.sources import DATASETS
        if name not in DATASETS:
            raise ConfigError("data.name", name, "allowed: " + ", ".join(DATASETS))
    sizes = DATA_SIZES.get(str(name))
    if name == "synthetic":
        opts = options if isinstance(options, DictConfig) else {}
        sizes = (opts.get("n_train", 400), opts.get("n_test", 200))
    elif str(data.get("_target_", "")).endswith("planar_datamodule"):
        sizes = (data.get("n_samples", 1000), data.get("n_test", 500))
    if sizes is None:
        return
    if name == "digits" and isinstance(options, DictConfig) and options.get("split") == "sequential":
        sizes = DATA_SIZES["digits"]
    for key, pool, what in (("data.train_size", sizes[0], "training file"), ("data.test_size", sizes[1], "test set")):
        value = data.get(key.split(".")[1])
        if _is_int(value) and value > pool:
            raise ConfigError(key, value, f"is larger than the {what} of {name} ({pool} samples); allowed: 1..{pool} "
                                          "or null (all of it)", sep=" ")
    # K-NN needs k <= the training samples; the exact count is checked again once the data is read
    train = data.get("train_size") if _is_int(data.get("train_size")) else sizes[0]
    k = OmegaConf.select(cfg, "metrics.knn_k", default=None)
    which = OmegaConf.select(cfg, "metrics.which", default=None)
    if _is_int(k) and _is_int(train) and k > train and (which is None or "knn" in which):
        raise ConfigError("metrics.knn_k", k, f"is larger than the training set (at most {train} samples); "
                                              f"allowed: 1..{train}", sep=" ")


def _contradictions(cfg: DictConfig) -> None:
    """Values that are fine alone but contradict each other."""
    model = cfg.get("model")
    if isinstance(model, DictConfig) and model.get("widths") is not None and _is_int(model.get("depth")) \
            and str(model.get("_target_", "")).endswith(("mlp.MLP", "dlgn.DLGN")):
        widths, depth = list(model.widths), model.depth
        if depth != len(widths) and depth != _option_default(cfg, "model", "depth"):
            raise ConfigError("model.widths", widths, f"has {len(widths)} layers but model.depth={depth}: set "
                                                      f"model.depth={len(widths)} or drop one of the two")
    trainer = cfg.get("trainer")
    codes = cfg.get("codes")
    if isinstance(trainer, DictConfig) and isinstance(codes, DictConfig):
        steps = trainer.get("max_steps")
        epochs = codes.get("epochs")
        if _is_int(steps) and steps > 0 and isinstance(epochs, ListConfig):
            reachable = steps  # at least one optimizer step per epoch
            data = cfg.get("data")
            size = data.get("train_size") if isinstance(data, DictConfig) else None
            batch = data.get("batch_size") if isinstance(data, DictConfig) else None
            if _is_int(size) and _is_int(batch) and batch > 0:
                accumulate = trainer.get("accumulate_grad_batches") or 1
                per_epoch = max(1, int(size * (1 - float(data.get("val_fraction") or 0))) // batch // accumulate)
                reachable = -(-steps // per_epoch)
            late = [e for e in epochs if _is_int(e) and e > reachable]
            if late:
                raise ConfigError("codes.epochs", epochs, f"epoch(s) {late} are never reached: trainer.max_steps="
                                                          f"{steps} stops training by epoch {reachable}")
    metrics = cfg.get("metrics")
    if isinstance(codes, DictConfig) and codes.get("source") == "network":
        from activation_hash.codes.source import network_source_reason
        which = metrics.get("which") if isinstance(metrics, DictConfig) else None
        why = network_source_reason(codes.get("save"), codes.get("memmap"), which,
                                    metrics.get("drop_constant", True) if isinstance(metrics, DictConfig) else True)
        if why:
            raise ConfigError("codes.source", "network", why)
    if isinstance(metrics, DictConfig):
        halfspaces = OmegaConf.select(metrics, "halfspaces.enabled", default="auto")
        if halfspaces is True and not (isinstance(model, DictConfig) and str(model.get("_target_", "")).endswith(
                "dlgn.DLGN") and model.get("variant", "dlgn") in ("dlgn", "dlgn_sf")):
            raise ConfigError("metrics.halfspaces.enabled", True, "applies only to networks with half-space gates "
                              "(model=dlgn or dlgn_sf, variant dlgn|dlgn_sf); use auto or false")
        regions = OmegaConf.select(metrics, "regions.enabled", default="auto")
        data = cfg.get("data")
        planar = isinstance(data, DictConfig) and (str(data.get("_target_", "")).endswith("planar_datamodule")
                                                   or data.get("name") in ("moons", "circles", "spirals"))
        if regions is True and not planar:
            raise ConfigError("metrics.regions.enabled", True, "applies only to 2-D inputs (data=moons | circles | "
                              "spirals); use auto or false")
        deepfool = metrics.get("deepfool")
        if isinstance(deepfool, DictConfig) and deepfool.get("enabled") is True and \
                _is_int(deepfool.get("n_samples")) and _is_int(deepfool.get("pool")) and deepfool.n_samples > deepfool.pool:
            raise ConfigError("metrics.deepfool.n_samples", deepfool.n_samples,
                              f"must be <= metrics.deepfool.pool={deepfool.pool}")
    if isinstance(trainer, DictConfig):
        accelerator = trainer.get("accelerator")
        if accelerator in ("gpu", "cuda"):
            import torch
            if not torch.cuda.is_available():
                raise ConfigError("trainer.accelerator", accelerator, "no CUDA device on this machine; use auto or cpu")


def _option_default(cfg: DictConfig, group: str, key: str) -> Any:
    """The value `key` has in the chosen option file of `group` (None when unknown)."""
    from hydra.core.hydra_config import HydraConfig
    choice_ = None
    if HydraConfig.initialized():
        choice_ = HydraConfig.get().runtime.choices.get(group)
    elif OmegaConf.select(cfg, "hydra.runtime.choices") is not None:
        choice_ = cfg.hydra.runtime.choices.get(group)
    if choice_ is None:
        choice_ = {"activation_hash.models.mlp.MLP": "mlp", "activation_hash.models.dlgn.DLGN": "dlgn"}.get(
            str(cfg[group].get("_target_")))
    from importlib.resources import files
    try:
        data = OmegaConf.create(files("activation_hash.conf").joinpath(group, f"{choice_}.yaml").read_text())
    except (FileNotFoundError, OSError, TypeError):
        return None
    value = data.get(key)
    if value is None and choice_ == "dlgn_sf":
        return 2
    return value


# Keys a node may hold besides its target's arguments.
_HYDRA_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")


def _signatures(cfg: DictConfig) -> None:
    """Every `_target_` resolves, and every key of its node is an argument of it; pass-through values
    of a bool or number argument have that type; torch optimizers and schedulers check their values
    on a dummy parameter (nothing of the run is built)."""
    nodes: list[tuple[str, DictConfig]] = []
    for path in ("model", "data", "optimizer", "scheduler", "trainer", "model.network", "model.backbone",
                 "data.datamodule"):
        node = OmegaConf.select(cfg, path, default=None, throw_on_missing=False)
        # a required `_target_: ???` (conf/model/custom.yaml) is not `in` the node but must be named
        if isinstance(node, DictConfig) and ("_target_" in node or OmegaConf.is_missing(node, "_target_")):
            nodes.append((path, node))
    for group in ("callbacks", "logger"):
        node = cfg.get(group)
        if isinstance(node, DictConfig):
            nodes += [(f"{group}.{k}", v) for k, v in node.items() if isinstance(v, DictConfig)]
    for path, node in nodes:
        target = "???" if OmegaConf.is_missing(node, "_target_") else node.get("_target_")
        obj = _resolve_target(f"{path}._target_", target)
        _check_arguments(path, node, obj, str(target))
    optimizer = cfg.get("optimizer")
    if isinstance(optimizer, DictConfig) and str(optimizer.get("_target_", "")).startswith("torch.optim."):
        _try_optimizer(cfg)


def _resolve_target(key: str, target: Any) -> Any:
    import importlib
    if not isinstance(target, str) or not target or target == "???":
        raise ConfigError(key, target, "must name a class or function, e.g. my_package.module.Name")
    module_name, _, attr = target.rpartition(".")
    try:
        module = importlib.import_module(module_name) if module_name else None
    except ImportError as err:
        raise ConfigError(key, target, f"cannot import module {module_name!r} ({err})") from None
    except Exception as err:  # noqa: BLE001 - a user module that fails while importing
        raise ConfigError(key, target, f"importing {module_name!r} raised {type(err).__name__}: {err}") from None
    if module is None or not hasattr(module, attr):
        names = [n for n in dir(module) if not n.startswith("_")] if module is not None else []
        near = _closest(attr, names)
        raise ConfigError(key, target, f"module {module_name!r} has no {attr!r}" + (f"; did you mean {module_name}.{near}?" if near else ""))
    return getattr(module, attr)


def _check_arguments(path: str, node: DictConfig, obj: Any, target: str) -> None:
    import inspect
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for key in node.keys():
        key = str(key)
        if key in _HYDRA_KEYS:
            continue
        if key not in params:
            if path == "model.backbone" and key == "activation":
                continue  # read by BinaryEncodingNet, which builds the backbone
            names = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
            near = _closest(key, names)
            # as written (an interpolation unresolved), through OmegaConf's public API
            value = OmegaConf.to_container(node, resolve=False).get(key) if isinstance(node, DictConfig) else node.get(key)
            raise ConfigError(f"{path}.{key}", value, f"is not an argument of {target}" +
                              (f"; did you mean {path}.{near}?" if near else f"; allowed: {', '.join(names)}"))
        default = params[key].default
        value = OmegaConf.select(node, key, default=None, throw_on_missing=False)
        if isinstance(default, bool) and not isinstance(value, bool) and value is not None:
            raise ConfigError(f"{path}.{key}", value, f"must be true or false (an argument of {target})")
        if _is_number(default) and not isinstance(default, bool) and value is not None and not _is_number(value):
            raise ConfigError(f"{path}.{key}", value, f"must be a number (an argument of {target})")


def _try_optimizer(cfg: DictConfig) -> None:
    """Torch's own checks of the optimizer's (and scheduler's) values, on one dummy parameter."""
    import torch
    from hydra.utils import instantiate
    param = torch.nn.Parameter(torch.zeros(1))
    try:
        optimizer = instantiate(cfg.optimizer)([param])
    except Exception as err:  # noqa: BLE001 - torch's ValueError names the bad value
        cause = err.__cause__ or err
        raise ConfigError(*_blame("optimizer", cfg.optimizer, str(cause)), sep=": ") from None
    scheduler = cfg.get("scheduler")
    if isinstance(scheduler, DictConfig) and "_target_" in scheduler:
        try:
            instantiate(scheduler)(optimizer)
        except Exception as err:  # noqa: BLE001
            cause = err.__cause__ or err
            raise ConfigError(*_blame("scheduler", scheduler, str(cause)), sep=": ") from None


def _blame(group: str, node: DictConfig, message: str) -> tuple[str, Any, str]:
    """(key, value, allowed) for a library's refusal: the key its message names, else the group."""
    message = " ".join(message.split())
    lowered = message.lower()
    keys = [str(k) for k in node.keys() if str(k) not in _HYDRA_KEYS]
    aliases = {"eps": ("epsilon",), "lr": ("learning rate",), "weight_decay": ("weight_decay", "weight decay"),
               "betas": ("beta",), "nesterov": ("nesterov",), "momentum": ("momentum",)}
    for key in sorted(keys, key=lambda k: ("nesterov" != k, -len(k))):
        if key.lower() in lowered or any(a in lowered for a in aliases.get(key, ())):
            return f"{group}.{key}", node.get(key), f"{node.get('_target_')} refuses it ({message})"
    return group, node.get("_target_"), f"refuses its arguments ({message})"


def _targets(cfg: DictConfig) -> None:
    """Settings left without a class: e.g. `scheduler=none` with a recipe that sets scheduler.step_size
    leaves {step_size, gamma}, which nothing can build (it would fail only once training starts)."""
    for group in ("optimizer", "scheduler", "model", "data"):
        node = cfg.get(group)
        if isinstance(node, DictConfig) and len(node) and "_target_" not in node:
            value = "{" + ", ".join(f"{k}: {v}" for k, v in OmegaConf.to_container(node).items()) + "}"
            raise ConfigError(group, value, f"names no class (_target_); a recipe or experiment sets these keys "
                                            f"and the {group} option chosen has none: choose one that uses them "
                                            f"(e.g. {group}=step for a scheduler), or recipe=default")


def _load_metric_plugins(cfg: DictConfig) -> None:
    """Import and register the families named in `metrics.plugins` (checked first)."""
    plugins = OmegaConf.select(cfg, "metrics.plugins", default=None, throw_on_missing=False)
    if not plugins:
        return
    if (allowed := RULES["metrics.plugins"](plugins)) is not None:
        raise ConfigError("metrics.plugins", plugins, allowed)
    from activation_hash.metrics.registry import load_plugins
    try:
        load_plugins(list(plugins))
    except ValueError as err:
        raise ConfigError("metrics.plugins", list(plugins), str(err).partition(": ")[2]) from None


def _metric_options(cfg: DictConfig) -> None:
    """The metrics helper's `validate_options(which, options)` where it exists (new families)."""
    try:
        from activation_hash.metrics import validate_options  # type: ignore[attr-defined]
    except ImportError:
        return
    options = OmegaConf.to_container(cfg.metrics, resolve=True)
    try:
        validate_options(list(options.pop("which", [])), options)
    except ConfigError:
        raise
    except ValueError as err:
        key, value, allowed = _split(str(err))
        if not value:
            value = OmegaConf.select(cfg, key, default="")
        raise ConfigError(key, value, allowed) from None


def _split(message: str) -> tuple[str, str, str]:
    """`key=value: allowed` back into its parts (for ValueErrors raised by other modules)."""
    head, _, allowed = message.partition(": ")
    key, _, value = head.partition("=")
    key = key if key.startswith("metrics.") else f"metrics.{key}"
    return key, value, allowed or message


# A regularizer arm of the regularization study resets these keys; a recipe that sets them to
# something else would be silently undone by the group listed later, so the pair is refused.
_REGULARIZER_RESETS = {"none": ("model.batch_norm", "model.l2", "optimizer.weight_decay", "trainer.gradient_clip_val")}


def _group_conflicts(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    if HydraConfig.initialized():
        choices = HydraConfig.get().runtime.choices
    elif OmegaConf.select(cfg, "hydra.runtime.choices") is not None:  # compose(..., return_hydra_config=True)
        choices = cfg.hydra.runtime.choices
    else:
        return
    regularizer, recipe = choices.get("regularizer"), choices.get("recipe")
    if regularizer in _REGULARIZER_RESETS and recipe not in (None, "default"):
        recipe_values = _recipe_settings(recipe)
        clash = [k for k in _REGULARIZER_RESETS[regularizer] if k in recipe_values]
        if clash:
            raise ConfigError("regularizer", regularizer,
                              f"conflicts with recipe={recipe}, which sets {', '.join(clash)} that "
                              f"regularizer={regularizer} resets; use recipe=default with regularizer={regularizer}, "
                              "or drop the regularizer")


def _recipe_settings(recipe: str) -> set[str]:
    """The dotted keys a recipe file sets (read from the package's conf/recipe/)."""
    from importlib.resources import files
    path = files("activation_hash.conf").joinpath("recipe", f"{recipe}.yaml")
    try:
        data = OmegaConf.create(path.read_text())
    except (FileNotFoundError, OSError):
        return set()
    out: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, DictConfig):
            for k in node.keys():
                if k != "defaults":
                    walk(node[k], f"{prefix}{k}.")
        else:
            out.add(prefix[:-1])
    walk(data, "")
    return out


# Keys that are not values of their own: Hydra's instantiation keys, an experiment's grid table
# (its values reach the run through other keys, which are checked) and free-form mappings.
STRUCTURAL = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")
FREE_FORM = ("grid", "data.checksums", "data.mirrors", "callbacks", "logger")


def rule_for(cfg: DictConfig, key: str) -> Check | str | None:
    """The check that covers dotted `key` of a composed config (a rule, a target's rule, or the
    name of the mechanism that checks it), None when no rule does: tests/test_schema_coverage.py
    requires a rule for every key any shipped config holds."""
    if key in RULES:
        return RULES[key]
    if key == "codes.epochs":
        return "capture schedule"  # validate() checks it against trainer.max_epochs
    if key.startswith("codes.selections."):
        return RULES["codes.selections"]  # the whole mapping is checked, each entry by the layer-selection rule
    last = key.rsplit(".", 1)[-1]
    if last in STRUCTURAL:
        return "structural"
    if key.startswith("data.options."):
        name = OmegaConf.select(cfg, "data.name", default=None)
        return DATA_OPTION_RULES.get(str(name), {}).get(key.split(".", 2)[2])
    for path in ("model.backbone", "model.network", "model", "data", "scheduler", "optimizer"):
        node = OmegaConf.select(cfg, path, default=None, throw_on_missing=False)
        if isinstance(node, DictConfig) and key.startswith(path + "."):
            rel = key[len(path) + 1:]
            rules = TARGET_RULES.get(str(node.get("_target_")), {})
            if rel in rules:
                return rules[rel]
    for free in FREE_FORM:
        if key == free or key.startswith(free + "."):
            if free in ("callbacks", "logger"):
                return "signature"  # every key of a callback/logger is an argument of its class (_signatures)
            return "free-form"
    if key.startswith("model.network."):
        return "signature"  # a user network's arguments: checked against its signature
    return None
