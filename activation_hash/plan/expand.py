"""A study's jobs as the launcher will see them, and the units it will form, without running anything.

``jobs(study, profile, overrides)``: every job of `+experiment=STUDY profile=PROFILE -m OVERRIDES`,
as a plain resolved dict (what the task config resolves to). Hydra's compose API builds the study
once per choice of its swept config groups (`model`, `data`, `+cnn_recipe`, ...); swept values
(`seed`, `model.width`, ...) are then set on a copy of the resolved config, and every key that
interpolates exactly one swept key (`data.seed: ${seed}`) follows it. A config whose other
interpolations read a swept key is resolved job by job through OmegaConf (slower, same result).

``units(tasks, launcher)``: the launcher's units of work. Under `hydra/launcher=batched` this is the
grouping rule of `hydra_plugins.activation_hash_batched_launcher.batched_launcher.plan` (groups by
`run_group.group_key`, jobs with an `unbatchable_reason` alone, groups cut at `max_members`),
reimplemented here because the launcher's `plan` checks and dry-runs every job (minutes for the paper
profile): the reason is asked once per group key, and a network other than the MLP is dry-run on
PyTorch's meta device (`batched.stacked.stackable_reason`, plus the three hooks the launcher's
private `_network_reason` refuses) instead of at full size on the CPU. A test checks both agree on
the smoke studies. Other launchers run every job alone.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from activation_hash.validate import sweep_overrides

CONF = Path(__file__).resolve().parent.parent / "conf"
BATCHED = "hydra_plugins.activation_hash_batched_launcher.batched_launcher.BatchedLauncher"
MLP_TARGET = "activation_hash.models.mlp.MLP"


def studies_available() -> list[str]:
    return sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def _groups() -> set[str]:
    return {p.name for p in CONF.iterdir() if p.is_dir()} | {"hydra/launcher", "hydra/sweeper"}


def _walk(node: Any, path: tuple = ()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, i))
    else:
        yield path, node


def _set(node: dict, path: Sequence, value: Any) -> None:
    for p in path[:-1]:
        node = node.setdefault(p, {}) if isinstance(node, dict) else node[p]
    node[path[-1]] = value


def jobs(study: str, profile: str, overrides: Sequence[str] = ()) -> tuple[list[dict], dict]:
    """(every job's resolved config as a plain dict, the resolved hydra.launcher config)."""
    parser = OverridesParser.create()
    groups = _groups()
    is_group = lambda key: key.lstrip("+~") in groups  # noqa: E731
    parsed = parser.parse_overrides(list(overrides))
    plain = [(text, o.get_key_element()) for text, o in zip(overrides, parsed) if not o.is_sweep_override()]
    base = [f"+experiment={study}", f"profile={profile}", *(text for text, _ in plain)]
    with initialize_config_module(config_module="activation_hash.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=base, return_hydra_config=True)
        launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
        params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True) if cfg.hydra.sweeper.get("params") else {}
        params = params or {}
        # the study's sweep and the command line's values, key by key as Hydra's basic sweeper does
        merged = sweep_overrides(params, overrides, parser)
        axes = {key: list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
                for key, o in merged.items() if o.is_sweep_override() or key in params}
        base = [*base[:2], *(text for text, key in plain if key not in axes)]   # a swept key's value is its axis
        keys = list(axes)
        values = [k for k in keys if not is_group(k)]
        out, cache = [], {}
        for combo in itertools.product(*axes.values()):
            choice = tuple(f"{k}={v}" for k, v in zip(keys, combo) if is_group(k))
            setting = {k: parser.parse_override(f"{k}={v}").value() for k, v in zip(keys, combo) if not is_group(k)}
            if choice not in cache:
                c = compose(config_name="config", overrides=[*base, *choice])
                with open_dict(c):
                    c.output_dir = "plan"   # the run directory is Hydra's at run time; nothing reads it here
                follow, exact = [], True
                for path, v in _walk(OmegaConf.to_container(c, resolve=False)):
                    if isinstance(v, str) and "${" in v and any(k in v for k in values):
                        m = re.fullmatch(r"\$\{([\w.]+)\}", v)
                        if m and m.group(1) in values:
                            follow.append((path, m.group(1)))
                        else:
                            exact = False
                cache[choice] = (c, OmegaConf.to_container(c, resolve=True) if exact else None, follow)
            c, resolved, follow = cache[choice]
            if resolved is not None:
                job = copy.deepcopy(resolved)
                for k, v in setting.items():
                    _set(job, k.split("."), v)
                for path, k in follow:
                    _set(job, path, setting[k])
            else:
                c2 = copy.deepcopy(c)
                for k, v in setting.items():
                    OmegaConf.update(c2, k, v, force_add=True)
                job = OmegaConf.to_container(c2, resolve=True)
            out.append(job)
        return out, launcher


def network_reason(net: Any, shape: tuple[int, ...]) -> str | None:
    """Why a (meta-device) network other than the MLP cannot be a StackedNet member: the launcher's
    rule (`run_group._network_reason`), with the dry run on the meta device."""
    from activation_hash.batched.stacked import stackable_reason
    hooks = {"loss_terms": "the batched module does not add its terms", "set_epoch": "the batched module does not call it",
             "effective_gating": "the halfspaces probe reads it, and probes are not batched"}
    for name, module in net.named_modules():
        for hook, why in hooks.items():
            if callable(getattr(module, hook, None)):
                return f"model: {name or type(net).__name__} defines {hook}(): {why}"
    return stackable_reason(net, shape)


def units(tasks: Sequence[dict], launcher: dict, pad_widths: bool, arch=None) -> tuple[list[list[int]], dict[int, str]]:
    """Units over job positions (sorted by first job) and, per job run alone, why. `arch(model, shape,
    classes)` gives the meta-built network's facts (plan.arch.describe), whose `reason` is used for
    networks other than the MLP."""
    if launcher.get("_target_") != BATCHED:
        return [[i] for i in range(len(tasks))], {i: f"hydra/launcher {launcher.get('_target_')} runs jobs one by one"
                                                 for i in range(len(tasks))}
    from hydra_plugins.activation_hash_batched_launcher.batched_launcher import member_widths, units_of
    from activation_hash.batched.run_group import group_key, unbatchable_reason
    from activation_hash.schema import ConfigError
    from activation_hash.validate import check_config
    from activation_hash.plan.arch import data_facts

    max_members = launcher.get("max_members")
    why: dict[int, str] = {}
    groups: dict[str, list[int]] = {}
    reasons: dict[str, str | None] = {}
    widths: dict[str, tuple[int, ...]] = {}
    for pos, task in enumerate(tasks):
        key = group_key(task)
        if key not in reasons:
            model = task.get("model") or {}
            try:
                check_config(OmegaConf.create(task))
                if model.get("_target_") == MLP_TARGET:
                    reasons[key] = unbatchable_reason(task)
                else:   # the launcher's reason but the model's, then the model's on the meta device
                    mlp = {**task, "model": {"_target_": MLP_TARGET, "_partial_": True}}
                    reasons[key] = unbatchable_reason(mlp)
                    if reasons[key] is None and arch is not None:
                        shape, classes = data_facts(task["data"])[:2]
                        reasons[key] = arch(model, shape, classes)["reason"]
            except (ConfigError, ValueError) as err:
                reasons[key] = f"config error: {err}"
        if reasons[key] is not None:
            why[pos] = reasons[key]
            groups[f"solo-{pos}"] = [pos]
            continue
        if not pad_widths:
            model_key = key_of(task.get("model"))
            if model_key not in widths:
                widths[model_key] = member_widths(OmegaConf.create({"model": task.get("model") or {}}))
            key = key + f"|widths={widths[model_key]}"
        groups.setdefault(key, []).append(pos)
    return units_of(groups, max_members, why)  # cut into units as the launcher does


def describe_unit(tasks: Sequence[dict], unit: Sequence[int], axes: Sequence[str] = ("seed",)) -> str:
    """A short name for a unit: its model, data and the swept values of its first job."""
    t = tasks[unit[0]]
    model = str((t.get("model") or {}).get("_target_", "?")).rsplit(".", 1)[-1]
    name = f"{model}/{(t.get('data') or {}).get('name', '?')}"
    w = (t.get("model") or {}).get("width")
    return name + (f" width={w}" if w is not None else "") + f" seed={t.get('seed')}" + \
        (f" (+{len(unit) - 1} members)" if len(unit) > 1 else "")


def key_of(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
