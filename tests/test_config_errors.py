"""Bad overrides fail before training with one line naming the key: checked in-process for many
values (the same `check_config` that `run` calls first) and as real processes for a few."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from activation_hash.schema import ConfigError
from activation_hash.validate import check_config
from tests.conftest import REPO, compose_config

BAD = [
    "model.width=abc", "model.width=3.7", "model.width=0", "model.depth=-1", "model.depth=two",
    "model.widths=[10,0]", "model.widths=[3.5]", "model.batch_norm=maybe", "seed=abc", "seed=-1", "seed=1.5",
    "codes.save=maybe", "codes.memmap=2", "codes.capture_last=yes", "codes.epochs=[0,999]", "codes.epochs=bogus",
    "codes.epochs=log:0", "codes.layers=x", "codes.layers=[0]", "codes.layers=[a]",
    "metrics.which=[foo]", "metrics.which=knn", "metrics.drop_constant=maybe", "metrics.knn_k=0",
    "metrics.knn_k=2.5", "metrics.kmeans_seed=-3", "metrics.logreg_mode=bogus", "metrics.diameter.method=bogus",
    "metrics.diameter.n_samples=0", "metrics.diameter.enabled=perhaps", "optimizer.lr=0", "optimizer.lr=abc",
    "optimizer.weight_decay=-1", "optimizer.betas=[0.9]", "optimizer.betas=[0.9,1.5]",
    "data.train_size=0", "data.train_size=1.5", "data.test_size=-2", "data.val_fraction=1.0",
    "data.label_noise=2", "data.random_inputs=sometimes", "data.batch_size=0", "trainer.max_epochs=-1",
    "trainer.max_epochs=ten", "trainer.gradient_clip_val=0", "progress_bar=fancy", "skip_finished=maybe",
    "model.init=he", "model.l2=-1", "data.random_inputs_dist=cauchy", "metrics.diameter.sample=stratified",
]
EXTRA = {"optimizer.momentum=1.5": ["optimizer=sgd"], "scheduler.step_size=0": ["scheduler=step"],
         "scheduler.gamma=-1": ["scheduler=step"], "regularizer=none": ["recipe=authors_code_mlp"],
         "scheduler=none": ["recipe=paper_cnn_mnist"]}


def _key(override: str) -> str:
    return override.split("=", 1)[0]


@pytest.mark.parametrize("override", [*BAD, *EXTRA])
def test_bad_override_is_refused_naming_the_key(override: str, tmp_path: Path) -> None:
    from hydra import compose, initialize_config_module
    with initialize_config_module("activation_hash.conf", version_base="1.3"):
        cfg = compose("config", overrides=[*EXTRA.get(override, []), override], return_hydra_config=True)
    cfg.output_dir = str(tmp_path / "run")
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert str(info.value).startswith(_key(override) + "="), str(info.value)
    if override == "regularizer=none":
        assert "recipe=authors_code_mlp" in str(info.value)


def test_at_least_thirty_bad_overrides() -> None:
    assert len(BAD) + len(EXTRA) >= 30


def test_good_configs_pass(tmp_path: Path) -> None:
    for overrides in ([], ["optimizer=sgd", "scheduler=step"], ["model.widths=[8,4]"], ["codes.layers=1..2"]):
        check_config(compose_config(overrides, output_dir=tmp_path))


@pytest.mark.parametrize("override", ["model.width=abc", "codes.save=maybe", "metrics.logreg_mode=bogus",
                                      "metrics.which=[foo]", "seed=-1"])
def test_process_prints_one_line_and_exits_before_training(override: str, tmp_path: Path) -> None:
    env = {**os.environ, "ACTIVATION_HASH_OUTPUT": str(tmp_path)}
    env.pop("HYDRA_FULL_ERROR", None)
    out = subprocess.run([sys.executable, "-m", "activation_hash", override], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr + out.stdout
    assert f"error: {_key(override)}=" in out.stderr
    assert not list(tmp_path.rglob("metrics.csv")), "nothing may be trained"
