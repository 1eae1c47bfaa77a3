"""Step-limited studies state their schedules in optimizer steps: a 10-image sample-size run ends at the
learning rate of a 40,000-image run (computed from the configured scheduler through
Classifier.configure_optimizers, stepped as Lightning steps it, without training)."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from activation_hash.models.classifier import Classifier
from activation_hash.models.schedulers import step_lr_in_steps
from tests.conftest import compose_config


def lr_trajectory(overrides: list[str]) -> list[float]:
    """The learning rate of every optimizer step of the run `overrides` configures: Lightning steps an
    "epoch" scheduler after each epoch (ceil(train_size / batch) steps) and a "step" one after each step."""
    cfg = compose_config(overrides)
    net = torch.nn.Linear(2, 2)
    module = Classifier(net, 2, optimizer=instantiate(cfg.optimizer), scheduler=instantiate(cfg.scheduler))
    conf = module.configure_optimizers()
    optimizer, scheduler, interval = conf["optimizer"], conf["lr_scheduler"]["scheduler"], conf["lr_scheduler"]["interval"]
    per_epoch = math.ceil(cfg.data.train_size / cfg.data.batch_size)
    lrs = []
    optimizer.step()   # (no gradients: changes nothing; only so the scheduler sees an optimizer step first)
    for step in range(cfg.trainer.max_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        if interval == "step" or (step + 1) % per_epoch == 0:
            scheduler.step()
    return lrs


@pytest.mark.parametrize("profile", ["paper", "smoke"])
def test_every_size_has_the_same_lr_at_the_same_step(profile: str) -> None:
    base = ["+experiment=sample_size_cifar10", f"profile={profile}", "model.width=10"]
    small = lr_trajectory([*base, "data.train_size=10"])
    large = lr_trajectory([*base, "data.train_size=40000"])
    assert small[-1] == large[-1]
    assert small == large
    if profile == "paper":   # the 40,000-image run keeps the paper's x0.1 every 20 epochs (625 steps each)
        assert large[20 * 625 - 1] == pytest.approx(0.01) and large[20 * 625] == pytest.approx(0.001)


def test_the_epoch_schedule_would_differ() -> None:
    """The check can fail: with the recipe's per-epoch StepLR a 10-image run decays 625x sooner."""
    base = ["+experiment=sample_size_cifar10", "profile=smoke", "model.width=10", "scheduler=step",
            "scheduler.step_size=20"]
    small = lr_trajectory([*base, "data.train_size=10"])
    large = lr_trajectory([*base, "data.train_size=40000"])
    assert small[-1] < 1e-10 < large[-1]


def test_step_lr_in_steps_is_stepped_per_step() -> None:
    net = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    scheduler = step_lr_in_steps(optimizer, step_size=3, gamma=0.5)
    assert scheduler.interval == "step"
    lrs = []
    for _ in range(7):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    with pytest.raises(ValueError, match="scheduler.step_size=0"):
        step_lr_in_steps(optimizer, step_size=0)
    module = Classifier(net, 2, optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
                        scheduler=lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, 5))
    assert module.configure_optimizers()["lr_scheduler"]["interval"] == "epoch"   # as before
