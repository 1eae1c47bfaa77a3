"""Batched MLP training equals solo training member by member (issue 13), on the digits."""

from __future__ import annotations

import copy

import pytest
import torch
from hydra.utils import instantiate

from activation_hash.batched import BatchedMLP
from tests.batched_helpers import build_member, fit, max_relative_difference, train_solo
from tests.conftest import TINY, compose_config

RTOL = 1e-4  # measured maximum relative difference after 3 epochs: see docs/notes/batched.md


def _members(tmp_path, variants: list[list[str]], *common: str):
    return [build_member(compose_config([*TINY, *common, *v], output_dir=tmp_path / str(i)))
            for i, v in enumerate(variants)]


def _solo_train(member, epochs: int):
    """What Lightning's automatic optimization does per batch: zero_grad, forward, CE, backward, step."""
    net = copy.deepcopy(member.net)
    optimizer = instantiate(member.cfg.optimizer)(params=net.parameters())
    return train_solo(net, member.datamodule.train_dataloader(), optimizer, epochs)


def _max_rel_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        if not p.dtype.is_floating_point:
            assert torch.equal(p, q), name  # num_batches_tracked
    return max_relative_difference(a, b)


VARIANTS = [["seed=0", "model.width=16"], ["seed=1", "model.width=7"],
            ["seed=2", "model.width=24", "data.label_noise=0.3"]]


def test_initial_weights_and_data_order_are_a_solo_runs(tmp_path) -> None:
    members = _members(tmp_path, VARIANTS)
    batched = BatchedMLP([m.net for m in members])
    for i, m in enumerate(members):
        again = build_member(m.cfg)  # the same construction run(cfg) uses, from scratch
        assert _max_rel_diff(batched.member_state(i, copy.deepcopy(m.net)), again.net) == 0
        for (x1, y1), (x2, y2) in zip(m.datamodule.train_dataloader(), again.datamodule.train_dataloader()):
            assert torch.equal(x1, x2) and torch.equal(y1, y2)
    # members really differ: other seeds, other noisy labels
    assert not torch.equal(members[0].datamodule.y_train, members[2].datamodule.y_train)


@pytest.mark.parametrize("extra", [[], ["model.batch_norm=true"], ["optimizer=sgd"],
                                   ["optimizer.weight_decay=0.01"], ["model.depth=2"],
                                   # Keras L2 on every weight matrix (the output layer's too), padded widths
                                   ["model.depth=2", "model.l2=0.01"]])
def test_final_weights_equal_solo_runs(tmp_path, extra) -> None:
    members = _members(tmp_path, VARIANTS, *extra)
    batched = BatchedMLP([m.net for m in members])
    fit(batched, [m.datamodule.train_dataloader() for m in members], instantiate(members[0].cfg.optimizer), 3)
    for i, m in enumerate(members):
        solo = _solo_train(m, 3)
        got = batched.member_state(i, copy.deepcopy(m.net))
        assert _max_rel_diff(got, solo) < RTOL, (i, _max_rel_diff(got, solo))
        got.train(), solo.train()
        x = m.datamodule.x_train[:128]
        assert torch.allclose(got(x), solo(x), rtol=RTOL, atol=RTOL * solo(x).abs().max().item())
        # codes: the sign of every real hidden unit, padded units never part of them
        x = m.datamodule.x_test
        solo.eval(), batched.eval()
        xs = torch.stack([x] * batched.members)
        code = batched.member_codes(xs)[i]
        assert code.shape[1] == sum(batched.widths[i][:-1])
        acts, h = [], x.flatten(1)
        for layer in list(solo)[1:]:
            h = layer(h)
            if isinstance(layer, torch.nn.ReLU):
                acts.append(h > 0)
        agree = (torch.cat(acts, 1) == code).float().mean().item()
        # with batch norm, eval mode uses the running mean, which carries the pre-norm bias's rounding
        # noise (see activation_hash.batched.mlp.rounding_noise_keys): a few percent of the bits near 0 flip, as between any two BLAS builds
        assert agree > (0.95 if batched.batch_norm else 0.999), agree


