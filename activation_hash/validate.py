"""Checks of a composed config that must fail before any training starts, and of a whole command
line (every job of a sweep) before Hydra runs the first job.

`check_command(argv)` composes the command's config the way Hydra will (the app's config module,
the same overrides), expands a multirun into its jobs exactly as Hydra's basic sweeper does (the
experiment's `hydra.sweeper.params` plus the command line's sweeps), composes every job and runs
`check_config` on each. Hydra's own composition errors (an unknown key, a key that needs `+`, an
unknown group option) come back as ConfigError with the closest valid key or option. A sweep with
bad jobs raises SweepError listing every one of them; nothing has been written or trained then.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from activation_hash.schema import ConfigError, validate, validate_launcher

CONFIG_MODULE, CONFIG_NAME = "activation_hash.conf", "config"
# Hydra flags after which the command does not run jobs (it prints something), or composes from
# somewhere else than the app's config module: the pre-check leaves those to Hydra.
_NOT_A_RUN = ("--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i", "--shell-completion",
              "-sc", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun",
              "--resolve", "--package", "-p")


class SweepError(ConfigError):
    """Several jobs of a sweep are bad: one line per distinct error, each naming its jobs."""

    def __init__(self, lines: list[str], n_jobs: int) -> None:
        self.lines, self.n_jobs = lines, n_jobs
        ValueError.__init__(self, "\n".join(lines))
        self.key, self.value, self.allowed = "sweep", n_jobs, "\n".join(lines)


def check_config(cfg: DictConfig) -> None:
    """Static checks that need no data or model. Raises ConfigError naming key, value, allowed."""
    validate(cfg)
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError("output_dir", str(out), "is a file; it must be a directory (or not exist yet)", sep=" ")


def check_against_data(cfg: DictConfig, n_train: int | None) -> None:
    """Checks that need the training-set size (skipped when the datamodule cannot tell it)."""
    k = cfg.metrics.knn_k
    if n_train is not None and "knn" in cfg.metrics.get("which", ["knn"]) and k > n_train:
        raise ConfigError("metrics.knn_k", k, f"is larger than the training set ({n_train} samples); "
                          f"allowed: 1..{n_train}", sep=" ")


def check_data_on_disk(cfg: DictConfig) -> None:
    """The files of a data set read from disk are there (or data.download=true fetches them); looks
    for them without reading them, as `python -m activation_hash.data.check` does."""
    data = cfg.get("data")
    if not isinstance(data, DictConfig) or not str(data.get("_target_", "")).endswith("InMemoryDataModule"):
        return
    if data.get("download") is True or data.get("name") in ("digits", "synthetic"):
        return
    root = data.get("root")
    if root is not None and Path(str(root)).exists() and not Path(str(root)).is_dir():
        raise ConfigError("data.root", root, "is a file; it must be the folder that holds the data set's files")
    from activation_hash.data.sources import MissingDataError, make_source
    try:
        source = make_source(data.name, root, data.get("mirrors"), data.get("checksums"), data.get("options"))
        source.ensure(False)
    except MissingDataError as err:
        first = str(err).splitlines()
        expected = next((line.strip() for line in first[1:] if line.startswith("  ")), "")
        raise ConfigError("data.root", root, f"{data.name} files not found there (expected {expected}); pass "
                          "data.download=true, or point data.root=DIR or ACTIVATION_HASH_DATA=DIR at a folder "
                          "that has them") from None
    except ValueError as err:
        raise ConfigError("data.root", root, str(err).split(": ", 1)[-1]) from None


# ---------------------------------------------------------------------------------------------
# The whole command line, before Hydra runs anything


def runs_jobs(argv: Sequence[str]) -> bool:
    return not any(a in _NOT_A_RUN or a.split("=", 1)[0] in _NOT_A_RUN for a in argv)


def check_command(argv: Sequence[str]) -> int:
    """Compose and check every job `python -m activation_hash ARGV` would run; the number of jobs.
    Raises ConfigError (one bad run, or a Hydra composition error) or SweepError (bad sweep jobs)."""
    from hydra.core.global_hydra import GlobalHydra

    multirun = any(a in ("-m", "--multirun") for a in argv)
    overrides = [a for a in argv if a not in ("-m", "--multirun")]
    if any(a.startswith("-") for a in overrides):
        return 0  # a flag the pre-check does not know: Hydra reports it
    from hydra.core.hydra_config import HydraConfig
    if GlobalHydra.instance().is_initialized():
        return 0  # inside another Hydra app (tests composing by hand): Hydra checks it as usual
    saved = HydraConfig.instance().cfg
    try:
        return _check_command(multirun, overrides)
    finally:
        HydraConfig.instance().cfg = saved  # as it was: the jobs' configs were set while checking


def _check_command(multirun: bool, overrides: list[str]) -> int:
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        mode = RunMode.MULTIRUN if multirun else RunMode.RUN
        master = _compose(lambda: loader.load_configuration(CONFIG_NAME, list(overrides), run_mode=mode), overrides,
                          loader)
        if not multirun:
            _not_a_sweep(master, overrides)
            _check_job(_task_config(master, run=True), master)
            return 1
        validate_launcher(master.hydra)
        jobs = _sweep_jobs(master, overrides, loader)
        bad: dict[str, list[int]] = {}
        for num, job in enumerate(jobs):
            try:
                config = _compose(lambda: loader.load_sweep_config(master, list(job)), job, loader)
                with open_dict(config):
                    config.hydra.job.num = num
                    config.hydra.job.id = num
                _check_job(_task_config(config, run=False), config)
            except ConfigError as err:
                bad.setdefault(str(err), []).append(num)
        if bad:
            if len(bad) == 1 and len(jobs) == 1:
                raise ConfigError(*_parts(next(iter(bad))))
            varying = {o.split("=", 1)[0] for job in jobs for o in job} - \
                {o.split("=", 1)[0] for o in set(jobs[0]).intersection(*map(set, jobs))}
            lines = []
            for message, nums in bad.items():
                which = "every job" if len(nums) == len(jobs) else \
                    "job " + ", ".join(f"#{n} ({' '.join(_shown(jobs[n], varying))})" for n in nums[:8]) + \
                    (f" and {len(nums) - 8} more" if len(nums) > 8 else "")
                lines.append(f"{message} [{which} of the {len(jobs)} in the sweep; none was run]")
            raise SweepError(lines, len(jobs))
        return len(jobs)


def _parts(message: str) -> tuple[str, str, str]:
    head, _, allowed = message.partition(": ")
    key, _, value = head.partition("=")
    return key, value, allowed


def _shown(job: Sequence[str], varying: set[str]) -> list[str]:
    """The overrides that tell this job apart from the others of the sweep."""
    return [o for o in job if o.split("=", 1)[0] in varying] or list(job)


def _check_job(task: DictConfig, config: DictConfig) -> None:
    """check_config on a job's task config, with Hydra's view of the job (group choices) set."""
    from hydra.core.hydra_config import HydraConfig
    hydra_config = HydraConfig.instance()
    saved = hydra_config.cfg
    hydra_config.set_config(config)
    try:
        check_config(task)
        check_data_on_disk(task)
    finally:
        hydra_config.cfg = saved


def _task_config(config: DictConfig, run: bool) -> DictConfig:
    """The job's config with every interpolation resolved as the job sees it (its output directory
    set the way Hydra sets it); an unresolvable or missing value is a ConfigError naming its key."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf.errors import OmegaConfBaseException
    hydra = config.hydra
    with read_write(hydra), open_dict(hydra):
        HydraConfig.instance().set_config(config)
        try:
            out = str(hydra.run.dir) if run else os.path.join(str(hydra.sweep.dir), str(hydra.sweep.subdir))
        except OmegaConfBaseException as err:
            raise ConfigError("hydra.run.dir" if run else "hydra.sweep.dir", "?", _one_line(str(err))) from None
        with read_write(hydra.runtime), open_dict(hydra.runtime):
            hydra.runtime.output_dir = os.path.abspath(out)
    HydraConfig.instance().set_config(config)
    task = OmegaConf.masked_copy(config, [k for k in config.keys() if k != "hydra"])
    try:
        plain = OmegaConf.to_container(task, resolve=True)
    except OmegaConfBaseException:
        _blame_unresolved(task)
        raise
    return OmegaConf.create(plain)


