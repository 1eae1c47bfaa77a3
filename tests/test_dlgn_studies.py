"""model=dlgn in the factor studies: model_size and training_time take it, dlgn_vs_relu sweeps
the ReLU MLP, DLGN and DLGN-SF at matched unit counts, and every job of its smoke grid composes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from activation_hash.run import run
from activation_hash.wandb_sweeps import hydra_grid
from tests.conftest import compose_config

SHRINK = ["data=synthetic", "data.train_size=200", "data.test_size=100", "trainer.max_epochs=2",
          "codes.epochs=[0,2]", "model.width=6", "progress_bar=none", "codes.verbose=false"]


@pytest.mark.parametrize("experiment, variant", [("model_size", "dlgn"), ("training_time", "dlgn"),
                                                 ("training_time", "dlgn_sf")])
def test_factor_studies_train_a_dlgn(experiment, variant, tmp_path: Path) -> None:
    cfg = compose_config([f"+experiment={experiment}", "model=dlgn", f"model.variant={variant}", *SHRINK],
                         output_dir=tmp_path / "run")
    assert cfg.study == experiment and cfg.model._target_.endswith("DLGN") and cfg.model.depth == 1
    result = run(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "encoding.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["split"]) for r in rows] == [(0, "train"), (0, "test"), (2, "train"), (2, "test")]
    assert rows[-1]["n_bits"] == 6 and 0 <= result["test/redundancy"] <= 1
    # the study's own recipe applies (model_size: the authors' batch norm, folded into the half-spaces)
    assert cfg.model.batch_norm == (experiment == "model_size")
    assert 0 <= result["test/gate_abs_cos_mean_l1"] <= 1
    assert sorted(p.name for p in (tmp_path / "run" / "halfspaces").glob("*.npz")) == ["epoch=0000.npz",
                                                                                         "epoch=0002.npz"]


def test_dlgn_vs_relu_smoke_grid_is_small_and_every_job_composes() -> None:
    grid = hydra_grid("dlgn_vs_relu", "smoke")
    assert grid["model"] == ["mlp", "dlgn", "dlgn_frozen", "deep_linear", "dlgn_sf"] and len(grid["seed"]) >= 2
    jobs = list(itertools.product(*([f"{k}={v}" for v in values] for k, values in grid.items())))
    assert len(jobs) <= 24
    units = {}
    for job in jobs:
        cfg = compose_config(["+experiment=dlgn_vs_relu", *job])
        assert cfg.study == "dlgn_vs_relu" and cfg.trainer.max_epochs <= 5 and cfg.data.train_size <= 5000
        assert list(cfg.codes.epochs)[0] == 0 and max(cfg.codes.epochs) == cfg.trainer.max_epochs
        name = cfg.model._target_.rsplit(".", 1)[1] + ("_" + cfg.model.variant if "variant" in cfg.model else "")
        units.setdefault((cfg.model.width, cfg.seed), set()).add((name, cfg.model.depth * cfg.model.width))
        assert cfg.model.get("freeze_gates", False) == ("model=dlgn_frozen" in job)
    # matched unit counts: at every width the three models have the same depth x width code units
    for members in units.values():
        assert {n for n, _ in members} == {"MLP", "DLGN_dlgn", "DLGN_dlgn_sf", "DeepLinear"}
        assert len({u for _, u in members}) == 1
    paper = hydra_grid("dlgn_vs_relu", "paper")
    assert paper["data"] == ["mnist", "fashion_mnist"] and set(grid["model.width"]) <= set(paper["model.width"])
