"""The SLURM launcher's path, run for real through submitit's local executor
(`hydra/launcher=slurm_local`): every job is pickled and run in its own process; a job preempted
with submitit's signal requeues itself and resumes from its last epoch, ending as an
uninterrupted job of the same config.

    python -m pytest tests/test_submitit.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO

TIMING = ("capture_seconds", "train_seconds", "run_dir")


def _rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run_dir / "encoding.jsonl").read_text().splitlines()]


# three job processes start (torch, Lightning): 25 s on an idle 2-core CPU, 60 s loaded; in the default
# run on purpose: it is the only test of the cluster path
def test_a_sweep_through_submitit_requeues_a_preempted_job_which_resumes(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    env = {**os.environ, "ACTIVATION_HASH_OUTPUT": str(tmp_path / "outputs"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    # job 0 is preempted at the start of epoch 2 (after epoch 1's checkpoint); job 1 never is
    args = ["-m", "hydra/launcher=slurm_local", f"hydra.sweep.dir={sweep}", "trainer.max_epochs=2",
            "codes.epochs=[0,1,2]", "data.train_size=300", "data.test_size=200", "model.width=16",
            "scheduler=step", "scheduler.step_size=1", "progress_bar=none", "codes.verbose=false",
            "+callbacks.preempt._target_=tests.preempt.PreemptAt", "+callbacks.preempt.epoch=1,1000"]
    out = subprocess.run([sys.executable, "-m", "activation_hash", *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    preempted, straight = (next(sweep.glob(f"{n}_*")) for n in (0, 1))
    for run_dir in (preempted, straight):
        assert (run_dir / "result.json").is_file()
        assert sorted({r["epoch"] for r in _rows(run_dir)}) == [0, 1, 2]
        assert OmegaConf.load(run_dir / "config.yaml").trainer.max_epochs == 2
    job_logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.*"))
    assert "this job is preempted" in job_logs and "Requeued job" in job_logs
    assert "resuming from epoch 1 (checkpoints/last.ckpt)" in (preempted / "activation_hash.log").read_text()
    assert [r["epoch"] for r in json.loads((preempted / "meta.json").read_text())["resumed"]] == [1]
    assert "resumed" not in json.loads((straight / "meta.json").read_text())
    # the preempted job's results equal the uninterrupted one's (the callback changes nothing else)
    assert _rows(preempted) == _rows(straight)
    assert (preempted / "metrics.csv").read_text() == (straight / "metrics.csv").read_text()
    result = [{k: v for k, v in json.loads((d / "result.json").read_text()).items() if k not in TIMING}
              for d in (preempted, straight)]
    assert result[0] == result[1]


def test_the_slurm_launcher_requeues_timeouts_and_lightning_leaves_requeueing_to_submitit(monkeypatch) -> None:
    from hydra import compose, initialize_config_module
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    from activation_hash.run import _cluster_plugins
    with initialize_config_module("activation_hash.conf", version_base="1.3"):
        slurm = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True).hydra.launcher
        local = compose("config", overrides=["hydra/launcher=slurm_local"], return_hydra_config=True).hydra.launcher
    assert slurm.max_num_timeout >= 1 and slurm.signal_delay_s > 0
    assert local._target_.endswith("LocalLauncher") and slurm._target_.endswith("SlurmLauncher")
    assert _cluster_plugins() == {}  # not on SLURM: Lightning's defaults
    for key, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "activation_hash", "SUBMITIT_EXECUTOR": "slurm"}.items():
        monkeypatch.setenv(key, value)
    (plugin,) = _cluster_plugins()["plugins"]
    assert isinstance(plugin, SLURMEnvironment) and not plugin.auto_requeue