def _blame_unresolved(config: DictConfig) -> None:
    """The ConfigError for the first key of the task config that is missing or does not resolve."""
    from omegaconf.errors import OmegaConfBaseException
    task = config
    for key in _leaf_keys(task):
        try:
            OmegaConf.select(task, key, throw_on_missing=True, throw_on_resolution_failure=True)
        except OmegaConfBaseException as err:
            missing = "Missing mandatory value" in str(err) or "MissingMandatoryValue" in type(err).__name__
            value = "???" if missing else OmegaConf.select(task, key, throw_on_resolution_failure=False)
            allowed = "is mandatory: set it on the command line" if missing else \
                f"cannot be resolved ({_one_line(str(err))})"
            raise ConfigError(key, value, allowed) from None


def _leaf_keys(node: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(node, DictConfig):
        for key in node.keys():  # OmegaConf's public API: a missing or interpolated node is a leaf
            if OmegaConf.is_missing(node, key) or OmegaConf.is_interpolation(node, key):
                out.append(f"{prefix}{key}")
                continue
            child = node[key]
            if isinstance(child, DictConfig):
                out += _leaf_keys(child, f"{prefix}{key}.")
            else:
                out.append(f"{prefix}{key}")
    return out


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(
        ("full_key", "object_type", "reference_type"))]
    return "; ".join(lines)[:300]


