"""The architectures by name, and an adapter for bringing your own network.

`build("resnet20", (3, 32, 32), 10, base_width=8)` builds an architecture of He et al. (2021,
Tables 3–4) from its `conf/model/<name>.yaml` (the one registry of architectures), options
overriding the file's values.

`custom(...)` is the target of `conf/model/custom.yaml`: it calls any network factory (a class or
function given by Hydra `_target_` with `_partial_: true`), passes it the data's number of classes
and, if asked, the input shape under the argument names the factory uses (plus any other options),
and by default traces it with `modularize_relus` so functional `F.relu` calls become hookable modules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from activation_hash.codes.fx import modularize_relus

Factory = Callable[..., nn.Module]

MODEL_CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
CNN_ZOO = ("vgg16", "vgg19", "resnet18", "resnet20", "resnet32", "resnext", "densenet")


def build(name: str, input_shape: Sequence[int], num_classes: int, **options: object) -> nn.Module:
    """The network of `conf/model/<name>.yaml` (e.g. `tiny/vgg19`), options overriding its keys."""
    path = MODEL_CONF / f"{name}.yaml"
    if not path.is_file():
        known = sorted(str(p.relative_to(MODEL_CONF).with_suffix("")) for p in MODEL_CONF.rglob("*.yaml"))
        raise ValueError(f"model={name!r}: no conf/model/{name}.yaml; choose one of {known}")
    cfg = OmegaConf.merge(_load(path), options)
    return instantiate(cfg)(input_shape=tuple(input_shape), num_classes=num_classes)


def _load(path: Path):
    """A model file with its defaults list applied: the tiny/* files are `/model/<name>@_here_`
    (the full-size file) then `_self_`, which OmegaConf.load alone does not merge."""
    cfg = OmegaConf.load(path)
    defaults = cfg.pop("defaults", []) if "defaults" in cfg else []
    merged = OmegaConf.create()
    for entry in defaults:
        if entry == "_self_":
            merged = OmegaConf.merge(merged, cfg)
            continue
        name = str(entry).split("@")[0].removeprefix("/model/")
        merged = OmegaConf.merge(merged, _load(MODEL_CONF / f"{name}.yaml"))
    return merged if "_self_" in defaults else OmegaConf.merge(merged, cfg)


def custom(input_shape: Sequence[int], num_classes: int, network: Factory | nn.Module,
           num_classes_arg: str | None = "num_classes", input_shape_arg: str | None = None,
           modularize: bool = True, **options: object) -> nn.Module:
    """Build a user network: `network(**{num_classes_arg: num_classes, input_shape_arg: input_shape}, **options)`.

    `network` may also be a ready nn.Module (then nothing is passed). Set an `*_arg` to null when
    the factory does not take that argument. Other keys (`options`, e.g. `batch_norm` set by the
    batch-norm regularizer) go to the factory too. With `modularize`, the network is traced by
    torch.fx and every functional ReLU call gets its own module (see activation_hash.codes.fx).
    """
    if isinstance(network, nn.Module):
        if options:
            raise TypeError(f"model.network is a ready {type(network).__name__}; cannot pass it {sorted(options)}")
        net = network
    else:
        kwargs: dict[str, object] = dict(options)
        if num_classes_arg:
            kwargs[num_classes_arg] = num_classes
        if input_shape_arg:
            kwargs[input_shape_arg] = tuple(input_shape)
        net = network(**kwargs)
        if not isinstance(net, nn.Module):
            raise TypeError(f"model.network built a {type(net).__name__}, not an nn.Module")
    return modularize_relus(net) if modularize else net
