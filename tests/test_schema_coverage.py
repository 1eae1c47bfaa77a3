"""Every key of every option of every config group (and of every experiment) has a rule in the
schema: a key the code reads cannot slip past the checks because nobody listed it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

from activation_hash.__main__ import APPENDED_GROUPS
from activation_hash.schema import LAUNCHER_RULES, rule_for
from tests.conftest import REPO

CONF = REPO / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "experiment", "report"))


def _options(group: str) -> list[str]:
    root = CONF / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def _leaves(node: DictConfig, prefix: str = "") -> list[str]:
    out = []
    for key in node.keys():
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing() and len(child):
            out += _leaves(child, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


CASES = [(g, o) for g in GROUPS for o in _options(g)] + [("+experiment", o) for o in _options("experiment")]


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_key_of_every_option_has_a_rule(group: str, option: str) -> None:
    plus = "+" if group in APPENDED_GROUPS else ""  # not in config.yaml's defaults list
    with initialize_config_module("activation_hash.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"{plus}{group}={option}"])
    missing = [k for k in _leaves(cfg) if rule_for(cfg, k) is None]
    assert not missing, f"{group}={option}: keys without a rule in activation_hash/schema.py: {missing}"


def test_the_batched_launcher_keys_have_rules() -> None:
    from hydra_plugins.activation_hash_batched_launcher.config import BatchedLauncherConf
    rules = LAUNCHER_RULES[BatchedLauncherConf._target_]
    keys = [k for k in BatchedLauncherConf.__dataclass_fields__ if k != "_target_"]
    assert [k for k in keys if k not in rules] == []


def test_a_key_no_rule_covers_is_reported() -> None:
    cfg = OmegaConf.create({"model": {"_target_": "activation_hash.models.mlp.MLP", "nosuch": 1}})
    assert rule_for(cfg, "model.nosuch") is None
    assert rule_for(cfg, "model._target_") == "structural"
