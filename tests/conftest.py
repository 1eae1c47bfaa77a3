"""Shared fixtures: compose the app's config the way `python -m activation_hash` does."""

from __future__ import annotations

import os
from pathlib import Path

# one thread per test process: the stacked-vs-solo equality tests compare conv/BN gradients within
# 1e-4, which multi-threaded CPU kernels on a loaded 2-core machine do not reproduce run to run
for _key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    if not os.environ.get(_key):  # unset or empty (an empty value is no thread count)
        os.environ[_key] = "1"

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("ACTIVATION_HASH_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))

# Small enough for a test: a few epochs on a few hundred digits.
TINY = ["trainer.max_epochs=2", "codes.epochs=[0,1,2]", "data.train_size=300", "data.test_size=200",
        "model.width=16", "progress_bar=none", "codes.verbose=false"]


def compose_config(overrides: list[str] = (), output_dir: Path | None = None) -> DictConfig:
    with initialize_config_module(config_module="activation_hash.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    if output_dir is not None:
        with open_dict(cfg):
            cfg.output_dir = str(output_dir)
    return cfg


@pytest.fixture
def tiny_cfg(tmp_path: Path):
    def make(*overrides: str) -> DictConfig:
        return compose_config([*TINY, *overrides], output_dir=tmp_path / "run")
    return make
