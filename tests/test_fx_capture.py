"""modularize_relus: functional ReLU calls become hookable modules, outputs stay identical, and the
recorded codes equal the pre-activation signs computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from activation_hash.codes import CodeRecorder, describe_units
from activation_hash.codes.fx import UntraceableModelError, modularize_relus
from activation_hash.models.zoo import custom
from tests.zoo import build


class Toy(nn.Module):
    """Every functional spelling, an in-place call whose input is read again, and a residual add."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3, self.out = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = F.relu(self.fc1(x))
        h2 = torch.relu(self.fc2(h1)) + h1         # residual add
        c = self.fc3(h2)
        c.relu_()                                  # in place: c is read below
        h3 = F.leaky_relu(c - 0.5, 0.2)
        return self.out(h3 + h2 + c)


def toy_pre_activations(m: Toy, x: torch.Tensor) -> list[torch.Tensor]:
    """The inputs of the four ReLU-like calls, by explicit matrix products."""
    a = x @ m.fc1.weight.T + m.fc1.bias
    h1 = a.clamp(min=0)
    b = h1 @ m.fc2.weight.T + m.fc2.bias
    h2 = b.clamp(min=0) + h1
    c = h2 @ m.fc3.weight.T + m.fc3.bias
    return [a, b, c, c.clamp(min=0) - 0.5]


def test_toy_codes_equal_hand_computed_signs() -> None:
    torch.manual_seed(0)
    toy = Toy()
    net = modularize_relus(toy)
    x = torch.randn(64, 6)
    with torch.no_grad():
        assert torch.equal(net(x), toy(x))
        with CodeRecorder(net) as rec:
            net(x)
            bits = rec.take().numpy()
            names, units = rec.layer_names, rec.layer_units
        expected = np.concatenate([(p > 0).numpy() for p in toy_pre_activations(toy, x)], axis=1)
    assert names == ["relu", "relu_1", "relu_2", "leaky_relu"] and units == [8, 8, 8, 8]
    np.testing.assert_array_equal(bits, expected)
    assert 0 < bits.mean() < 1
    modules = dict(net.named_modules())
    assert modules["relu_2"].inplace and not modules["relu"].inplace
    assert modules["leaky_relu"].negative_slope == 0.2


def test_gradients_and_original_model_are_unchanged() -> None:
    torch.manual_seed(1)
    toy = Toy()
    net = modularize_relus(toy)
    assert not any(isinstance(m, (nn.ReLU, nn.LeakyReLU)) for m in toy.modules())
    x = torch.randn(10, 6)
    toy(x).sum().backward()
    expected = [p.grad.clone() for p in toy.parameters()]
    toy.zero_grad()
    net(x).sum().backward()
    for got, want in zip([p.grad for p in toy.parameters()], expected):  # parameters are shared
        torch.testing.assert_close(got, want, rtol=0, atol=0)


