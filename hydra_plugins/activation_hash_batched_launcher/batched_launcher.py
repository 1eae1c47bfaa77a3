"""BatchedLauncher (`hydra/launcher=batched`): groups a sweep's jobs whose configs differ only in
batchable keys (seed, model.width / model.widths, data.label_noise and the result-neutral keys)
and trains each group of batchable MLP runs as one BatchedMLP
(`activation_hash.batched.run_group.run_group`); every other job runs by itself through the app's
task function, exactly as under Hydra's basic launcher. Returns one JobReturn per job, in order.

    python -m activation_hash +experiment=model_size -m hydra/launcher=batched
    python -m activation_hash +experiment=model_size -m hydra/launcher=batched hydra.launcher.n_jobs=4

Every job's directory gets Hydra's `.hydra/` files and job log as usual (a group member's job is
set up by `run_job` with a task that only resolves its config; the group then trains). Why a job
is not batched is logged. With n_jobs > 1, groups and solo jobs run in that many worker processes
(loky, as the joblib launcher); unit i takes GPU i mod the GPU count, or its share of the CPUs.
With `hydra.launcher.submitit` set (hydra/launcher=batched_slurm, batched_local) every unit is a
submitit job instead, resubmitted when preempted or timed out: its finished members are skipped
and the unfinished ones train again from epoch 0 (a group keeps no checkpoint).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)


class _Deferred:
    """`torch`, imported on first use: Hydra's plugin discovery imports this module in every Hydra
    program of the environment, which must not pay for torch (or Lightning, scikit-learn) before a
    launch. tests/test_plugin_scan.py checks sys.modules after a discovery."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib
        return getattr(importlib.import_module(self._name), attr)


torch = _Deferred("torch")


def resolved_task_config(sweep_config: DictConfig) -> DictConfig:
    """The job's task config with every interpolation resolved, as the task would see it (its
    output directory set the way run_job sets it)."""
    config = copy.deepcopy(sweep_config)
    out = os.path.join(str(OmegaConf.select(config, "hydra.sweep.dir")),
                       str(OmegaConf.select(config, "hydra.sweep.subdir")))
    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = os.path.abspath(out)
    hydra_config = HydraConfig.instance()
    saved = hydra_config.cfg
    hydra_config.set_config(config)
    try:
        plain = OmegaConf.to_container(config, resolve=True)
    finally:
        hydra_config.cfg = saved
    plain.pop("hydra", None)
    return OmegaConf.create(plain)


def _resolve_task(cfg: DictConfig) -> tuple[DictConfig, list[str], dict[str, str]]:
    """The 'task' of a group member's run_job: its config, resolved while Hydra knows the job, the
    W&B tags a solo run would take from the job's overrides, and its config-group choices (meta.json)."""
    from activation_hash.runs.options import sweep_tags as _sweep_tags
    from activation_hash.runs.record import config_choices
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)), _sweep_tags(), config_choices()


def member_widths(cfg: DictConfig) -> tuple[int, ...]:
    """An MLP member's hidden widths (); other networks stack only with their own architecture."""
    from activation_hash.batched.run_group import MLP_TARGET
    from activation_hash.models.mlp import hidden_widths
    m = cfg.model
    if m.get("_target_") != MLP_TARGET:
        return ()
    return tuple(hidden_widths(m.depth, m.width, m.get("split_width", False), m.get("widths")))


def plan(tasks: Sequence[DictConfig | str], max_members: int | None = None, pad_widths: bool = True,
         ) -> tuple[list[list[int]], dict[int, str]]:
    """Units of work over job positions: groups (> 1 position, batched) and single jobs, ordered by
    their first job; and for each job run alone why it is not batched."""
    from activation_hash.batched.run_group import group_key, unbatchable_reason
    from activation_hash.schema import ConfigError
    from activation_hash.validate import check_config

    why: dict[int, str] = {}
    groups: dict[str, list[int]] = {}
    for pos, task in enumerate(tasks):
        if isinstance(task, str):  # why the launcher could not even read the job's config
            why[pos] = task
            groups[f"solo-{pos}"] = [pos]
            continue
        try:
            check_config(task)
            reason = unbatchable_reason(task)
        except (ConfigError, ValueError) as err:  # the solo run reports it in its usual way
            reason = f"config error: {err}"
        if reason is not None:
            why[pos] = reason
            groups[f"solo-{pos}"] = [pos]
            continue
        key = group_key(task) + ("" if pad_widths else f"|widths={member_widths(task)}")
        groups.setdefault(key, []).append(pos)
    return units_of(groups, max_members, why)


def units_of(groups: dict[str, list[int]], max_members: int | None, why: dict[int, str],
             ) -> tuple[list[list[int]], dict[int, str]]:
    """Groups of job positions cut into units of at most `max_members`, ordered by their first job;
    `why` gains the reason for each job left alone only because no other job matched it."""
    units: list[list[int]] = []
    for members in groups.values():
        size = max_members or len(members)
        units += [members[i:i + size] for i in range(0, len(members), size)]
    for unit in units:
        if len(unit) == 1 and unit[0] not in why:
            why[unit[0]] = "no other job of the sweep differs from it only in batchable keys"
    return sorted(units, key=lambda u: u[0]), why


