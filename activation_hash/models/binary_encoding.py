"""The latent binary-encoding classifier of Sbailò & Ghiringhelli (arXiv 2310.08224).

    backbone features -> Linear(features, d) = z  [CodeUnit ``latent_code``]  -> Linear(d, C)

trained with L = CE + gamma_t * mean(z^2) (variant ``bin_enc``). gamma_0 = 0.01 is multiplied by
``gamma_growth`` after every epoch while it is below ``gamma_max`` (the authors' code: ``if gamma <
gamma_max: gamma *= growth`` at the end of each epoch), so epoch e trains with
``Geometric(gamma0, growth, max)(e)``. The term is contributed through the loss-term protocol of
``activation_hash.models.loss_terms`` and logged as ``train/loss_latent_l2`` and ``train/gamma``.

Variants (the authors' ablations): ``bin_enc`` (penalty), ``lin_pen`` (same network, gamma = 0),
``nonlin_pen`` (penultimate followed by the backbone's activation, applied functionally so the
only code layer of the head is ``latent_code``, whose bits equal that ReLU's), ``no_pen`` (no
penultimate layer: features -> Linear(features, C); no ``latent_code`` layer).

The backbone is any model of the project (a partial from a nested model config). Its features are
obtained by building it with the real ``num_classes``, replacing its *last* ``nn.Linear`` (in
``named_modules`` order: the classifier of every zoo model) with ``nn.Identity`` and measuring the
feature width with a forward pass on zeros of ``input_shape``. ``activation`` (a key of the
backbone config, popped before the backbone is built): ``relu`` keeps it, ``silu`` (the authors'
choice) swaps every ``nn.ReLU`` module for ``nn.SiLU``; a SiLU backbone has no ReLU code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from activation_hash.codes.units import CodeUnit
from activation_hash.models.loss_terms import Geometric, LossTerm

VARIANTS = ("bin_enc", "lin_pen", "nonlin_pen", "no_pen")
ACTIVATIONS = ("relu", "silu")


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, leaf, new)


def feature_extractor(backbone: Callable[..., nn.Module], input_shape: Sequence[int], num_classes: int,
                      activation: str = "relu") -> tuple[nn.Module, int]:
    """Build ``backbone``, strip its last nn.Linear, swap activations; returns (net, feature width)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"model.backbone.activation={activation}: allowed {list(ACTIVATIONS)}")
    net = backbone(input_shape=tuple(input_shape), num_classes=num_classes)
    linears = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"model.backbone: {type(net).__name__} has no nn.Linear classifier to strip")
    _replace(net, linears[-1], nn.Identity())
    if activation == "silu":
        for name in [n for n, m in net.named_modules() if isinstance(m, nn.ReLU)]:
            _replace(net, name, nn.SiLU())
    was_training = net.training
    net.eval()
    with torch.no_grad():
        width = net(torch.zeros(2, *input_shape)).flatten(1).shape[1]
    net.train(was_training)
    return net, int(width)


class BinaryEncodingNet(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int, backbone: Callable[..., nn.Module],
                 variant: str = "bin_enc", latent_dim: int = 6, gamma0: float = 0.01,
                 gamma_growth: float = 1.05, gamma_max: float = 1e6):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"model.variant={variant}: allowed {list(VARIANTS)}")
        if latent_dim < 1:
            raise ValueError(f"model.latent_dim={latent_dim}: must be >= 1")
        if gamma0 < 0 or gamma_growth <= 0:
            raise ValueError(f"model.gamma0={gamma0}, model.gamma_growth={gamma_growth}: need gamma0 >= 0, growth > 0")
        activation = "relu"
        if isinstance(backbone, functools.partial) and "activation" in backbone.keywords:
            keywords = dict(backbone.keywords)
            activation = keywords.pop("activation")
            backbone = functools.partial(backbone.func, *backbone.args, **keywords)
        self.variant, self.activation = variant, activation
        self.features, width = feature_extractor(backbone, input_shape, num_classes, activation)
        self.flatten = nn.Flatten()
        if variant == "no_pen":
            self.classifier = nn.Linear(width, num_classes)
        else:
            self.latent = nn.Linear(width, latent_dim)
            self.latent_code = CodeUnit()
            self.classifier = nn.Linear(latent_dim, num_classes)
        self.schedule = Geometric(gamma0, gamma_growth, gamma_max) if variant == "bin_enc" else None
        self.gamma = self.schedule(0) if self.schedule else 0.0
        self._z: torch.Tensor | None = None

    def set_epoch(self, epoch: int) -> None:
        self.gamma = self.schedule(epoch) if self.schedule else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.flatten(self.features(x))
        if self.variant == "no_pen":
            return self.classifier(h)
        z = self.latent_code(self.latent(h))
        self._z = z
        if self.variant == "nonlin_pen":
            z = F.silu(z) if self.activation == "silu" else F.relu(z)
        return self.classifier(z)

    def loss_terms(self) -> list[LossTerm]:
        if self.variant not in ("bin_enc", "lin_pen") or self._z is None:
            return []
        return [LossTerm("latent_l2", self._z.pow(2).mean(), float(self.gamma), weight_name="gamma")]
