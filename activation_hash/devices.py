"""Which device each job of a local parallel sweep uses.

Lightning picks the accelerator; what it can't know is that job 3 of a sweep running several
jobs at once on one machine should take GPU 3 (mod the GPU count) instead of every job piling
onto GPU 0, and that CPU jobs should split the cores rather than each use all of them.
`assign_devices` decides both from the job number alone, so a rerun puts every job on the
same device. A sweep on a cluster (submitit) gets one allocation per job and is left alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Placement:
    accelerator: str
    devices: int | list[int] | str
    threads: int | None   # torch intra-op threads for this job; None = torch's default


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def jobs_at_once(n_jobs: object, gpu_count: int | None = None) -> int:
    """How many jobs a launcher's `n_jobs` runs at once: auto = one per visible GPU (1 without
    GPUs, the batched launcher's default), -1 = one per available CPU (joblib's), else the integer."""
    if str(n_jobs).lower() == "auto":
        return max(1, torch.cuda.device_count() if gpu_count is None else gpu_count)
    return available_cpus() if int(n_jobs) < 0 else int(n_jobs)


def assign_devices(accelerator: str, devices: object, job_num: int, parallel_jobs: int,
                   gpu_count: int | None = None, cpu_count: int | None = None) -> Placement:
    """Placement of job `job_num` when `parallel_jobs` jobs share this machine."""
    if parallel_jobs <= 1:
        return Placement(accelerator, devices, None)
    gpu_count = torch.cuda.device_count() if gpu_count is None else gpu_count
    cpu_count = available_cpus() if cpu_count is None else cpu_count
    if gpu_count > 0 and accelerator in ("auto", "gpu", "cuda"):
        return Placement("gpu", [job_num % gpu_count], None)
    return Placement("cpu", 1, max(1, cpu_count // parallel_jobs))


def metrics_device(requested: object, module_device: torch.device) -> torch.device | None:
    """The torch device for the metrics' K-NN GEMM, or None for faiss on the CPU.

    `metrics.device`: auto = the trainer's device (a GPU run scores its codes on that GPU, a CPU
    run uses faiss), cpu, or a torch device string such as cuda:1."""
    if requested in (None, "auto"):
        return module_device if module_device.type != "cpu" else None
    device = check_metrics_device(requested)
    return None if device.type == "cpu" else device


def check_metrics_device(requested: object) -> torch.device:
    """Fail before training on a metrics.device this machine cannot use."""
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
