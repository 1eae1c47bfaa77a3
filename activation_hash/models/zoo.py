"""The architectures by name, and an adapter for bringing your own network.

`build("resnet20", (3, 32, 32), 10, base_width=8)` builds an architecture of He et al. (2021,
Tables 3–4) with the defaults of its `conf/model/<name>.yaml`, options overriding them.

`custom(...)` is the target of `conf/model/custom.yaml`: it calls any network factory (a class or
function given by Hydra `_target_` with `_partial_: true`), passes it the data's number of classes
and, if asked, the input shape under the argument names the factory uses (plus any other options),
and by default traces it with `modularize_relus` so functional `F.relu` calls become hookable modules.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from torch import nn

from activation_hash.codes.fx import modularize_relus
from activation_hash.models.densenet import DenseNet
from activation_hash.models.resnet import ResNet
from activation_hash.models.resnext import ResNeXt
from activation_hash.models.vgg import VGG

Factory = Callable[..., nn.Module]

# name -> factory(input_shape, num_classes, **options); defaults equal conf/model/<name>.yaml
ARCHITECTURES: dict[str, Factory] = {
    "vgg16": functools.partial(VGG, depth=16),
    "vgg19": functools.partial(VGG, depth=19),
    "resnet18": functools.partial(ResNet, num_blocks=(2, 2, 2, 2), base_width=64, shortcut="B"),
    "resnet20": functools.partial(ResNet, num_blocks=(3, 3, 3), base_width=16, shortcut="A"),
    "resnet32": functools.partial(ResNet, num_blocks=(5, 5, 5), base_width=16, shortcut="A"),
    "resnext": functools.partial(ResNeXt, cardinality=8, bottleneck_width=64),
    "densenet": functools.partial(DenseNet, depth=100, growth_rate=12),
}


def build(name: str, input_shape: Sequence[int], num_classes: int, **options: object) -> nn.Module:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](input_shape, num_classes, **options)


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
