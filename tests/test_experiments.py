"""Every study composes in both profiles and runs one tiny job; a real local parallel sweep
runs, resumes, and feeds the collector and the figures; W&B sweep files match the grids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from activation_hash.devices import assign_devices
from activation_hash.run import run
from activation_hash.wandb_sweeps import experiment_names, hydra_grid, main as sweeps_main
from tests.conftest import REPO, compose_config

EXPERIMENTS = experiment_names()
STUDIES = ["model_size", "training_time", "sample_size", "regularization", "label_noise", "random_data",
           "layerwise", "diameter", "cnn_zoo"]  # the paper's studies; the suite runs every file (EXPERIMENTS)


def test_every_study_of_the_issue_has_an_experiment() -> None:
    assert set(STUDIES) <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_smoke_grid_is_a_reduction_of_the_paper_grid(name: str) -> None:
    paper, smoke = hydra_grid(name, "paper"), hydra_grid(name, "smoke")
    assert paper.keys() == smoke.keys() and "seed" in paper
    n_paper = n_smoke = 1
    for key in paper:
        n_paper, n_smoke = n_paper * len(paper[key]), n_smoke * len(smoke[key])
    assert n_smoke <= n_paper and len(smoke["seed"]) >= 2  # >= 2 seeds so figures show a spread


def _first_job(name: str) -> list[str]:
    return [f"{key}={values[0]}" for key, values in hydra_grid(name, "smoke").items()]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs_one_tiny_job(name: str, tmp_path: Path) -> None:
    job = _first_job(name)
    shrink = ["data=synthetic", "trainer.max_epochs=1", "codes.epochs=[0,1]", "data.test_size=null",
              "progress_bar=none", "codes.verbose=false"]
    if not any(o.startswith("data.train_size=") for o in job):
        shrink.append("data.train_size=null")
    cfg = compose_config([f"+experiment={name}", *job, *shrink], output_dir=tmp_path / "run")
    assert cfg.study and cfg.data.name == "synthetic"
    result = run(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "encoding.jsonl").read_text().splitlines()]
    names = list(cfg.codes.selections or ["all"])            # a row pair per capture and layer selection
    assert [r["epoch"] for r in rows] == [0] * 2 * len(names) + [1] * 2 * len(names)
    assert list(dict.fromkeys(r["selection"] for r in rows)) == names
    assert 0 <= result["test/redundancy"] <= 1 and result["epochs_trained"] == 1
    if cfg.metrics.diameter.enabled:
        assert result["test/diameter_mean"] > 0 and result["test/random_diameter_mean"] > 0


def test_device_per_job_is_deterministic() -> None:
    gpus = [assign_devices("auto", 1, job, 4, gpu_count=2, cpu_count=8).devices for job in range(4)]
    assert gpus == [[0], [1], [0], [1]]
    cpu = assign_devices("auto", 1, 3, 4, gpu_count=0, cpu_count=8)
    assert (cpu.accelerator, cpu.devices, cpu.threads) == ("cpu", 1, 2)
    single = assign_devices("gpu", [1, 2], 5, 1, gpu_count=4, cpu_count=8)
    assert (single.accelerator, single.devices, single.threads) == ("gpu", [1, 2], None)


def _sweep(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACTIVATION_HASH_OUTPUT": str(tmp_path / "outputs")}
    args = ["+experiment=model_size", "-m", "data=synthetic", "model.width=3,32", "seed=0,1",
            "trainer.max_epochs=2", "hydra/launcher=local", "hydra.launcher.n_jobs=2", "progress_bar=none", *extra]
    return subprocess.run([sys.executable, "-m", "activation_hash", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def test_local_parallel_sweep_resumes_and_feeds_the_report(tmp_path: Path) -> None:
    first = _sweep(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    study = tmp_path / "outputs" / "studies" / "model_size" / "smoke"
    runs = sorted(p.parent for p in study.glob("*/result.json"))
    assert sorted(r.name for r in runs) == sorted(f"data=synthetic,model.width={w},seed={s},trainer.max_epochs=2"
                                                  for w in (3, 32) for s in (0, 1))
    placements = [json.loads((r / "meta.json").read_text())["placement"] for r in runs]
    assert all(p["accelerator"] == "cpu" and p["threads"] >= 1 for p in placements)

    stamps = {r: (r / "result.json").stat().st_mtime_ns for r in runs}
    again = _sweep(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {r: (r / "result.json").stat().st_mtime_ns for r in runs} == stamps, "finished runs must be skipped"

    report = tmp_path / "report"
    out = subprocess.run([sys.executable, "-m", "activation_hash.analysis", "report", str(study), "--out", str(report)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    table = pd.read_csv(report / "table.csv")
    assert len(table) == 4 and set(table["model.width"]) == {3, 32} and set(table["seed"]) == {0, 1}
    assert (table["study"] == "model_size").all() and table["finished"].all()
    assert "fig2a_model_size_mnist" not in os.listdir(report)  # filtered on data.name=mnist: skipped
    assert (report / "report.md").read_text().count("model_size") >= 1


def test_wandb_sweep_files_match_the_hydra_grids() -> None:
    assert sweeps_main(["--check", "--out", str(REPO / "sweeps")]) == 0


@pytest.mark.parametrize("launcher, target", [("local", "hydra_plugins.hydra_joblib_launcher"),
                                              ("slurm", "hydra_plugins.hydra_submitit_launcher")])
def test_launcher_configs_compose(launcher: str, target: str) -> None:
    from hydra import compose, initialize_config_module
    with initialize_config_module("activation_hash.conf", version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=model_size", f"hydra/launcher={launcher}"],
                      return_hydra_config=True)
    assert cfg.hydra.launcher._target_.startswith(target)
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.timeout_min > 0


# Model counts the paper states (PAPER.md); the regularization study's 345 = 3 regularizers x 23
# widths x 5 seeds, its unregularized reference arm (rerun here with the study's own recipe) aside.
PAPER_COUNTS = {"model_size": 115, "model_size_cifar10": 200, "sample_size": 210, "sample_size_cifar10": 480}


@pytest.mark.parametrize("name, count", sorted(PAPER_COUNTS.items()))
def test_paper_grids_have_the_papers_model_counts(name: str, count: int) -> None:
    grid = hydra_grid(name, "paper")
    assert np.prod([len(v) for v in grid.values()]) == count


def test_paper_grids_match_the_papers_lists() -> None:
    widths = [3, 7, 10, 15, 20, 23, 27, 30, 33, 37, 40, 43, 47, 50, 53, 57, 60, 65, 70, 75, 80, 90, 100]
    regularization = hydra_grid("regularization", "paper")
    assert regularization["model.width"] == widths and len(regularization["seed"]) == 5
    assert [r for r in regularization["regularizer"] if r != "none"] == ["batch_norm", "gradient_clip", "weight_decay"]
    assert hydra_grid("diameter", "paper")["model.width"] == [*range(5, 81, 5), 90, 100]
    assert hydra_grid("sample_size", "paper")["data.train_size"] == [
        10, 30, 60, 100, 300, 600, 1000, 2000, 3000, 6000, 10000, 20000, 30000, 60000]
    appendix = [20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 40000]
    assert set(appendix) < set(hydra_grid("sample_size_cifar10", "paper")["data.train_size"])


@pytest.mark.parametrize("name", ["sample_size", "sample_size_cifar10"])
def test_sample_size_studies_train_a_fixed_number_of_steps(name: str, tmp_path: Path) -> None:
    cfg = compose_config([f"+experiment={name}", "data=synthetic", "data.train_size=200", "model.width=8",
                          "trainer.max_steps=7", "data.batch_size=64", "progress_bar=none", "codes.verbose=false"],
                         output_dir=tmp_path / "run")
    assert cfg.trainer.max_steps == 7 and cfg.trainer.max_epochs >= 10**6
    run(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "encoding.jsonl").read_text().splitlines()]
    # 200 samples / 64 = 4 steps per epoch: the 7th step falls in the 2nd epoch, which labels the
    # capture; `step` is the exact count
    assert [(r["epoch"], r["step"], r["reason"]) for r in rows] == [(2, 7, "stopped")] * 2


def test_layerwise_trains_one_network_per_seed_and_scores_its_twelve_selections() -> None:
    """Fig. 5's selections are views of one network's codes: the grid sweeps seeds only."""
    for profile in ("paper", "smoke"):
        assert list(hydra_grid("layerwise", profile)) == ["seed"]
    cfg = compose_config(["+experiment=layerwise"])
    assert list(cfg.codes.selections) == ["1", "2", "3", "4", "5", "..2", "..3", "..4", "..5", "2..", "3..", "4.."]
    assert cfg.codes.layers == "all"
