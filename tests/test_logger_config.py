"""Every logger receives the run's resolved config (Lightning's log_hyperparams), W&B tags are the
job's factor overrides only, and a resumed run keeps its W&B run id."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

import activation_hash.run as run_module
from activation_hash.loggers import factor_tags, run_hparams, wandb_run_id
from activation_hash.run import run
from tests.conftest import TINY, compose_config


def test_offline_wandb_run_and_hparams_yaml_hold_the_config(tmp_path: Path, monkeypatch) -> None:
    for key in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    seen: dict = {}
    original = run_module.finish_wandb

    def finish(loggers, *args, **kwargs):  # read the W&B run's config before it is closed
        import wandb
        seen["config"] = dict(wandb.run.config.as_dict()) if wandb.run else None
        seen["tags"] = list(wandb.run.tags) if wandb.run else None
        seen["id"] = wandb.run.id if wandb.run else None
        return original(loggers, *args, **kwargs)

    monkeypatch.setattr(run_module, "finish_wandb", finish)
    out = tmp_path / "run"
    cfg = compose_config([*TINY, "logger=wandb", "model.width=12", "seed=4", "codes.save=false"], output_dir=out)
    run(cfg)
    config = seen["config"]
    assert config["model"]["width"] == 12 and config["seed"] == 4
    assert config["study"] is None and config["profile"]["name"] == "smoke"
    assert seen["id"] == wandb_run_id(out)
    hparams = yaml.safe_load((out / "hparams.yaml").read_text())  # Lightning's CSV logger
    assert hparams["model"]["width"] == 12 and hparams["seed"] == 4
    assert hparams["run_dir"] == str(out) and "grid" not in hparams


def test_factors_are_typed_config_values_and_tags_skip_the_noise() -> None:
    overrides = ["model.width=40", "+seed=2", "logger=wandb", "progress_bar=none", "model=mlp",
                 "hydra/launcher=batched", "+experiment=model_size", "resume=never"]
    assert factor_tags(overrides) == ["model.width=40", "seed=2", "model=mlp"]
    cfg = compose_config(["model.width=40", "seed=2"], output_dir=Path("/x"))
    params = run_hparams(cfg, overrides)
    assert params["factors"] == {"model.width": 40, "seed": 2, "model": "mlp"}
    assert params["model"]["width"] == 40 and params["run_dir"] == "/x"


def test_wandb_id_is_stable_across_resumes_and_new_for_a_fresh_start(tmp_path: Path) -> None:
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"started": "2026-01-01T00:00:00"}))
    first = wandb_run_id(tmp_path)
    meta.write_text(json.dumps({"started": "2026-01-01T00:00:00", "resumed": [{"epoch": 3}]}))
    assert wandb_run_id(tmp_path) == first
    meta.write_text(json.dumps({"started": "2026-02-02T00:00:00"}))  # restarted from epoch 0
    assert wandb_run_id(tmp_path) != first
    assert wandb_run_id(tmp_path / "other") != first
