"""StackedNet (torch.func stacking of one architecture's members) against the solo nets it copies.

    OMP_NUM_THREADS=1 python -m pytest tests/test_stacked.py -q

Oracle: each member's solo network, run / trained by itself (`tests/batched_helpers.train_solo`), its codes
read by `CodeRecorder`. Measured on this CPU (torch 2.13), at initialization: logits equal bit for bit for
VGG and ResNet, within 6.0e-7 relative for ResNeXt and DenseNet, BN running stats within 2.5e-7
(max |a - b| / max |b| per tensor); code bits identical for every tiny zoo model; gradients
within 2.2e-5 relative (VGG along 4 Adam steps, 6 seeds).
"""

from __future__ import annotations

import copy
import functools
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from activation_hash.batched.capture import member_split
from tests.batched_helpers import fit, train_solo
from activation_hash.batched.stacked import StackedNet, stackable_reason
from activation_hash.codes.capture import CodeRecorder, describe_units
from activation_hash.codes.collect import collect_codes
from tests.zoo import build

TINY = ("vgg16", "vgg19", "resnet18", "resnet20", "resnet32", "resnext", "densenet")


def tiny(name: str, input_shape=(1, 28, 28), num_classes: int = 10) -> nn.Module:
    """conf/model/tiny/<name>.yaml's network."""
    return build(f"tiny/{name}", input_shape, num_classes)


def members(name: str, m: int = 2, seed: int = 0, input_shape=(1, 28, 28)) -> list[nn.Module]:
    torch.manual_seed(seed)
    return [tiny(name, input_shape) for _ in range(m)]


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def state_rel(a: nn.Module, b: nn.Module) -> float:
    """Worst max_rel over the float state tensors; integer buffers (num_batches_tracked) must be equal."""
    worst = 0.0
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        if p.dtype.is_floating_point:
            worst = max(worst, max_rel(p, q))
        else:
            assert torch.equal(p, q), name
    return worst


@pytest.mark.parametrize("name", ["resnet20", "vgg16", "densenet"])
def test_initial_state_is_each_solo_bit_for_bit(name):
    solos = members(name, 3)
    net = StackedNet(solos)
    assert net.members == 3
    for m, solo in enumerate(solos):
        back = net.member_state(m, copy.deepcopy(tiny(name)))
        for (key, p), q in zip(back.state_dict().items(), solo.state_dict().values(), strict=True):
            assert torch.equal(p, q), key
    # real parameters and buffers of the module, stacked on a leading member dimension
    stacked = dict(net.net.named_parameters())
    assert {k for k, _ in solos[0].named_parameters()} == set(stacked)
    assert all(p.shape[0] == 3 and isinstance(p, nn.Parameter) for p in net.parameters())
    assert {k for k, _ in net.named_buffers()} == {f"net.{k}" for k, _ in solos[0].named_buffers()}


@pytest.mark.parametrize("name", TINY)
def test_forward_logits_codes_and_bn_stats_match_each_solo(name):
    solos = members(name, 2)
    shape = (1, 28, 28)
    assert stackable_reason(solos[0], shape) is None
    net = StackedNet(solos, input_shape=shape)
    units = [u for _, u in describe_units(solos[0], shape)]
    assert net.widths == [units + [10]] * 2
    x = torch.randn(2, 4, *shape)
    for train in (False, True):
        net.train(train)
        keep: list[torch.Tensor] = []
        logits = net(x, keep)
        assert logits.shape == (2, 4, 10) and [k.shape for k in keep] == [(2, 4, u) for u in units]
        for m, solo in enumerate(solos):
            solo.train(train)
            with CodeRecorder(solo) as rec:
                expected = solo(x[m])
                bits = rec.take()
            # measured: 0 (VGG, ResNet), <= 6.1e-7 (ResNeXt, DenseNet)
            assert max_rel(logits[m], expected) <= 1e-5
            mine = torch.cat([keep[i][m, :, :net.widths[m][i]] > 0 for i in range(len(keep))], dim=1)
            assert torch.equal(mine, bits)
            if not train:  # a second forward (in train mode it would update the stats again)
                assert torch.equal(net.member_codes(x)[m], bits)
            # running stats after one train-mode forward (and untouched by the eval one)
            assert state_rel(net.member_state(m, copy.deepcopy(solo)), solo) <= 1e-6


