"""Thread plans never oversubscribe: affinity, cgroup quota, OMP_NUM_THREADS and the jobs a
launcher runs at once (mocked), and what set_threads applies and records."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from activation_hash import devices
from activation_hash.devices import Placement, assign_devices, cpu_quota, set_threads, thread_plan


def test_cgroup_quota_read_v2_and_v1(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cpu_quota(tmp_path) == 3.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    assert cpu_quota(tmp_path) is None
    assert cpu_quota(tmp_path / "absent") is None


@pytest.mark.parametrize("affinity,quota,env,jobs,expected", [
    (16, None, {}, 1, 16),                      # the whole affinity mask
    (16, 4.0, {}, 1, 4),                        # a cgroup quota of 4 CPUs
    (16, 2.5, {}, 1, 3),                        # a fractional quota rounds up
    (16, None, {}, 4, 4),                       # four jobs at once share 16 CPUs
    (2, None, {}, 4, 1),                        # never below 1
    (16, 8.0, {}, 3, 2),                        # quota then jobs: 8 // 3
    (16, None, {"OMP_NUM_THREADS": "1"}, 1, 1),  # an explicit OMP_NUM_THREADS caps it
    (16, None, {"OMP_NUM_THREADS": "x"}, 2, 8),  # a malformed one is ignored
])
def test_thread_plan(affinity, quota, env, jobs, expected) -> None:
    plan = thread_plan(jobs, affinity=affinity, quota=quota, environ=env)
    assert plan.threads == expected
    assert f"// {jobs} job(s)" in plan.describe()


def test_thread_plan_reads_affinity_and_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    monkeypatch.setattr(devices, "cpu_quota", lambda root=devices.CGROUP: 4.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert thread_plan(2).threads == 2 and thread_plan(1).affinity == 6


def test_parallel_jobs_split_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cpu_quota", lambda root=devices.CGROUP: 4.0)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    gpu = assign_devices("auto", 1, 1, 2, gpu_count=2)
    assert gpu.devices == [1] and gpu.threads == 2 and "quota 4" in gpu.thread_source
    assert assign_devices("auto", 1, 0, 2, gpu_count=0).threads == 2


def test_set_threads_applies_and_records(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from threadpoolctl import threadpool_info
    monkeypatch.setattr(devices, "thread_plan", lambda jobs=1, **kw: devices.ThreadPlan(1, 2, None, None, jobs))
    before = torch.get_num_threads()
    saved = {k: os.environ.get(k) for k in devices.THREAD_ENV}
    try:
        placed = set_threads(Placement("cpu", 1, None))
        assert placed.threads == 1 and placed.thread_source.startswith("1 = min(affinity 2")
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    finally:
        torch.set_num_threads(before)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
