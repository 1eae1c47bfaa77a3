"""CodeUnit markers survive torch.fx tracing and are selectable by layer name."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from activation_hash.codes.capture import CodeRecorder, describe_units, parse_layers
from activation_hash.codes.fx import modularize_relus
from activation_hash.codes.units import CodeUnit


class LatentNet(nn.Module):
    """Functional ReLU backbone, then a linear latent layer marked as a code unit."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(5, 7)
        self.latent = nn.Linear(7, 4)
        self.latent_code = CodeUnit()
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        z = self.latent_code(self.latent(F.relu(self.body(x))))
        return self.head(z)


def test_code_unit_survives_tracing_and_gives_the_linear_sign_bits() -> None:
    torch.manual_seed(0)
    net = LatentNet()
    traced = modularize_relus(net)
    assert any(isinstance(m, CodeUnit) for m in traced.modules())
    names = [name for name, _ in describe_units(traced, (5,))]
    assert names == ["relu", "latent_code"]
    chosen = parse_layers("name:latent*", len(names), names=names)
    assert chosen == [1]
    x = torch.randn(50, 5)
    with CodeRecorder(traced, layers=chosen) as rec:
        out = traced(x)
        bits = rec.take()
    torch.testing.assert_close(out, net(x))
    expected = net.latent(F.relu(net.body(x))) > 0
    assert bits.shape == (50, 4) and torch.equal(bits, expected)
    assert 0 < bits.float().mean() < 1  # a real pattern, not all-on or all-off


def test_name_selection_errors_name_the_layers() -> None:
    names = ["relu", "latent_code"]
    assert parse_layers("name:re*", 2, names=names) == [0]
    assert parse_layers("name:*", 2, names=names) == [0, 1]
    with pytest.raises(ValueError, match="matches no layer; the layers are: relu, latent_code"):
        parse_layers("name:nope*", 2, names=names)
