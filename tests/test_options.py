"""Options users reach for: experiment=NAME without +, hparams_search=optuna, logger=tensorboard |
mlflow | many, callbacks=model_checkpoint with either resume, a model that brings its metrics."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from activation_hash.__main__ import append_optional_groups
from activation_hash.run import run
from tests.conftest import REPO, TINY, compose_config


def _cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HOME=str(cwd), ACTIVATION_HASH_OUTPUT=str(cwd / "outputs"))
    return subprocess.run([sys.executable, "-m", "activation_hash", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_experiment_and_hparams_search_work_with_and_without_plus() -> None:
    argv = ["prog", "experiment=sample_size", "+experiment=model_size", "hparams_search=optuna", "model.width=3",
            "data.experiment_x=1"]
    assert append_optional_groups(argv) == ["prog", "+experiment=sample_size", "+experiment=model_size",
                                            "+hparams_search=optuna", "model.width=3", "data.experiment_x=1"]


def test_experiment_without_plus_composes_the_study(tmp_path: Path) -> None:
    out = _cli("experiment=sample_size", "--cfg", "job", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert yaml.safe_load(out.stdout)["study"] == "sample_size"


def test_hparams_search_optuna_runs_trials_and_reports_the_best(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    out = _cli("hparams_search=optuna", "-m", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2",
               *TINY, "codes.epochs=[2]", f"hydra.sweep.dir={tmp_path / 'search'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    best = yaml.safe_load((tmp_path / "search" / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"optimizer.lr", "data.batch_size"}  # model.width is fixed by TINY
    results = [json.loads(p.read_text()) for p in (tmp_path / "search").glob("*/result.json")]
    assert len(results) == 2 and best["best_value"] == max(r["test/knn_acc"] for r in results)


def test_tensorboard_mlflow_and_many_loggers_get_config_and_metrics(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    out = _cli("logger=many", *TINY, "model.width=12", "seed=5", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "run"
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert yaml.safe_load((run_dir / "tensorboard" / "hparams.yaml").read_text())["model"]["width"] == 12
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    db = sqlite3.connect(tmp_path / "outputs" / "mlflow.db")
    params = dict(db.execute("select key, value from params").fetchall())
    metrics = {k for (k,) in db.execute("select distinct key from metrics").fetchall()}
    assert params["model/width"] == "12" and params["seed"] == "5"
    assert {"test/knn_acc", "test/redundancy"} <= metrics


@pytest.mark.parametrize("resume", ["auto", "never"])
def test_model_checkpoint_callback_with_either_resume(tiny_cfg, resume: str) -> None:
    cfg = tiny_cfg("callbacks=model_checkpoint", f"resume={resume}", "codes.save=false")
    run(cfg)
    out = Path(cfg.output_dir)
    assert len(list((out / "checkpoints" / "best").glob("epoch=*.ckpt"))) == 1  # save_top_k: 1
    assert (out / "checkpoints" / "last.ckpt").is_file() == (resume == "auto")


def test_binary_encoding_model_brings_its_metric_family(tmp_path: Path) -> None:
    default = compose_config([]).metrics.which
    cfg = compose_config(["model=binary_encoding"])
    assert list(cfg.metrics.which) == [*default, "binary_encoding"]  # the default families + its own
    assert compose_config(["model=binary_encoding", "metrics.which=[knn]"]).metrics.which == ["knn"]
    tiny = [o for o in TINY if not o.startswith("model.")]
    cfg = compose_config([*tiny, "model=binary_encoding", "model.backbone.width=16", "codes.save=false", "trainer.max_epochs=1",
                          "codes.epochs=[1]"], output_dir=tmp_path / "run")
    run(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "encoding.jsonl").read_text().splitlines()]
    assert any("test/binarity_separation" in r for r in rows)
