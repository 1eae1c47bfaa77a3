"""The W&B sweep files follow W&B's published sweep schema (github.com/wandb/sweeps,
src/sweeps/config/schema.json: the rules a sweep file of this project can break are checked here),
and a run started by `wandb agent` lands where `-m` puts the same grid point."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module

from activation_hash.__main__ import append_optional_groups
from activation_hash.wandb_sweeps import experiment_names, sweep_spec
from tests.conftest import REPO

# from W&B's sweep schema: `parameters.propertyNames.pattern`, the top-level keys, `method`, `metric.goal`
PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
TOP_LEVEL = {"program", "method", "parameters", "metric", "early_terminate", "name", "description", "command",
             "project", "entity", "controller", "run_cap", "job", "image_uri", "apiVersion", "scheduler"}
METHODS = {"grid", "random", "bayes", "custom"}


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda p: p.stem)
def test_sweep_file_follows_the_wandb_sweep_schema(path: Path) -> None:
    spec = yaml.safe_load(path.read_text())
    assert set(spec) <= TOP_LEVEL and spec["method"] in METHODS
    assert set(spec["metric"]) <= {"name", "goal", "target", "impute", "imputewhilerunning"}
    assert spec["metric"]["goal"] in ("minimize", "maximize")
    assert spec["parameters"], "minProperties: 1"
    for name, param in spec["parameters"].items():
        assert PARAMETER_NAME.match(name), name
        assert set(param) == {"values"} and len(param["values"]) >= 1  # param_categorical (a grid)
    assert all(isinstance(c, str) for c in spec["command"])


def _agent_overrides(name: str, profile: str) -> list[str]:
    """What `wandb agent` runs for the first grid point, as `python -m activation_hash` reads it."""
    spec = sweep_spec(name, profile)
    args = [f"{k}={v['values'][0]}" for k, v in spec["parameters"].items()]
    command = [c for c in spec["command"][4:] if c != "${args_no_hyphens}"] + args
    return append_optional_groups(["prog", *command])[1:]


@pytest.mark.parametrize("name", ["cnn_zoo", "model_size"])
def test_an_agent_run_lands_in_the_study_layout(name: str) -> None:
    overrides = _agent_overrides(name, "smoke")
    with initialize_config_module("activation_hash.conf", version_base="1.3"):
        agent = compose("config", overrides=overrides, return_hydra_config=True)
        # the same grid point as a -m job gets it: its overrides without the agent's own arguments
        job = compose("config", overrides=[o for o in overrides if not o.startswith(("hydra.", "logger="))],
                      return_hydra_config=True)
    from hydra.core.hydra_config import HydraConfig
    HydraConfig.instance().set_config(agent)
    run_dir = agent.hydra.run.dir
    HydraConfig.instance().set_config(job)
    assert run_dir == f"{job.hydra.sweep.dir}/{job.hydra.sweep.subdir}"
    assert f"/studies/{name}/smoke/" in run_dir and "logger" not in run_dir.rsplit("/", 1)[1]
    if name == "cnn_zoo":
        assert "+cnn_recipe=" in run_dir  # as the -m sweeper names it


def test_every_experiment_has_a_sweep_file() -> None:
    assert sorted(p.stem for p in (REPO / "sweeps").glob("*.yaml")) == experiment_names()
