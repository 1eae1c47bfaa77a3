"""Every config group option composes, bad group options list the choices, and the configs
load from an installed wheel, not only from the checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from tests.conftest import REPO, compose_config

CONF = REPO / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "experiment", "report", "__pycache__"))
APPENDED = {"cnn_recipe", "hparams_search"}  # groups outside the defaults list, added with +group=option
OPTIONS = [(g, str(f.relative_to(CONF / g).with_suffix(""))) for g in GROUPS for f in sorted((CONF / g).rglob("*.yaml"))]
EXPERIMENTS = sorted(f.stem for f in (CONF / "experiment").glob("*.yaml"))


def test_groups_exist() -> None:
    assert {"data", "model", "optimizer", "scheduler", "trainer", "callbacks", "codes", "metrics",
            "logger"} <= set(GROUPS)


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes(group: str, option: str, tmp_path: Path) -> None:
    prefix = "+" if group in APPENDED else ""
    cfg = compose_config([f"{prefix}{group}={option}"], output_dir=tmp_path)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert cfg.seed == 0 and cfg.output_dir == str(tmp_path)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes(name: str, tmp_path: Path) -> None:
    cfg = compose_config([f"+experiment={name}"], output_dir=tmp_path)
    OmegaConf.resolve(cfg)
    assert cfg.study is not None


def test_public_keys_exist(tmp_path: Path) -> None:
    cfg = compose_config([], output_dir=tmp_path)
    for key in ["seed", "data.root", "data.download", "data.train_size", "data.label_noise", "data.random_inputs",
                "model.depth", "model.width", "model.batch_norm", "optimizer.lr", "optimizer.weight_decay",
                "trainer.max_epochs", "trainer.gradient_clip_val", "codes.epochs", "codes.layers", "codes.save"]:
        assert OmegaConf.select(cfg, key, throw_on_missing=False, default="<absent>") != "<absent>", key
    assert "csv" in cfg.logger


def test_unknown_group_option_lists_the_choices() -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose_config(["data=imagenet"])
    message = str(info.value)
    assert "imagenet" in message and "mnist" in message and "digits" in message


def test_configs_load_from_an_installed_wheel(tmp_path: Path) -> None:
    """Build the wheel, unpack it away from the checkout and compose the config from it."""
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("activation_hash-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(site)
    assert "activation_hash/conf/config.yaml" in names
    assert any(n.startswith("activation_hash/conf/data/") for n in names)
    code = ("from hydra import compose, initialize_config_module\n"
            "import activation_hash\n"
            "assert activation_hash.__file__.startswith(%r), activation_hash.__file__\n"
            "with initialize_config_module('activation_hash.conf', version_base='1.3'):\n"
            "    cfg = compose('config', overrides=['data=mnist', 'model.width=7'])\n"
            "print(cfg.data.name, cfg.model.width)\n") % str(site)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["mnist", "7"]


def test_help_lists_the_user_facing_groups_and_only_existing_options() -> None:
    import re
    import subprocess
    import sys
    from tests.conftest import REPO
    out = subprocess.run([sys.executable, "-m", "activation_hash", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120).stdout
    assert "Most useful commands" in out and "cnn_recipe" not in out and "report" not in out.split("Config groups")[1]
    conf = REPO / "conf"
    for group in ("data", "model", "optimizer", "scheduler", "recipe", "regularizer", "logger"):
        line = re.search(rf"(?:^ *|   ){group} +(\w.*?)(?:   |$)", out, re.M).group(1)
        options = [o.strip() for o in line.split(",") if o.strip() and o.strip() != "tiny/NAME"]
        missing = [o for o in options if not (conf / group / f"{o}.yaml").is_file()]
        assert options and not missing, (group, missing)