def bad_jobs(tasks: Sequence[DictConfig | str], job_overrides: Sequence[Sequence[str]], first: int = 0) -> list[str]:
    """`KEY=VALUE: what is allowed [job #N (overrides)]` for every job of the sweep whose config is
    refused by activation_hash.validate.check_config (or does not resolve)."""
    from activation_hash.schema import ConfigError
    from activation_hash.validate import check_config
    bad = []
    for pos, task in enumerate(tasks):
        where = f"[job #{first + pos} ({' '.join(filter_overrides(job_overrides[pos]))})]"
        if isinstance(task, str):
            bad.append(f"config: {task} {where}")
            continue
        try:
            check_config(task)
        except ConfigError as err:
            bad.append(f"{err} {where}")
    return bad


def refuse_bad_jobs(tasks: Sequence[DictConfig | str], job_overrides: Sequence[Sequence[str]], first: int) -> None:
    """The whole sweep is refused before any unit runs: a line per bad job, exit status 2 (as
    `python -m activation_hash` does when it checks the sweep first); HYDRA_FULL_ERROR=1 raises."""
    import sys
    bad = bad_jobs(tasks, job_overrides, first)
    if not bad:
        return
    from activation_hash.validate import SweepError
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise SweepError(bad, len(tasks))
    for line in bad:
        print(f"error: {line}; none of the {len(tasks)} jobs was run", file=sys.stderr)
    raise SystemExit(2)


def unit_device(accelerator: str, devices: Any, unit: int, n_jobs: int, gpu_count: int | None = None,
                cpu_count: int | None = None):
    """(torch device, Placement) of work unit `unit` when `n_jobs` units run at once: on GPUs
    unit i takes GPU i mod the count (activation_hash.devices.assign_devices), else the CPU."""
    from activation_hash.devices import assign_devices, Placement
    gpu_count = torch.cuda.device_count() if gpu_count is None else gpu_count
    placement = assign_devices(accelerator, devices, unit, n_jobs, gpu_count=gpu_count, cpu_count=cpu_count)
    wants_gpu = accelerator in ("auto", "gpu", "cuda") and gpu_count > 0
    if not wants_gpu:
        return "cpu", Placement("cpu", 1, placement.threads)
    if isinstance(placement.devices, list) and placement.devices:
        index = placement.devices[0]
    elif isinstance(devices, list) and len(devices) == 1:
        index = int(devices[0])
    else:
        index = 0
    return f"cuda:{index}", Placement("gpu", [index], None)


def resolve_n_jobs(n_jobs: int | str, gpu_count: int | None = None) -> int:
    """hydra.launcher.n_jobs: an integer >= 1, or auto = one worker per visible GPU (1 without GPUs)."""
    from activation_hash.devices import jobs_at_once
    if str(n_jobs).lower() != "auto" and not (str(n_jobs).strip().isdigit() and int(n_jobs) >= 1):
        raise ValueError(f"hydra.launcher.n_jobs={n_jobs}: an integer >= 1, or auto (one per visible GPU)")
    return jobs_at_once(n_jobs, gpu_count)


