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


def _help_groups(text: str) -> dict[str, list[str]]:
    """group -> options as `--help` lists them: `  GROUP   a, b,` lines and their continuation lines."""
    import re
    groups: dict[str, list[str]] = {}
    current = None
    for line in text.split("Config groups", 1)[1].splitlines()[1:]:
        if not line.strip():
            break
        start = re.match(r"^  (\S+)\s{2,}(.*)$", line)
        if start:
            current, rest = start.group(1), start.group(2)
        elif current and line.startswith(" " * 4) and not line.strip().startswith("("):
            rest = line
        else:
            continue
        groups.setdefault(current, []).extend(o.strip() for o in rest.split(",") if o.strip())
    return groups


def test_help_lists_every_group_option_of_conf() -> None:
    """`--help` names every option of every config group found in conf/ (walked here, not taken
    from the generator), and no option that does not exist; the default option is marked `*`."""
    import yaml
    out = subprocess.run([sys.executable, "-m", "activation_hash", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    listed = _help_groups(out.stdout)
    defaults = {}
    for entry in yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]:
        if isinstance(entry, dict):
            ((group, option),) = entry.items()
            defaults[group] = str(option)
    expected: dict[str, set[str]] = {}
    for path in CONF.rglob("*.yaml"):
        rel = path.relative_to(CONF)
        if len(rel.parts) < 2 or rel.parts[0] == "hydra" and (len(rel.parts) < 3 or rel.parts[1] == "help"):
            continue   # conf/config.yaml, conf/hydra/*.yaml (Hydra's settings), the help text itself
        depth = 2 if rel.parts[0] == "hydra" else 1
        group, option = "/".join(rel.parts[:depth]), "/".join(rel.with_suffix("").parts[depth:])
        expected.setdefault(group, set()).add(option + ("*" if defaults.get(group) == option else ""))
    assert {"cnn_recipe", "model", "hydra/launcher", "experiment"} <= set(expected)
    assert "dlgn_sf" in expected["model"] and "smoke_mnist" in expected["cnn_recipe"]
    assert {g: sorted(o) for g, o in listed.items()} == {g: sorted(o) for g, o in expected.items()}