def test_member_split_works_unchanged_on_a_stacked_net():
    """The group trainer's capture of one member (`batched.capture.member_split`, written for
    BatchedMLP) on a StackedNet gives each member what `collect_codes` gives for its solo net."""
    shape = (1, 8, 8)
    solos = members("resnet20", 2, input_shape=shape)
    net = StackedNet(solos, input_shape=shape)
    data = [SimpleNamespace(x_train=torch.randn(10, *shape), y_train=torch.randint(0, 10, (10,)),
                            x_test=torch.randn(6, *shape), y_test=torch.randint(0, 10, (6,))) for _ in solos]
    described = describe_units(solos[0], shape)
    layers = [0, 5, len(described) - 1]
    names, units = [n for n, _ in described], [[u for _, u in described]] * 2
    got = [member_split(net, m, data[m], layers, 4, names, units[m]) for m in range(2)]
    for m, solo in enumerate(solos):
        for split in ("train", "test"):
            x, y = getattr(data[m], f"x_{split}"), getattr(data[m], f"y_{split}")
            want = collect_codes(solo, [(x[i:i + 4], y[i:i + 4]) for i in range(0, len(y), 4)], layers)
            assert (got[m][split].codes == want.codes).all() and got[m][split].n_bits == want.n_bits
            assert got[m][split].layer_names == [want.layer_names[i] for i in layers]  # the selected ones
            assert got[m][split].acc == want.acc and abs(got[m][split].loss - want.loss) <= 1e-6 * want.loss


def adam_step(net, x, y, optimizer) -> None:
    optimizer.zero_grad()
    logits = net(x)
    sum(F.cross_entropy(logits[m], y[m]) for m in range(len(y))).backward()
    optimizer.step()


def trained_pair(name: str, shape, steps: int, batch: int):
    """Two members of `name`, stacked and trained `steps` Adam steps on random batches; the solos untouched."""
    solos = members(name, 2, seed=0, input_shape=shape)
    net = StackedNet(solos)
    xs, ys = torch.randn(steps, 2, batch, *shape), torch.randint(0, 10, (steps, 2, batch))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    for k in range(steps):
        adam_step(net, xs[k], ys[k], optimizer)
    return solos, net, xs, ys


def test_adam_training_resnet20_matches_solo_training():
    """tiny/resnet20 (batch norm, zero-padding shortcuts), 5 Adam steps, one Adam over the stacked
    parameters vs each solo with its own: worst over 10 seeds measured 4.7e-6 relative (parameters
    and BN running stats), num_batches_tracked equal."""
    steps = 5
    solos, net, xs, ys = trained_pair("resnet20", (1, 8, 8), steps, 16)
    for m, solo in enumerate(solos):
        train_solo(solo, [(xs[k, m], ys[k, m]) for k in range(steps)], torch.optim.Adam(solo.parameters(), lr=1e-3), 1)
        assert int(solo.bn1.num_batches_tracked) == steps
        assert state_rel(net.member_state(m, copy.deepcopy(solo)), solo) <= 1e-4


