"""The architectures by name, and an adapter for bringing your own network.

The architectures of He et al. (2021, Tables 3–4) are the files `conf/model/<name>.yaml` (the one
registry of architectures; `CNN_ZOO` names them), composed by Hydra as `model=<name>`.

`custom(...)` is the target of `conf/model/custom.yaml`: it calls any network factory (a class or
function given by Hydra `_target_` with `_partial_: true`), passes it the data's number of classes
and, if asked, the input shape under the argument names the factory uses (plus any other options),
and by default traces it with `modularize_relus` so functional `F.relu` calls become hookable modules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn

from activation_hash.codes.fx import modularize_relus

Factory = Callable[..., nn.Module]

MODEL_CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
CNN_ZOO = ("vgg16", "vgg19", "resnet18", "resnet20", "resnet32", "resnext", "densenet")


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