def _not_a_sweep(master: DictConfig, overrides: Sequence[str]) -> None:
    """An experiment file run without -m: its grid keys not set on the command line would run one
    job that is no grid point; say that it is a sweep and how to run it."""
    params = OmegaConf.select(master, "hydra.sweeper.params", default=None)
    if not params:
        return
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    free = [str(k) for k in params.keys() if str(k) not in given]
    if not free:
        return  # one grid point, every grid key given (a W&B agent's run)
    experiment = OmegaConf.select(master, "hydra.runtime.choices.experiment", default=None)
    name = f"+experiment={experiment}" if experiment else "this config"
    raise ConfigError("experiment", experiment, f"is a sweep over {', '.join(free)}; run the whole study with "
                      f"`python -m activation_hash {' '.join(overrides)} -m`, or one grid point by setting "
                      f"{', '.join(f'{k}=VALUE' for k in free)} ({name})")


def _sweep_jobs(master: DictConfig, overrides: Sequence[str], loader: Any) -> list[list[str]]:
    """The job overrides of the sweep, as Hydra's BasicSweeper makes them (another sweeper: the
    master config alone)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    target = str(OmegaConf.select(master, "hydra.sweeper._target_", default=""))
    if not target.endswith("BasicSweeper"):
        return [list(overrides)]
    params = OmegaConf.select(master, "hydra.sweeper.params", default=None) or {}
    overrides = [o for o in overrides if not _is_hydra_override(o)]
    try:
        merged = sweep_overrides(params, overrides, OverridesParser.create(config_loader=loader))
        choices = [_choices(override) for override in merged.values()]
    except Exception as err:  # noqa: BLE001 - a grammar error Hydra would print as a block
        arguments = [f"{k}={v}" for k, v in params.items()] + overrides
        raise ConfigError("overrides", " ".join(arguments), _one_line(str(err))) from None
    return [list(job) for job in itertools.product(*choices)]


def sweep_overrides(params: Any, overrides: Sequence[str], parser: Any) -> dict[str, Any]:
    """A multirun as Hydra's basic sweeper reads it: the study's `hydra.sweeper.params`, then the
    command line's overrides, one parsed override per key (the last value of a key wins, so `seed=2`
    replaces the study's seeds)."""
    arguments = [f"{k}={v}" for k, v in params.items()] + list(overrides)
    return {override.get_key_element(): override for override in parser.parse_overrides(arguments)}


def _choices(override: Any) -> list[str]:
    """The `key=value` strings of one override: each value of a discrete sweep (`a,b`, `choice`,
    `range`), as the basic sweeper expands them, or the override itself."""
    key = override.get_key_element()
    if not override.is_sweep_override():
        return [f"{key}={override.get_value_element_as_str()}"]
    if not override.is_discrete_sweep():
        raise ValueError(f"{override.input_line}: the basic sweeper takes discrete sweeps only (a,b / choice / range)")
    return [f"{key}={value}" for value in override.sweep_string_iterator()]