def test_early_stopped_member_stops_changing(tmp_path) -> None:
    members = _members(tmp_path, VARIANTS)
    batched = BatchedMLP([m.net for m in members])
    fit(batched, [m.datamodule.train_dataloader() for m in members], instantiate(members[0].cfg.optimizer), 3,
        stop_epoch=[3, 1, 2])
    for i, epochs in enumerate([3, 1, 2]):
        solo = _solo_train(members[i], epochs)
        assert _max_rel_diff(batched.member_state(i, copy.deepcopy(members[i].net)), solo) < RTOL


def test_padded_units_stay_zero(tmp_path) -> None:
    members = _members(tmp_path, VARIANTS, "model.batch_norm=true")
    batched = BatchedMLP([m.net for m in members])
    fit(batched, [m.datamodule.train_dataloader() for m in members], instantiate(members[0].cfg.optimizer), 2)
    w0, w1 = batched.weight[0][1], batched.weight[1][1]  # member 1 has width 7 of 24
    assert torch.all(w0[:, 7:] == 0) and torch.all(w1[7:] == 0) and torch.all(batched.bias[0][1, 0, 7:] == 0)


def test_refuses_different_depths(tmp_path) -> None:
    members = _members(tmp_path, [["model.depth=1"], ["model.depth=2"]])
    with pytest.raises(ValueError, match="model.depth"):
        BatchedMLP([m.net for m in members])


def test_the_solo_reference_loop_is_runs_trajectory(tmp_path) -> None:
    """The plain loop the batched members are checked against trains as run(cfg) does: same test
    accuracy and the same eval-mode codes' redundancy after 3 epochs."""
    from tests.batched_helpers import member_metrics
    from activation_hash.run import run

    cfg = compose_config([*TINY, "trainer.max_epochs=3", "codes.epochs=[3]", "seed=4"], output_dir=tmp_path / "r")
    result = run(cfg)
    member = build_member(cfg)
    batched = BatchedMLP([member.net])
    fit(batched, [member.datamodule.train_dataloader()], instantiate(cfg.optimizer), 3)
    again = member_metrics(batched, [member.datamodule])[0]
    assert again["test/net_acc"] == pytest.approx(result["test/net_acc"])
    assert again["test/redundancy"] == pytest.approx(result["test/redundancy"])
    assert again["test/knn_acc"] == pytest.approx(result["test/knn_acc"])


def test_member_l2_terms_are_each_solo_networks_keras_l2(tmp_path) -> None:
    """Per member, the solo MLP's keras_l2 value (every Linear weight, the output layer's too, no
    biases; padded zeros add nothing), and its gradient 2 * l2 * W on the member's own weights."""
    from activation_hash.models.loss_terms import keras_l2

    members = _members(tmp_path, VARIANTS, "model.depth=2", "model.l2=0.5")
    batched = BatchedMLP([m.net for m in members])
    (term,) = batched.member_loss_terms()
    assert term.name == "l2" and term.weight == 0.5 and term.value.shape == (3,)
    for i, m in enumerate(members):
        expected = keras_l2(m.net, 0.5).value
        assert term.value[i].item() == pytest.approx(expected.item(), rel=1e-6)
        assert expected.item() > sum(lin.weight.pow(2).sum().item() for lin in list(m.net)[1:-1]
                                     if isinstance(lin, torch.nn.Linear))  # the output layer counts
    (term.weight * term.value).sum().backward()
    assert torch.equal(batched.weight[-1].grad, 2 * 0.5 * batched.weight[-1].detach())
    assert batched.bias[0].grad is None or torch.all(batched.bias[0].grad == 0)


def test_refuses_members_with_different_l2(tmp_path) -> None:
    members = _members(tmp_path, [["model.l2=0.1"], ["model.l2=0.2"]])
    with pytest.raises(ValueError, match="model.l2"):
        BatchedMLP([m.net for m in members])
    assert BatchedMLP([members[0].net]).l2 == 0.1
