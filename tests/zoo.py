"""`build("resnet20", (3, 32, 32), 10, base_width=8)`: the network of `conf/model/<name>.yaml`
(e.g. `tiny/vgg19`) as Hydra composes it for `model=<name>` (its defaults list applied), options
overriding its keys. For tests and benchmarks; runs build their network from the composed config."""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from activation_hash.models.zoo import MODEL_CONF


def build(name: str, input_shape: Sequence[int], num_classes: int, **options: object) -> nn.Module:
    path = MODEL_CONF / f"{name}.yaml"
    if not path.is_file():
        known = sorted(str(p.relative_to(MODEL_CONF).with_suffix("")) for p in MODEL_CONF.rglob("*.yaml"))
        raise ValueError(f"model={name!r}: no conf/model/{name}.yaml; choose one of {known}")
    with initialize_config_module(config_module="activation_hash.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"model={name}"])
    model = OmegaConf.merge(OmegaConf.to_container(cfg.model, resolve=True), options)
    return instantiate(model)(input_shape=tuple(input_shape), num_classes=num_classes)