def _is_hydra_override(override: str) -> bool:
    key = override.lstrip("+~").split("=", 1)[0]
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def _compose(make: Any, overrides: Sequence[str], loader: Any) -> DictConfig:
    """Run a Hydra composition; its errors rewritten as one ConfigError with the nearest key/option."""
    try:
        return make()
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - Hydra's composition and parse errors
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException
        if not isinstance(err, (HydraException, OmegaConfBaseException, ValueError)):
            raise
        raise hydra_error(err, overrides, loader) from None


def hydra_error(err: BaseException, overrides: Sequence[str], loader: Any = None) -> ConfigError:
    """Hydra's message for an override it refused, as `KEY=VALUE: what is allowed`."""
    message = str(err)
    cause = str(err.__cause__) if err.__cause__ else ""
    full = message + "\n" + cause
    given = {o.lstrip("+~").split("=", 1)[0]: o for o in overrides}

    def value_of(key: str) -> str:
        text = given.get(key, "")
        return text.split("=", 1)[1] if "=" in text else ""

    if m := re.search(r"Could not find '([^']+)'", full):
        path = m.group(1)
        group, _, option = path.rpartition("/")
        group = group or path
        options = _group_options(loader, group)
        near = difflib.get_close_matches(option, options, n=1, cutoff=0.4)
        key = group.replace("/", ".")
        return ConfigError(key, option, "allowed: " + ", ".join(options) +
                           (f"; did you mean {key}={near[0]}?" if near else ""))
    if m := re.search(r"Could not override '([^']+)'", full):
        key = m.group(1)
        return ConfigError(key, value_of(key), f"no such key{_nearest_key(key, loader)}; to add a new key use "
                                               f"+{key}={value_of(key)}")
    if m := re.search(r"Could not append to config. An item is already at '([^']+)'", full):
        key = m.group(1)
        return ConfigError(key, value_of(key), f"already exists: drop the +, i.e. {key}={value_of(key)}")
    if m := re.search(r"Could not delete from config. (?:The value of )?'?([\w.]+)'?", full):
        key = m.group(1)
        return ConfigError(key, value_of(key), "cannot be deleted: " + _one_line(message))
    if m := re.search(r"Ambiguous value for argument '([^']+)'", full):
        text = m.group(1)
        key, _, value = text.partition("=")
        return ConfigError(key.lstrip("+~"), value, "is a sweep (a list of values): run it with -m")
    if m := re.search(r"Error (?:parsing|when parsing) override '([^']+)'", full):
        text = m.group(1)
        key, _, value = text.partition("=")
        return ConfigError(key.lstrip("+~"), value, "cannot be parsed: " + _one_line(cause or message).split(
            "See https")[0].strip().rstrip(";"))
    if m := re.search(r"Key '([^']+)' is not in struct", full):
        key = m.group(1)
        return ConfigError(key, value_of(key), f"no such key{_nearest_key(key, loader)}")
    key = next(iter(given), "overrides")
    return ConfigError(key, value_of(key), _one_line(message))


def _group_options(loader: Any, group: str) -> list[str]:
    if loader is None:
        return []
    try:
        return sorted(loader.get_group_options(group))
    except Exception:  # noqa: BLE001
        return []


def _nearest_key(key: str, loader: Any) -> str:
    """'; did you mean KEY?' from the keys of the default config (and the group names)."""
    if loader is None:
        return ""
    from hydra.types import RunMode
    try:
        cfg = loader.load_configuration(CONFIG_NAME, [], run_mode=RunMode.RUN)
    except Exception:  # noqa: BLE001
        return ""
    with open_dict(cfg):
        cfg.pop("hydra", None)
    keys = _leaf_keys(cfg)
    keys += sorted({k.rsplit(".", 1)[0] for k in keys if "." in k})
    prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
    same_node = [k for k in keys if prefix and k.startswith(prefix) and "." not in k[len(prefix):]]
    near = difflib.get_close_matches(key, same_node or keys, n=1, cutoff=0.5)
    return f"; did you mean {near[0]}?" if near else ""
