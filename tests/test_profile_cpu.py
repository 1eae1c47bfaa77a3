"""profile=cpu: a grid for every MNIST study, between smoke and paper, that decides every MNIST claim."""

from __future__ import annotations

import itertools
import math

import pytest
import yaml

from activation_hash.analysis.claims import load_claims
from activation_hash.wandb_sweeps import hydra_grid
from tests.conftest import REPO, compose_config

CPU_STUDIES = ["model_size", "training_time", "random_data", "diameter", "sample_size", "regularization",
               "label_noise", "dlgn_vs_relu", "binary_encoding"]


def _jobs(grid: dict) -> int:
    return math.prod(len(v) for v in grid.values())


@pytest.mark.parametrize("name", CPU_STUDIES)
def test_cpu_grid_sits_between_smoke_and_paper(name: str) -> None:
    cpu, paper = hydra_grid(name, "cpu"), hydra_grid(name, "paper")
    assert cpu.keys() == paper.keys() and len(cpu["seed"]) >= 3 and _jobs(cpu) <= _jobs(paper)
    first = [f"{k}={v[0]}" for k, v in cpu.items()]
    cfg = compose_config([f"+experiment={name}", "profile=cpu", *first])
    assert cfg.profile.name == "cpu" and cfg.data.name == "mnist"
    assert cfg.data.train_size in (None, 10000) or "data.train_size" in cpu  # full MNIST (binary_encoding: its subset)
    steps = cfg.trainer.get("max_steps", -1)
    assert 0 < steps <= 3750 if steps and steps > 0 else cfg.trainer.max_epochs <= 30


def test_every_mnist_claim_is_decided_by_a_cpu_study() -> None:
    studies = {yaml.safe_load((REPO / "conf" / "experiment" / f"{n}.yaml").read_text())["study"] for n in CPU_STUDIES}
    for claim in load_claims():
        if claim.data == "mnist" and not claim.command:
            assert claim.study in studies, claim.id
            assert "profile=cpu" in claim.run_command()


def test_cpu_profile_job_count() -> None:
    total = sum(_jobs(hydra_grid(n, "cpu")) for n in CPU_STUDIES)
    assert 150 <= total <= 250  # the estimate in docs/reproduction.md is made for this many runs