def test_group_fit_trains_a_stacked_net_with_per_member_early_stopping():
    """`tests/batched_helpers.fit`, the group trainer written for BatchedMLP, on a StackedNet: member 0
    trains 2 epochs, member 1 stops after 1 (its parameters and BN buffers put back after every
    later step); each equals its solo run of 2 and 1 epochs (measured 1.6e-6 and 1.3e-6 relative,
    with this branch's loop and with main's Lightning-driven `fit` alike)."""
    shape = (1, 8, 8)
    solos = members("resnet20", 2, input_shape=shape)
    net = StackedNet(solos)
    loaders = [[(torch.randn(8, *shape), torch.randint(0, 10, (8,))) for _ in range(3)] for _ in solos]
    fit(net, loaders, functools.partial(torch.optim.Adam, lr=1e-3), epochs=2, stop_epoch=[2, 1])
    for m, (solo, epochs) in enumerate(zip(solos, (2, 1))):
        train_solo(solo, loaders[m], torch.optim.Adam(solo.parameters(), lr=1e-3), epochs)
        assert int(solo.bn1.num_batches_tracked) == 3 * epochs
        assert state_rel(net.member_state(m, copy.deepcopy(solo)), solo) <= 1e-4


def test_vgg_gradients_and_bn_stats_along_the_solo_trajectory():
    """tiny/vgg16: at each of 4 solo Adam steps, a StackedNet of the solos' current states gives
    each member's logits, gradients and updated running stats (measured over seeds 0-5: gradients
8.1e-6 to 2.2e-5 relative, running stats 3.7e-7, logits 0).
    (Free-running, stacked and solo VGG trajectories part: BN biases whose true gradient is 0
    get rounding noise that Adam scales to lr-sized steps, as between a solo run and the same run
    on a permuted batch order; see docs/batched_training.md and the test below.)"""
    shape, steps, batch = (1, 16, 16), 4, 16
    solos = members("vgg16", 2, seed=0, input_shape=shape)
    optimizers = [torch.optim.Adam(s.parameters(), lr=1e-3) for s in solos]
    xs, ys = torch.randn(steps, 2, batch, *shape), torch.randint(0, 10, (steps, 2, batch))
    for k in range(steps):
        net = StackedNet(solos)
        net.train()
        logits = net(xs[k])
        sum(F.cross_entropy(logits[m], ys[k, m]) for m in range(2)).backward()
        grads = dict(net.net.named_parameters())
        for m, solo in enumerate(solos):
            solo.train()
            optimizers[m].zero_grad()
            out = solo(xs[k, m])
            F.cross_entropy(out, ys[k, m]).backward()
            assert max_rel(logits[m], out) <= 1e-5
            for key, p in solo.named_parameters():
                assert max_rel(grads[key].grad[m], p.grad) <= 1e-4, key
            assert state_rel(net.member_state(m, copy.deepcopy(solo)), solo) <= 1e-6
            optimizers[m].step()


def test_vgg_free_running_training_same_function():
    """tiny/vgg16, 4 Adam steps free-running: the trained members compute their solo's function
    (eval logits measured 7.4e-6 at seed 0, <= 1.6e-5 over 8 seeds; a solo vs itself on a permuted batch
    order: parameters differ as much, up to 0.56, in BN biases of rounding-noise gradient)."""
    shape, steps = (1, 16, 16), 4
    solos, net, xs, ys = trained_pair("vgg16", shape, steps, 32)
    net.eval()
    x_test = torch.randn(2, 64, *shape)
    logits = net(x_test)
    for m, solo in enumerate(solos):
        train_solo(solo, [(xs[k, m], ys[k, m]) for k in range(steps)], torch.optim.Adam(solo.parameters(), lr=1e-3), 1)
        solo.eval()
        assert max_rel(logits[m], solo(x_test[m])) <= 1e-3
        back = net.member_state(m, copy.deepcopy(solo))
        assert torch.equal(back.features[1].num_batches_tracked, solo.features[1].num_batches_tracked)


class WithDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))

    def forward(self, x):
        return self.body(x)


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin, self.relu = nn.Linear(16, 3), nn.ReLU()

    def forward(self, x):
        h = self.relu(self.lin(x.flatten(1)))
        return h if h.sum() > 0 else -h