def _run_unit(unit_index: int, unit: list[int], idxs: list[int], configs: list[DictConfig],
              hydra_context: HydraContext, task_function: TaskFunction,
              launcher_config: DictConfig, n_jobs: int, singleton_state: dict | None) -> list[JobReturn]:
    """Run one unit (a group or a single job); in a worker process when singleton_state is given."""
    if singleton_state is not None:
        setup_globals()
        Singleton.set_state(singleton_state)
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # as activation_hash.__main__ does
    hydra_logging, verbose = launcher_config.hydra.hydra_logging, launcher_config.hydra.verbose
    if len(unit) == 1:
        ret = run_job(hydra_context=hydra_context, task_function=task_function, config=configs[0],
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        configure_log(hydra_logging, verbose)
        return [ret]

    from activation_hash.batched.run_group import run_group
    prepared = []
    for config in configs:  # .hydra/, the job log and the output directory, as for every job
        prepared.append(run_job(hydra_context=hydra_context, task_function=_resolve_task, config=config,
                                job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
        configure_log(hydra_logging, verbose)
    cfgs, tags, choices = ([ret.return_value[k] for ret in prepared] for k in range(3))
    first = cfgs[0].trainer
    device, placement = unit_device(first.get("accelerator", "auto"), first.get("devices", 1), unit_index, n_jobs)
    log.info("batched group of %d jobs (#%s) on %s", len(unit), ", #".join(map(str, idxs)), device)
    try:
        results = run_group(cfgs, device=device, placement=placement, tags=tags, choices=choices)
    except Exception as err:  # noqa: BLE001 - the sweep reports it for every member, as a failed job
        log.error("batched group #%s failed: %s", ", #".join(map(str, idxs)), err)
        results = [err] * len(cfgs)
    for ret, cfg, result in zip(prepared, cfgs, results):
        if isinstance(result, BaseException):
            ret.status, ret.return_value = JobStatus.FAILED, result
        else:
            metric = cfg.get("optimized_metric")
            ret.status, ret.return_value = JobStatus.COMPLETED, result.get(metric) if metric else None
    return prepared


class _Unit:
    """One unit as a submitit job: a `Checkpointable` callable, so submitit resubmits it on
    preemption or timeout (its finished members are then skipped by their run directories)."""

    def __call__(self, *args: Any) -> list[JobReturn]:
        return _run_unit(*args)

    def checkpoint(self, *args: Any) -> Any:
        import submitit
        return submitit.helpers.DelayedSubmission(self, *args)


def _submitit_executor(params: dict[str, Any], sweep_dir: Path) -> Any:
    import submitit
    params = dict(params)
    cluster = params.pop("cluster", "local")
    if cluster not in ("local", "slurm", "debug"):
        raise ValueError(f"hydra.launcher.submitit.cluster={cluster}: allowed: local, slurm, debug")
    folder = params.pop("folder", str(sweep_dir / ".submitit" / "%j"))
    init = {f"{cluster}_max_num_timeout": params.pop("max_num_timeout")} if "max_num_timeout" in params else {}
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster, **init)
    executor.update_parameters(**params)
    return executor


class BatchedLauncher(Launcher):
    def __init__(self, max_members: int | None = None, pad_widths: str | bool = "auto", n_jobs: int | str = "auto",
                 submitit: Any = None) -> None:
        super().__init__()
        self.submitit = OmegaConf.to_container(submitit, resolve=True) if OmegaConf.is_config(submitit) \
            else (dict(submitit) if submitit else None)
        if max_members is not None and int(max_members) < 1:
            raise ValueError(f"hydra.launcher.max_members={max_members}: an integer >= 1 or null")
        if str(pad_widths).lower() not in ("auto", "true", "false"):
            raise ValueError(f"hydra.launcher.pad_widths={pad_widths}: auto, true or false")
        self.max_members, self.n_jobs = max_members, resolve_n_jobs(n_jobs)
        self.pad_widths = str(pad_widths).lower()
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs, tasks = [], []
        for i, overrides in enumerate(job_overrides):
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(config):
                config.hydra.job.id = initial_job_idx + i
                config.hydra.job.num = initial_job_idx + i
            configs.append(config)
            try:
                tasks.append(resolved_task_config(config))
            except Exception as err:  # noqa: BLE001 - the job then runs alone and reports it itself
                tasks.append(f"its config does not resolve here ({type(err).__name__}: {err})")
        refuse_bad_jobs(tasks, job_overrides, initial_job_idx)  # before grouping: a bad job trains nothing
        pad = self.pad_widths == "true" or (self.pad_widths == "auto" and torch.cuda.is_available())
        units, why = plan(tasks, self.max_members, pad)
        log.info("Launching %d jobs as %d units (%d batched groups)", len(configs), len(units),
                 sum(len(u) > 1 for u in units))
        for unit in units:
            idxs = [initial_job_idx + p for p in unit]
            for p, idx in zip(unit, idxs):
                note = f"batched with #{', #'.join(map(str, idxs))}" if len(unit) > 1 else f"alone: {why[p]}"
                log.info("\t#%d : %s (%s)", idx, " ".join(filter_overrides(job_overrides[p])), note)
        args = [(u, unit, [initial_job_idx + p for p in unit], [configs[p] for p in unit])
                for u, unit in enumerate(units)]
        if self.submitit is not None:
            executor = _submitit_executor(self.submitit, Path(str(self.config.hydra.sweep.dir)))
            state = Singleton.get_state()
            spread = len(args) if executor.cluster == "local" else 1  # on SLURM each job has its own GPUs
            jobs = [executor.submit(_Unit(), *a, self.hydra_context, self.task_function, self.config, spread, state)
                    for a in args]
            log.info("submitted %d units through submitit (%s); waiting for them", len(jobs), executor.cluster)
            outputs = [job.result() for job in jobs]
        elif self.n_jobs > 1 and len(units) > 1:
            from joblib import Parallel, delayed
            state = Singleton.get_state()
            outputs = Parallel(n_jobs=self.n_jobs, backend="loky")(
                delayed(_run_unit)(*a, self.hydra_context, self.task_function, self.config, self.n_jobs, state)
                for a in args)
        else:
            outputs = [_run_unit(*a, self.hydra_context, self.task_function, self.config, self.n_jobs, None)
                       for a in args]
        returns: list[JobReturn | None] = [None] * len(configs)
        for (_, unit, *_rest), rets in zip(args, outputs):
            for p, ret in zip(unit, rets):
                returns[p] = ret
        assert all(r is not None for r in returns)
        return returns  # type: ignore[return-value]