class Block(nn.Module):
    """kuangliu/pytorch-cifar's BasicBlock, functional ReLUs."""

    def __init__(self, planes: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(planes, planes, 3, padding=1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False), nn.BatchNorm2d(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + x)


class FunctionalResNet(nn.Module):
    def __init__(self, planes: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(1, planes, 3, padding=1)
        self.layer1 = nn.Sequential(Block(planes), Block(planes))
        self.linear = nn.Linear(planes, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer1(F.relu(self.conv1(x), inplace=True))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


@pytest.mark.parametrize("train", [True, False])
def test_residual_network_keeps_outputs_and_names_sites_by_owner(train: bool) -> None:
    torch.manual_seed(2)
    model = FunctionalResNet().train(train)
    net = modularize_relus(model)
    assert net.training == train
    x = torch.rand(5, 1, 12, 12)
    torch.testing.assert_close(net(x), model(x), rtol=0, atol=0)
    assert describe_units(net, (1, 12, 12)) == [
        ("relu", 576), ("layer1.0.relu", 576), ("layer1.0.relu_1", 576),
        ("layer1.1.relu", 576), ("layer1.1.relu_1", 576)]


def test_module_relus_are_kept_and_cnns_trace() -> None:
    torch.manual_seed(3)
    model = build("resnet20", (3, 16, 16), 10, base_width=4).eval()
    net = modularize_relus(model)
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(net(x), model(x), rtol=0, atol=0)
    assert describe_units(net, (3, 16, 16)) == describe_units(model, (3, 16, 16))


class Clamps(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = F.relu6(x) + x.clamp(min=0.5) + torch.clamp(x, min=0, max=1) + F.hardtanh(x)
        return kept + torch.clamp(x, min=0) + x.clamp_min(0) + torch.clip(x, 0)


def test_only_clamps_at_zero_become_relus() -> None:
    net = modularize_relus(Clamps())
    assert [name for name, _ in describe_units(net, (7,))] == ["relu", "relu_1", "relu_2"]
    x = torch.randn(4, 7)
    torch.testing.assert_close(net(x), Clamps()(x), rtol=0, atol=0)


class Branchy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow
            return F.relu(x)
        return -x


class DynamicSlope(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, x.shape[1] * 0.01)


def test_untraceable_models_get_a_clear_error() -> None:
    with pytest.raises(UntraceableModelError, match=r"cannot trace Branchy .*nn\.ReLU modules"):
        modularize_relus(Branchy())
    with pytest.raises(ValueError, match="negative_slope is computed in the forward pass"):
        modularize_relus(DynamicSlope())


class Outside(nn.Module):
    """A network built without knowing the input shape, with one functional ReLU."""

    def __init__(self, n_out: int, hidden: int = 5):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, hidden), nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x.flatten(1)).relu())


def test_custom_adapter_builds_and_modularizes() -> None:
    net = custom((1, 2, 2), 3, Outside, num_classes_arg="n_out", hidden=6)
    assert describe_units(net, (1, 2, 2)) == [("relu", 6)] and net(torch.rand(2, 1, 2, 2)).shape == (2, 3)
    plain = custom((1, 2, 2), 3, Outside(3), num_classes_arg=None, modularize=False)
    assert isinstance(plain, Outside)
    with pytest.raises(ValueError, match="no ReLU-like modules"):
        describe_units(plain, (1, 2, 2))


def test_code_units_survive_tracing_and_record_the_sign_of_their_input() -> None:
    from activation_hash.codes.capture import CodeRecorder
    from activation_hash.codes.fx import modularize_relus
    from activation_hash.codes.units import CodeUnit

    class Latent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hidden, self.latent, self.latent_code, self.head = nn.Linear(4, 5), nn.Linear(5, 3), CodeUnit(), nn.Linear(3, 2)

        def forward(self, x):
            return self.head(self.latent_code(self.latent(F.relu(self.hidden(x)))))

    torch.manual_seed(0)
    net = Latent()
    traced = modularize_relus(net)
    x = torch.randn(64, 4)
    with CodeRecorder(traced) as rec:
        traced(x)
        bits = rec.take()
    assert rec.layer_names == ["relu", "latent_code"] and rec.layer_units == [5, 3]
    z = net.latent(F.relu(net.hidden(x)))
    assert torch.equal(bits[:, 5:], z > 0) and torch.equal(bits[:, :5], net.hidden(x) > 0)


class Penalised(nn.Module):
    """The README's loss-terms network, with functional ReLUs, a penalised submodule and a public method."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.latent, self.head = nn.Linear(4, 6), nn.Linear(6, 3), nn.Linear(3, 2)
        self.inner = PenalisedInner()
        self.epochs_seen: list[int] = []
        self.weight = 0.0

    def set_epoch(self, epoch: int) -> None:
        self.epochs_seen.append(epoch)
        self.weight = 0.5 * epoch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.z = self.latent(F.relu(self.body(x)))
        return self.head(self.inner(self.z))

    def loss_terms(self):
        from activation_hash.models.loss_terms import LossTerm
        return [LossTerm("latent_l2", self.z.pow(2).mean(), self.weight)]

    def describe(self, prefix: str = "") -> str:
        return f"{prefix}{len(self.epochs_seen)}"


class PenalisedInner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.h = self.fc(x)
        return F.relu(self.h)

    def loss_terms(self):
        from activation_hash.models.loss_terms import LossTerm
        return [LossTerm("inner_l1", self.h.abs().mean())]


def test_traced_network_keeps_loss_terms_set_epoch_and_public_methods() -> None:
    torch.manual_seed(0)
    reference = Penalised()
    net = Penalised()
    net.load_state_dict(reference.state_dict())
    traced = modularize_relus(net)
    # the functional relus became modules, the one of the penalised submodule too
    assert [n for n, _ in describe_units(traced, (4,))] == ["relu", "inner.relu"]
    x = torch.randn(16, 4)
    assert torch.equal(traced(x), reference(x))
    traced.set_epoch(3)
    reference.set_epoch(3)
    assert traced.describe(prefix="n=") == "n=1"
    # what Classifier sums: loss_terms() of every module that has them, after the forward pass
    with_terms = [m for m in traced.modules() if callable(getattr(m, "loss_terms", None))]
    assert len(with_terms) == 2
    got = {t.name: (float(t.value), t.weight) for m in with_terms for t in m.loss_terms()}
    want = {t.name: (float(t.value), t.weight) for m in (reference, reference.inner) for t in m.loss_terms()}
    assert got == want and got["latent_l2"][1] == 1.5
    loss = sum(t.weight * t.value for m in with_terms for t in m.loss_terms())
    loss.backward()  # the stored latent is the traced graph's, with gradients to the shared weights
    assert net.body.weight.grad is not None and net.inner.fc.weight.grad is not None


class DigitsPenalised(nn.Module):
    """A user network for the 8x8 digits: one nn.ReLU module, one functional relu, a latent penalty."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.fc1, self.act1, self.fc2 = nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 12)
        self.latent, self.head = nn.Linear(12, 4), nn.Linear(4, classes)
        self.weight = 0.0

    def set_epoch(self, epoch: int) -> None:
        self.weight = 0.1 * (epoch + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.z = self.latent(F.relu(self.fc2(self.act1(self.fc1(x.flatten(1))))))
        return self.head(self.z)

    def loss_terms(self):
        from activation_hash.models.loss_terms import LossTerm
        return [LossTerm("latent_l2", self.z.pow(2).mean(), self.weight, weight_name="gamma")]


def test_model_custom_keeps_loss_terms_through_tracing(tmp_path) -> None:
    """model=custom traced (modularize=true) trains exactly as untraced: same loss terms, same losses."""
    import csv
    from activation_hash.run import run
    from tests.conftest import TINY, compose_config
    tiny = [o for o in TINY if not o.startswith("model.")]
    losses = {}
    for modularize in (True, False):
        cfg = compose_config([*tiny, "model=custom", f"model.network._target_={__name__}.DigitsPenalised",
                              "model.num_classes_arg=classes", "model.input_shape_arg=null",
                              f"model.modularize={str(modularize).lower()}", "codes.save=false"],
                             output_dir=tmp_path / str(modularize))
        run(cfg)
        with open(tmp_path / str(modularize) / "metrics.csv") as f:
            rows = [r for r in csv.DictReader(f) if r.get("train/loss_latent_l2")]
        losses[modularize] = [(r["train/loss"], r["train/loss_latent_l2"], r["train/gamma"]) for r in rows]
        units = [json.loads(line)["n_bits"] for line in (tmp_path / str(modularize) / "encoding.jsonl").open()]
        assert units[0] == (24 if modularize else 12)  # traced: the functional relu is captured too
    assert len(losses[True]) == 2 and losses[True] == losses[False]
    assert [float(g) for _, _, g in losses[True]] == pytest.approx([0.1, 0.2])
