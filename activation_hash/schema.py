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
            return str(err).split(" ", 1)[-1] if " " in str(err) else f"use {ALLOWED}"
        return None
    return check


def _layer_selection(v: Any) -> str | None:
    from activation_hash.codes.capture import parse_layers
    try:  # the number of layers is known only once the network is built; check the syntax here
        parse_layers(OmegaConf.to_object(v) if isinstance(v, ListConfig) else v, 10**6)
    except ValueError:
        return "allowed: all, an int k >= 1, a list of ints >= 1, or a range 'i..j', '..j', 'i..'"
    return None


def _metric_families() -> tuple[str, ...]:
    from activation_hash.metrics.encoding import WHICH
    from activation_hash.metrics.registry import families
    return tuple(dict.fromkeys([*WHICH, *families()]))


def _which(v: Any) -> str | None:
    allowed = _metric_families()
    if isinstance(v, (list, ListConfig)) and all(isinstance(w, str) and w in allowed for w in v):
        return None
    return f"must be a list of metric families from: {', '.join(allowed)}"


def _logger(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, (DictConfig, Mapping)) and all(
            isinstance(spec, (DictConfig, Mapping)) and "_target_" in spec for spec in v.values()):
        return None
    return "choose a logger group option: logger=csv | wandb | tensorboard | mlflow | many | none"


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
    "codes.capture_last": boolean,
    "codes.verbose": boolean,
    "codes.layers": _layer_selection,
    "metrics.which": _which,
    "metrics.drop_constant": boolean,
    "metrics.knn_k": integer(1),
    "metrics.kmeans_seed": integer(0),
    "metrics.logreg_seed": integer(0),
    "metrics.logreg_mode": choice("ovo", "ovr", "multinomial"),
    "metrics.diameter.enabled": boolean,
    "metrics.diameter.n_samples": integer(1),
    "metrics.diameter.method": choice("exact", "grid", "both"),
    "metrics.diameter.t_max": number(0, lo_open=True, nullable=True, null_means=" (unbounded)"),
    "metrics.diameter.grid_step": number(0, lo_open=True),
    "metrics.diameter.grid_t_max": number(0, lo_open=True),
    "metrics.diameter.random": boolean,
    "metrics.diameter.seed": integer(0),
    "metrics.halfspaces.enabled": choice("auto", True, False),
    "metrics.halfspaces.save": boolean,
    "metrics.halfspaces.images": choice("auto", True, False),
    "metrics.halfspaces.max_gates": integer(1),
    "metrics.halfspaces.columns": integer(1),
    "metrics.halfspaces.dpi": integer(1),
}

_ABSENT = object()


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first bad value of `cfg` (a composed config)."""
    rules = dict(RULES)
    rules["codes.epochs"] = _capture_schedule(cfg)
    for key, check in rules.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        if value is _ABSENT:
            continue
        allowed = check(value)
        if allowed is not None:
            raise ConfigError(key, value, allowed)
    _metric_options(cfg)
    _group_conflicts(cfg)
    _targets(cfg)


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
        raise ConfigError(*_split(str(err))) from err


def _split(message: str) -> tuple[str, str, str]:
    """`key=value: allowed` back into its parts (for ValueErrors raised by other modules)."""
    head, _, allowed = message.partition(": ")
    key, _, value = head.partition("=")
    key = key if key.startswith("metrics.") else f"metrics.{key}"
    return key, value, allowed or message


# A regularizer arm of the regularization study resets these keys; a recipe that sets them to
# something else would be silently undone by the group listed later, so the pair is refused.
_REGULARIZER_RESETS = {"none": ("model.batch_norm", "optimizer.weight_decay", "trainer.gradient_clip_val")}


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