def test_stackable_reason():
    dropout = stackable_reason(WithDropout(), (1, 4, 4))
    assert dropout is not None and "body.3 is Dropout" in dropout and "\n" not in dropout
    control = stackable_reason(DataDependent(), (1, 4, 4))
    assert control is not None and "vmap dry run" in control and "\n" not in control
    cumulative = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, momentum=None), nn.ReLU())
    assert ".item()" in stackable_reason(cumulative, (1, 4, 4))  # its factor is 1 / num_batches_tracked
    plain = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    assert stackable_reason(plain, (1, 4, 4)) is None  # the tiny zoo: test_forward_... above


def test_refuses_members_of_different_architectures():
    with pytest.raises(ValueError, match=r"solos\[1\]"):
        StackedNet([tiny("resnet20"), tiny("resnet32")])
    with pytest.raises(ValueError, match=r"solos\[1\]"):
        StackedNet([tiny("vgg16"), build("vgg16", (1, 28, 28), 10, width_multiplier=0.25)])


def test_tensors_stay_on_the_module_device():
    """CPU: outputs on the parameters' device, BN buffers updated in place; meta device (no
    data, but every tensor's device is tracked): forward, codes and backward stay on it."""
    shape = (1, 8, 8)
    net = StackedNet(members("resnet20", 2, input_shape=shape)).train()
    ptrs = {k: b.data_ptr() for k, b in net.named_buffers()}
    keep: list[torch.Tensor] = []
    out = net(torch.randn(2, 3, *shape), keep)
    assert out.device == keep[0].device == torch.device("cpu")
    assert ptrs == {k: b.data_ptr() for k, b in net.named_buffers()}
    assert net.net.bn1.num_batches_tracked.tolist() == [1, 1]
    meta = StackedNet(members("resnet20", 2, input_shape=shape)).to("meta").train()
    keep = []
    out = meta(torch.randn(2, 3, *shape, device="meta"), keep)
    out.sum().backward()
    devices = {out.device, *(k.device for k in keep), *(b.device for b in meta.buffers()),
               *(p.grad.device for p in meta.parameters())}
    assert devices == {torch.device("meta")}


@pytest.mark.parametrize("kind", ["stacked vgg16", "batched mlp of widths 16 and 7"])
def test_clip_norm_per_member_is_each_solos_clip_grad_norm(kind):
    """`module.clip_norm_per_member` on a group's stacked gradients vs torch's `clip_grad_norm_`
    on each solo network's own (what Lightning's norm clipping does in a solo run): the members'
    total norms and the clipped gradients agree; the clip bites (every norm above it)."""
    from activation_hash.batched.mlp import BatchedMLP
    from activation_hash.batched.module import clip_norm_per_member
    from activation_hash.models.mlp import MLP
    torch.manual_seed(0)
    if kind.startswith("stacked"):
        solos, shape = members("vgg16", 2, input_shape=(1, 8, 8)), (1, 8, 8)
        net = StackedNet(copy.deepcopy(solos))
    else:
        solos, shape = [MLP((1, 8, 8), 10, depth=2, width=w) for w in (16, 7)], (1, 8, 8)
        net = BatchedMLP(copy.deepcopy(solos))
    net.train()
    x, y = torch.randn(2, 16, *shape), torch.randint(0, 10, (2, 16))
    logits = net(x)
    sum(F.cross_entropy(logits[m], y[m]) for m in range(2)).backward()
    max_norm = 0.05
    totals = clip_norm_per_member([p.grad for p in net.parameters() if p.grad is not None], max_norm)
    clipped = []
    for m, solo in enumerate(solos):
        solo.train()
        F.cross_entropy(solo(x[m]), y[m]).backward()
        total = torch.nn.utils.clip_grad_norm_(solo.parameters(), max_norm)
        assert total > 2 * max_norm and abs(totals[m] - total) <= 1e-5 * total
        clipped.append(solo)
    for m, solo in enumerate(clipped):  # the clipped gradients, as the member's state: grads copied in
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(p.grad)
            got = net.member_state(m, copy.deepcopy(solo))
        for (name, p), q in zip(solo.named_parameters(), got.parameters()):
            assert max_rel(q, p.grad) <= 1e-5, (kind, m, name)
