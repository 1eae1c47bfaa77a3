"""Run directories: one result-neutral key list everywhere, one process per directory, and a
rerun after a config change starts from an empty directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from activation_hash.analysis.select import setting_columns
from activation_hash.rundir import NOT_RESULT_KEYS, RUN_DIR_EXCLUDED, is_neutral
from activation_hash.run import run
from tests.conftest import REPO


def test_hydra_run_dir_names_exclude_exactly_the_neutral_keys() -> None:
    study = OmegaConf.load(REPO / "conf" / "hydra" / "study.yaml")
    default = OmegaConf.load(REPO / "conf" / "hydra" / "default.yaml")
    assert list(study.job.config.override_dirname.exclude_keys) == list(RUN_DIR_EXCLUDED)
    assert list(default.job.config.override_dirname.exclude_keys) == [
        k for k in RUN_DIR_EXCLUDED if k not in ("experiment", "+experiment", "profile")]


def test_grid_selection_ignores_the_neutral_keys() -> None:
    table = pd.DataFrame({"run_dir": ["a", "b"], "seed": [0, 1], "data.eval_batch_size": [1, 2],
                          "hydra.launcher.n_jobs": [1, 2], "model.width": [3, 3]})
    assert setting_columns(table) == ["seed", "model.width"]
    assert is_neutral("grid.paper.width") and not is_neutral("model.width") and "logger" in NOT_RESULT_KEYS


def test_rerun_with_another_config_starts_empty_and_says_why(tiny_cfg, tmp_path: Path, caplog) -> None:
    run(tiny_cfg("codes.epochs=[0,1,2]", "codes.save=true"))
    out = tmp_path / "run"
    assert (out / "codes" / "epoch=0002.npz").is_file()
    again = tiny_cfg("trainer.max_epochs=1", "codes.epochs=[0,1]", "codes.save=true")
    with caplog.at_level("WARNING"):
        run(again)
    assert sorted(p.name for p in (out / "codes").iterdir()) == ["epoch=0000.npz", "epoch=0001.npz"]
    assert "trainer.max_epochs" in caplog.text and "previous-" in caplog.text
    (aside,) = tmp_path.glob("run.previous-*")
    assert (aside / "codes" / "epoch=0002.npz").is_file()
    assert (aside / "checkpoints" / "last.ckpt").is_file()  # a finished run's checkpoint: not resumed from
    assert "grid" not in OmegaConf.load(out / "config.yaml")


def test_a_run_finished_before_codes_source_existed_is_not_redone(tiny_cfg, tmp_path: Path) -> None:
    """A finished run whose config.yaml predates codes.source (the key was added later) is skipped,
    not moved aside: where the codes are read from does not change what the run computed."""
    cfg = tiny_cfg("trainer.max_epochs=1", "codes.epochs=[1]")
    run(cfg)
    out = tmp_path / "run"
    old = OmegaConf.load(out / "config.yaml")
    del old.codes["source"]
    (out / "config.yaml").write_text(OmegaConf.to_yaml(old))
    result = run(tiny_cfg("trainer.max_epochs=1", "codes.epochs=[1]", "codes.source=network"))
    assert not list(tmp_path.glob("run.previous-*")) and result.get("run_dir") == str(out)


def _study(tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "ACTIVATION_HASH_OUTPUT": str(tmp_path / "outputs")}
    args = ["+experiment=model_size", "-m", "data=digits", "model.width=8,16", "seed=0",
            "trainer.max_epochs=2", "progress_bar=none", "codes.verbose=false"]
    return subprocess.Popen([sys.executable, "-m", "activation_hash", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_identical_studies_at_once_leave_one_run_per_directory(tmp_path: Path) -> None:
    procs = [_study(tmp_path), _study(tmp_path)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    runs = sorted((tmp_path / "outputs" / "studies" / "model_size" / "smoke").glob("*/result.json"))
    assert len(runs) == 2
    for result in runs:
        rows = (result.parent / "encoding.jsonl").read_text().splitlines()
        assert len(rows) == 2  # codes.epochs=last: one capture, a train and a test row
        metrics = pd.read_csv(result.parent / "metrics.csv")
        # one run: a train row per epoch (no validation: nothing reads it) and one capture row
        # (two runs interleaved: 6)
        assert len(metrics) == 2 + 1
        assert not list(result.parent.parent.glob(f"{result.parent.name}.previous-*"))
