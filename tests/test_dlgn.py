"""DLGN: gates are sigmoids of half-spaces of the input, the code is their hard pattern."""

from __future__ import annotations

import pytest
import torch

from activation_hash.codes.capture import CodeRecorder, describe_units
from activation_hash.data.planar import planar_datamodule
from activation_hash.models.dlgn import DLGN


def _net(**kw) -> DLGN:
    torch.manual_seed(0)
    return DLGN((1, 4, 4), 3, **{"depth": 3, "width": 7, **kw})


@pytest.mark.parametrize("bias", [False, True])
def test_gates_are_sigmoid_of_composed_weights(bias):
    net = _net(gating_bias=bias, beta=3.0)
    x = torch.randn(11, 1, 4, 4)
    flat = x.flatten(1)
    product, offset = torch.eye(16), torch.zeros(16)
    for layer, gate in zip(net.gating, net.gates(x)):
        product = layer.weight @ product          # W_l ... W_1, by hand
        offset = layer.weight @ offset + (layer.bias if bias else 0)
        expected = torch.sigmoid(3.0 * (flat @ product.T + offset))
        torch.testing.assert_close(gate, expected)


def test_forward_is_value_network_times_gates():
    net = _net(value_input="x")
    x = torch.randn(5, 1, 4, 4)
    v = x.flatten(1)
    for layer, gate in zip(net.value, net.gates(x)):
        v = (v @ layer.weight.T) * gate
    torch.testing.assert_close(net(x), net.head(v))
    ones = _net()
    v = torch.ones(5, 16)
    for layer, gate in zip(ones.value, ones.gates(x)):
        v = (v @ layer.weight.T) * gate
    torch.testing.assert_close(ones(x), ones.head(v))


def test_large_beta_approaches_hard_gates():
    x = torch.randn(64, 1, 4, 4)
    hard = _net(hard_gates=True)(x)
    gaps = [(_net(beta=b)(x) - hard).abs().max().item() for b in (4.0, 100.0, 1e4, 1e7)]
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3]
    assert gaps[3] < 1e-4 * hard.abs().max().item()


def test_hard_gates_still_pass_gradients_to_the_gating_network():
    net = _net(hard_gates=True)
    net(torch.randn(8, 1, 4, 4)).sum().backward()
    assert all(layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0 for layer in net.gating)


@pytest.mark.parametrize("variant", ["dlgn", "dlgn_sf"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_captured_code_is_sign_of_effective_half_spaces(variant, batch_norm):
    net = _net(variant=variant, gating_bias=True, batch_norm=batch_norm)
    if batch_norm:  # give the running statistics something non-trivial, then freeze them
        net.train()
        net(torch.randn(64, 1, 4, 4) * 2 + 0.3)
    net.eval()
    x = torch.randn(40, 1, 4, 4)
    with CodeRecorder(net) as rec:
        net(x)
        bits = rec.take()
    expected = torch.cat([(x.flatten(1) @ A.T + c) > 0 for A, c in net.effective_gating()], dim=1)
    assert torch.equal(bits, expected)
    assert [n for n, _ in describe_units(net, (1, 4, 4))] == ["codes.0", "codes.1", "codes.2"]


def test_dlgn_sf_effective_weights_are_its_own_weights():
    net = _net(variant="dlgn_sf")
    for A, layer in zip(net.effective_gating_weights(), net.gating):
        assert torch.equal(A, layer.weight)
        assert layer.in_features == 16


def test_dgn_captures_each_gating_unit_once_and_has_no_half_spaces():
    net = _net(variant="dgn")
    x = torch.randn(9, 1, 4, 4)
    with CodeRecorder(net) as rec:
        net(x)
        bits = rec.take()
    assert bits.shape[1] == 3 * 7  # the functional ReLU adds no layer
    g1 = x.flatten(1) @ net.gating[0].weight.T
    g2 = torch.relu(g1) @ net.gating[1].weight.T
    assert torch.equal(bits[:, 7:14], g2 > 0)
    with pytest.raises(ValueError, match="model.variant=dgn"):
        net.effective_gating_weights()


@pytest.mark.parametrize("bad, match", [({"variant": "relu"}, "model.variant='relu'"),
                                        ({"value_input": "zeros"}, "model.value_input='zeros'"),
                                        ({"beta": 0}, "model.beta=0"), ({"width": 0}, "model.width=0")])
def test_bad_config_is_one_line_error(bad, match):
    with pytest.raises(ValueError, match=match):
        _net(**bad)


def test_widths_follow_the_mlp_keys():
    net = DLGN((2,), 2, depth=3, width=12, split_width=True)
    assert [layer.out_features for layer in net.gating] == [4, 4, 4]
    net = DLGN((2,), 2, widths=[5, 3])
    assert [layer.out_features for layer in net.value] == [5, 3]


def test_dlgn_fits_moons():
    dm = planar_datamodule("moons", n_samples=400, noise=0.1, val_fraction=0.0)
    dm.setup()
    torch.manual_seed(0)
    net = DLGN((2,), 2, depth=3, width=16, gating_bias=True, beta=4.0)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(dm.x_train), dm.y_train).backward()
        opt.step()
    acc = (net(dm.x_train).argmax(1) == dm.y_train).float().mean().item()
    assert acc > 0.95
