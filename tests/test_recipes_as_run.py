"""The authors' conventions: Keras' L2 as a loss term, Glorot-uniform init, random input
distributions, seeded diameter samples, and the DLGN baselines of seed 004."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from activation_hash.data.datamodule import InMemoryDataModule
from activation_hash.data.random_inputs import DISTRIBUTIONS, random_inputs, sample_indices
from activation_hash.models.dlgn import DLGN, DeepLinear
from activation_hash.models.loss_terms import keras_l2
from activation_hash.models.mlp import MLP
from tests.conftest import compose_config


def test_keras_l2_gradient_is_two_lambda_w_on_weight_matrices_and_zero_on_biases() -> None:
    torch.manual_seed(0)
    net = MLP((1, 4, 4), 3, depth=2, width=5, batch_norm=True, l2=0.01)
    (term,) = net.loss_terms()
    assert term.name == "l2" and term.weight == 0.01
    (term.weight * term.value).backward()
    for module in net.modules():
        if isinstance(module, nn.Linear):
            torch.testing.assert_close(module.weight.grad, 2 * 0.01 * module.weight.detach())
            assert module.bias.grad is None or not module.bias.grad.any()
        if isinstance(module, nn.BatchNorm1d):
            assert module.weight.grad is None or not module.weight.grad.any()
    brute = sum(float((m.weight.detach() ** 2).sum()) for m in net.modules() if isinstance(m, nn.Linear))
    assert float(term.value.detach()) == pytest.approx(brute, rel=1e-6)


def test_no_l2_means_no_term_and_bad_values_are_refused() -> None:
    assert MLP((4,), 2, width=3).loss_terms() == []
    for bad in (-0.1, "x", True):
        with pytest.raises(ValueError, match="model.l2="):
            MLP((4,), 2, width=3, l2=bad)
    with pytest.raises(ValueError, match="model.init="):
        MLP((4,), 2, width=3, init="he")


def test_keras_l2_differs_from_pytorch_coupled_decay_by_two_and_the_biases() -> None:
    torch.manual_seed(1)
    net = MLP((6,), 2, width=4, l2=0.5)
    (term,) = net.loss_terms()
    (term.weight * term.value).backward()
    first = net[1]
    coupled = 0.5 * first.weight.detach()     # what torch.optim.Adam(weight_decay=0.5) adds to the gradient
    torch.testing.assert_close(first.weight.grad, 2 * coupled)


@pytest.mark.parametrize("model", ["mlp", "dlgn", "deep_linear"])
def test_glorot_uniform_weights_within_bounds_and_zero_biases(model: str) -> None:
    torch.manual_seed(2)
    kw = {"depth": 2, "width": 300, "init": "glorot_uniform"}
    net = {"mlp": lambda: MLP((1, 28, 28), 10, **kw), "dlgn": lambda: DLGN((1, 28, 28), 10, gating_bias=True,
                                                                             value_bias=True, **kw),
           "deep_linear": lambda: DeepLinear((1, 28, 28), 10, bias=True, **kw)}[model]()
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert linears
    for m in linears:
        fan_out, fan_in = m.weight.shape
        a = math.sqrt(6 / (fan_in + fan_out))
        w = m.weight.detach()
        assert float(w.abs().max()) <= a
        if w.numel() > 2000:  # U(-a, a): max near a, variance a^2 / 3
            assert float(w.abs().max()) > 0.98 * a
            assert float(w.var()) == pytest.approx(a * a / 3, rel=0.05)
        assert m.bias is None or not m.bias.detach().any()
    default = MLP((1, 28, 28), 10, depth=2, width=300)
    assert default[1].bias.detach().any()  # PyTorch's default init has nonzero biases


@pytest.mark.parametrize("dist,low,high,mean,var", [("uniform01", 0, 1, 0.5, 1 / 12), ("uniform_pm1", -1, 1, 0, 1 / 3),
                                                    ("gaussian", -np.inf, np.inf, 0, 1)])
def test_pixelwise_random_inputs_support_and_moments(dist, low, high, mean, var) -> None:
    x = random_inputs(np.random.default_rng(0), (2000, 1, 8, 8), dist)
    assert x.dtype == np.float32 and x.shape == (2000, 1, 8, 8)
    assert x.min() >= low and x.max() < high
    assert x.mean() == pytest.approx(mean, abs=0.01) and x.var() == pytest.approx(var, rel=0.03)


def test_unit_ball_inputs_fill_the_ball_uniformly() -> None:
    d2 = random_inputs(np.random.default_rng(0), (20000, 2), "unit_ball")
    r = np.linalg.norm(d2, axis=1)
    assert r.max() <= 1 + 1e-6
    assert (r <= 0.5).mean() == pytest.approx(0.25, abs=0.015)   # P(r <= t) = t^d
    assert d2.mean(axis=0) == pytest.approx([0, 0], abs=0.02)
    big = random_inputs(np.random.default_rng(1), (500, 1, 28, 28), "unit_ball").reshape(500, -1)
    norms = np.linalg.norm(big, axis=1)
    assert norms.max() <= 1 + 1e-5 and norms.mean() == pytest.approx(784 / 785, abs=1e-3)
    with pytest.raises(ValueError, match="random_inputs_dist"):
        random_inputs(np.random.default_rng(0), (3, 2), "cauchy")


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_the_datamodule_draws_eval_inputs_from_the_chosen_distribution(dist: str) -> None:
    dm = InMemoryDataModule(name="digits", random_inputs="eval", random_inputs_dist=dist, seed=3)
    dm.setup()
    x = dm.x_test.flatten(1).numpy()
    if dist == "unit_ball":
        assert np.linalg.norm(x, axis=1).max() <= 1 + 1e-5
    elif dist == "uniform01":
        assert x.min() >= 0 and x.max() < 1
    elif dist == "uniform_pm1":
        assert x.min() < -0.5 and x.min() >= -1
    else:
        assert x.min() < -2 and x.max() > 2
    with pytest.raises(ValueError, match="data.random_inputs_dist="):
        InMemoryDataModule(name="digits", random_inputs_dist="bogus")


def test_default_random_inputs_are_unchanged_by_the_new_option() -> None:
    a = InMemoryDataModule(name="digits", random_inputs="eval", seed=5)
    b = InMemoryDataModule(name="digits", random_inputs="eval", random_inputs_dist="uniform01", seed=5)
    a.setup(), b.setup()
    torch.testing.assert_close(a.x_test, b.x_test)


def test_diameter_sample_indices_first_or_seeded_random() -> None:
    assert sample_indices(10000, 600, "first").tolist() == list(range(600))
    r = sample_indices(10000, 600, "random", seed=0)
    assert len(np.unique(r)) == 600 and r.min() >= 0 and r.max() < 10000 and (np.diff(r) > 0).all()
    assert (sample_indices(10000, 600, "random", seed=0) == r).all()
    assert not (sample_indices(10000, 600, "random", seed=1) == r).all()
    assert r.max() > 600  # not the first 600
    assert sample_indices(50, 600, "random").tolist() == list(range(50))
    with pytest.raises(ValueError, match="metrics.diameter.sample="):
        sample_indices(10, 5, "stratified")


def test_frozen_gates_stay_at_initialization_while_the_value_network_learns() -> None:
    torch.manual_seed(3)
    net = DLGN((1, 4, 4), 3, depth=3, width=8, freeze_gates=True, value_input="x")
    gates0 = [p.detach().clone() for p in net.gating.parameters()]
    values0 = [p.detach().clone() for p in net.value.parameters()]
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=0.01)
    x, y = torch.randn(32, 1, 4, 4), torch.randint(0, 3, (32,))
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(gates0, net.gating.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(values0, net.value.parameters()))
    with pytest.raises(ValueError, match="model.freeze_gates=true"):
        DLGN((1, 4, 4), 3, freeze_gates=True, batch_norm=True)


def test_deep_linear_network_is_linear_and_has_a_code_per_hidden_layer() -> None:
    from activation_hash.codes.capture import CodeRecorder, describe_units
    torch.manual_seed(4)
    net = DeepLinear((1, 4, 4), 3, depth=3, width=6)
    x, z = torch.randn(7, 1, 4, 4), torch.randn(7, 1, 4, 4)
    torch.testing.assert_close(net(2 * x - 3 * z), 2 * net(x) - 3 * net(z), atol=1e-5, rtol=1e-5)
    product = net.head.weight
    for layer in reversed(net.layers):
        product = product @ layer.weight
    torch.testing.assert_close(net(x), x.flatten(1) @ product.T, atol=1e-5, rtol=1e-5)
    with CodeRecorder(net) as rec:
        net(x)
        bits = rec.take()
    hidden, h = [], x.flatten(1)
    for layer in net.layers:
        h = layer(h)
        hidden.append(h > 0)
    assert torch.equal(bits.bool(), torch.cat(hidden, dim=1))
    assert [n for n, _ in describe_units(net, (1, 4, 4))] == ["codes.0", "codes.1", "codes.2"]


@pytest.mark.parametrize("arm,l2,wd,target", [("weight_decay", 0.01, 0.0, "Adam"),
                                              ("weight_decay_coupled", 0.0, 0.01, "Adam"),
                                              ("weight_decay_decoupled", 0.0, 0.01, "AdamW"),
                                              ("none", 0.0, 0.0, "Adam")])
def test_regularizer_arms_name_their_convention(arm, l2, wd, target) -> None:
    cfg = compose_config(["+experiment=regularization", f"regularizer={arm}"])
    assert cfg.model.l2 == l2 and cfg.optimizer.weight_decay == wd and cfg.optimizer._target_.endswith(target)
    assert cfg.model.init == "glorot_uniform"


def test_authors_recipe_uses_keras_l2_and_glorot() -> None:
    cfg = compose_config(["recipe=authors_code_mlp"])
    assert cfg.model.l2 == 1e-6 and cfg.optimizer.weight_decay == 0.0 and cfg.model.init == "glorot_uniform"
    assert compose_config([]).model.init == "torch"


@pytest.mark.parametrize("make", [lambda: DLGN((1, 4, 4), 3, depth=2, width=5, l2=0.1),
                                  lambda: DeepLinear((1, 4, 4), 3, depth=2, width=5, l2=0.1)])
def test_dlgn_and_deep_linear_take_the_keras_l2_term(make) -> None:
    net = make()
    (term,) = net.loss_terms()
    (term.weight * term.value).backward()
    for m in net.modules():
        if isinstance(m, nn.Linear):
            torch.testing.assert_close(m.weight.grad, 0.2 * m.weight.detach())
