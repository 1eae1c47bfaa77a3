"""Which device each job of a local parallel sweep uses.

Lightning picks the accelerator; what it can't know is that job 3 of a sweep running several
jobs at once on one machine should take GPU 3 (mod the GPU count) instead of every job piling
onto GPU 0, and that CPU jobs should split the cores rather than each use all of them.
`assign_devices` decides both from the job number alone, so a rerun puts every job on the
same device. A sweep on a cluster (submitit) gets one allocation per job and is left alone.

Threads: `thread_plan(jobs)` is what one job may use without oversubscribing the machine: the
CPUs of the process's affinity mask (os.sched_getaffinity), capped by its cgroup CPU quota
(cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us / cpu.cfs_period_us`, rounded up) and by an
explicit OMP_NUM_THREADS, divided among the jobs a launcher runs at once (`jobs_at_once`),
at least 1. `apply_threads(n)` sets it once, at the start of a run, for torch (intra-op),
every BLAS/OpenMP pool already loaded (threadpoolctl: scikit-learn, numpy, faiss) and, through
OMP_NUM_THREADS / MKL_NUM_THREADS / OPENBLAS_NUM_THREADS, the pools loaded later. On a loaded
2-core machine a run with threads unset took 114 s against 10 s with one thread (issue 23).
Torch is imported inside the functions that need it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CGROUP = Path("/sys/fs/cgroup")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Placement:
    accelerator: str
    devices: int | list[int] | str
    threads: int | None   # compute threads for this job (thread_plan); None = the libraries' default
    thread_source: str = ""  # how `threads` was chosen (recorded in meta.json)


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_quota(root: Path = CGROUP) -> float | None:
    """CPUs the process's cgroup may use (quota / period), or None when unlimited or unknown."""
    try:
        text = (root / "cpu.max").read_text().split()  # cgroup v2: "max 100000" or "150000 100000"
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        if text:
            return None
    except (OSError, ValueError, IndexError):
        pass
    try:  # cgroup v1
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class ThreadPlan:
    threads: int            # per job
    affinity: int           # CPUs in the affinity mask
    quota: float | None     # cgroup CPU quota, None = unlimited
    env: int | None         # OMP_NUM_THREADS set by the user, if any
    jobs: int               # jobs run at once

    def describe(self) -> str:
        quota = "none" if self.quota is None else f"{self.quota:g}"
        env = f", OMP_NUM_THREADS={self.env}" if self.env is not None else ""
        return (f"{self.threads} = min(affinity {self.affinity}, cgroup quota {quota}{env}) "
                f"// {self.jobs} job(s) at once")


def thread_plan(jobs: int = 1, *, affinity: int | None = None, quota: float | None | str = "read",
                environ: dict[str, str] | None = None) -> ThreadPlan:
    """Threads per job (module docstring); the arguments override what is read from the system."""
    affinity = available_cpus() if affinity is None else affinity
    quota = cpu_quota() if quota == "read" else quota
    environ = os.environ if environ is None else environ
    try:
        env = int(environ["OMP_NUM_THREADS"]) if environ.get("OMP_NUM_THREADS") else None
    except ValueError:
        env = None
    usable = affinity
    if quota is not None:
        usable = min(usable, max(1, math.ceil(quota)))
    if env is not None and env > 0:
        usable = min(usable, env)
    jobs = max(1, int(jobs))
    return ThreadPlan(max(1, usable // jobs), affinity, quota, env, jobs)


def set_threads(placement: Placement) -> Placement:
    """Apply a placement's threads once, at the start of a run (None: `thread_plan(1)`), and
    return the placement with the number chosen and why, for meta.json."""
    from dataclasses import replace
    if placement.threads is None:
        plan = thread_plan(1)
        placement = replace(placement, threads=plan.threads, thread_source=plan.describe())
    apply_threads(placement.threads)
    return placement


def apply_threads(n: int | None) -> dict[str, Any]:
    """Set torch, BLAS and OpenMP threads to ``n`` for the rest of the process (None: the plan
    of one job, ``thread_plan(1)``); returns what was set."""
    import torch
    from threadpoolctl import threadpool_limits
    n = thread_plan(1).threads if n is None else int(n)
    for key in THREAD_ENV:
        os.environ[key] = str(n)
    torch.set_num_threads(n)
    threadpool_limits(limits=n)  # not used as a context manager: the limit stays
    return {"threads": n, "torch": torch.get_num_threads()}


def jobs_at_once(n_jobs: object, gpu_count: int | None = None) -> int:
    """How many jobs a launcher's `n_jobs` runs at once: auto = one per visible GPU (1 without
    GPUs, the batched launcher's default), -1 = one per available CPU (joblib's), else the integer."""
    import torch
    if str(n_jobs).lower() == "auto":
        return max(1, torch.cuda.device_count() if gpu_count is None else gpu_count)
    return available_cpus() if int(n_jobs) < 0 else int(n_jobs)


def assign_devices(accelerator: str, devices: object, job_num: int, parallel_jobs: int,
                   gpu_count: int | None = None, cpu_count: int | None = None) -> Placement:
    """Placement of job `job_num` when `parallel_jobs` jobs share this machine; with several jobs
    its threads are `thread_plan(parallel_jobs)`, GPU jobs included (their data loading and
    metrics run on the CPU too); ``cpu_count`` replaces what is read from the system (affinity,
    quota, OMP_NUM_THREADS). A single job gets None here: `set_threads` fills in its plan."""
    import torch
    if parallel_jobs <= 1:
        return Placement(accelerator, devices, None)
    plan = (thread_plan(parallel_jobs) if cpu_count is None else
            thread_plan(parallel_jobs, affinity=cpu_count, quota=None, environ={}))
    gpu_count = torch.cuda.device_count() if gpu_count is None else gpu_count
    if gpu_count > 0 and accelerator in ("auto", "gpu", "cuda"):
        return Placement("gpu", [job_num % gpu_count], plan.threads, plan.describe())
    return Placement("cpu", 1, plan.threads, plan.describe())


def metrics_device(requested: object, module_device: Any) -> Any:
    """The torch device for the metrics' K-NN GEMM, or None for faiss on the CPU.

    `metrics.device`: auto = the trainer's device (a GPU run scores its codes on that GPU, a CPU
    run uses faiss), cpu, or a torch device string such as cuda:1."""
    if requested in (None, "auto"):
        return module_device if module_device.type != "cpu" else None
    device = check_metrics_device(requested)
    return None if device.type == "cpu" else device


def device_memory(device: Any) -> int | None:
    """Total memory of a CUDA `device` in bytes (torch's public device properties); None for the
    CPU (None) or any other device."""
    if device is None or getattr(device, "type", str(device)) != "cuda":
        return None
    import torch
    return int(torch.cuda.get_device_properties(device).total_memory)


def check_metrics_device(requested: object) -> Any:
    """Fail before training on a metrics.device this machine cannot use."""
    import torch
    try:
        device = torch.device(str(requested))
    except (RuntimeError, TypeError):
        raise ValueError(f"metrics.device={requested!r}: allowed auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"metrics.device={requested!r}: no CUDA device on this machine; use auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"metrics.device={requested!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"metrics.device={requested!r}: allowed auto, cpu, cuda, cuda:N")
    return device
