"""The one Classifier trains with Lightning's automatic optimization: Trainer features a user
reaches for work unchanged, and networks contribute extra loss terms with per-epoch weights."""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from activation_hash.data import InMemoryDataModule
from activation_hash.models.classifier import Classifier
from activation_hash.models.loss_terms import Geometric, LossTerm
from activation_hash.models.mlp import MLP
from activation_hash.run import run


def _fit(net: nn.Module, epochs: int = 2, **trainer_kwargs) -> pl.Trainer:
    pl.seed_everything(0, verbose=False)
    dm = InMemoryDataModule(name="digits", train_size=200, test_size=50, batch_size=32)
    module = Classifier(net, 10, optimizer=functools.partial(torch.optim.SGD, lr=0.5))
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", devices=1,
                         **trainer_kwargs)
    trainer.fit(module, datamodule=dm)
    return trainer


def _net() -> nn.Module:
    torch.manual_seed(0)
    return MLP((1, 8, 8), 10, depth=1, width=16)


def test_gradient_clipping_reaches_the_optimizer() -> None:
    free, clipped = _net(), _net()
    start = [p.detach().clone() for p in clipped.parameters()]
    _fit(free)
    _fit(clipped, gradient_clip_val=1e-6)
    moved = sum((p.detach() - s).abs().max().item() for p, s in zip(clipped.parameters(), start))
    # 14 steps of SGD lr 0.5 with gradients clipped to norm 1e-6 move no weight by more than 1e-5
    assert moved < 1e-4
    assert any((a - b).abs().max() > 1e-2 for a, b in zip(free.parameters(), clipped.parameters()))


def test_accumulate_grad_batches_halves_the_optimizer_steps() -> None:
    one, two = _fit(_net()), _fit(_net(), accumulate_grad_batches=2)
    assert one.global_step == 2 * 7  # 200 samples / 32 = 7 batches per epoch
    assert two.global_step == 2 * 4  # ceil(7 / 2) steps per epoch


def test_fast_dev_run_takes_one_step_and_captures(tiny_cfg) -> None:
    result = run(tiny_cfg("trainer.fast_dev_run=true", "codes.epochs=all"))
    rows = [json.loads(line) for line in (Path(result["run_dir"]) / "encoding.jsonl").read_text().splitlines()]
    assert sorted({r["epoch"] for r in rows}) == [0, 1]
    assert [r["step"] for r in rows if r["epoch"] == 1] == [1, 1]


def test_lr_monitor_and_step_checkpoints_as_user_callbacks(tiny_cfg, tmp_path) -> None:
    ckpt_dir = tmp_path / "ckpt"
    cfg = tiny_cfg("scheduler=step", "scheduler.step_size=1",
                   "+callbacks.lr._target_=pytorch_lightning.callbacks.LearningRateMonitor",
                   "+callbacks.lr.logging_interval=step",
                   "+callbacks.ckpt._target_=pytorch_lightning.callbacks.ModelCheckpoint",
                   f"+callbacks.ckpt.dirpath={ckpt_dir}", "+callbacks.ckpt.every_n_train_steps=2",
                   "+callbacks.ckpt.save_top_k=-1", "trainer.enable_checkpointing=true")
    result = run(cfg)
    # 300 samples / 128 = 3 steps per epoch, 2 epochs: checkpoints at steps 2, 4, 6
    assert sorted(int(p.stem.split("step=")[1]) for p in ckpt_dir.glob("*.ckpt")) == [2, 4, 6]
    with open(Path(result["run_dir"]) / "metrics.csv") as f:
        lrs = [row for row in csv.DictReader(f) if row.get("lr-Adam")]
    assert len(lrs) == 6  # one learning rate per optimizer step


class _Penalised(nn.Module):
    """A linear latent with an L2 penalty whose weight grows by x2 per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.body = MLP((1, 8, 8), 4, depth=1, width=8)
        self.head = nn.Linear(4, 10)
        self.schedule = Geometric(0.5, 2.0, maximum=3.0)
        self.seen: list[tuple[int, float]] = []

    def set_epoch(self, epoch: int) -> None:
        self.weight = self.schedule(epoch)
        self.seen.append((epoch, self.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._z = self.body(x)
        return self.head(self._z)

    def loss_terms(self) -> list[LossTerm]:
        return [LossTerm("latent_l2", self._z.pow(2).mean(), self.weight, weight_name="gamma")]


def test_geometric_schedule_grows_while_below_its_maximum() -> None:
    values = [Geometric(0.01, 1.05, 1e6)(e) for e in range(4)]
    assert values == pytest.approx([0.01, 0.0105, 0.011025, 0.01157625])
    assert [Geometric(0.5, 2.0, 3.0)(e) for e in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_loss_terms_are_added_weighted_and_logged(tmp_path) -> None:
    net = _Penalised()
    logger = pl.loggers.CSVLogger(tmp_path, name="", version="")
    pl.seed_everything(0, verbose=False)
    dm = InMemoryDataModule(name="digits", train_size=200, test_size=50, batch_size=50)
    module = Classifier(net, 10, optimizer=functools.partial(torch.optim.SGD, lr=0.01))
    trainer = pl.Trainer(max_epochs=4, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
                         limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    assert net.seen == [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0)]
    with open(tmp_path / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/gamma")]
    assert [float(r["train/gamma"]) for r in rows] == [0.5, 1.0, 2.0, 4.0]
    assert all(float(r["train/loss_latent_l2"]) > 0 for r in rows)

    # the weighted term is in the gradient: one step by hand equals one Classifier step
    torch.manual_seed(1)
    a, b = _Penalised(), _Penalised()
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        m.set_epoch(2)
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    loss = nn.functional.cross_entropy(a(x), y) + 2.0 * a._z.pow(2).mean()
    loss.backward()
    step = Classifier(b, 10, optimizer=torch.optim.SGD).training_step((x, y), 0)
    step.backward()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad)


def _jsonl(result: dict) -> list[dict]:
    return [json.loads(line) for line in (Path(result["run_dir"]) / "encoding.jsonl").read_text().splitlines()]


def test_max_epochs_zero_analyses_the_network_at_initialization(tiny_cfg) -> None:
    result = run(tiny_cfg("trainer.max_epochs=0", "codes.epochs=[0]"))
    rows = _jsonl(result)
    assert [(r["epoch"], r["split"]) for r in rows] == [(0, "train"), (0, "test")]
    assert result["epochs_trained"] == 0 and "test/knn_acc" in result


def test_a_dead_network_is_reported_not_scored(tiny_cfg) -> None:
    # on this split and seed, Adam steps of 1e6 leave every unit constant after two epochs
    rows = _jsonl(run(tiny_cfg("optimizer.lr=1e6", "codes.epochs=[0,2]", "data.options.split=sequential")))
    init, last = rows[1], rows[-1]
    assert init["dead_network"] is False and init["test/knn_acc"] is not None
    assert last["dead_network"] is True and last["n_bits_used"] == 0
    assert last["test/knn_acc"] is None and last["test/redundancy"] is None
    assert last["test/net_acc"] is not None  # the network itself still has an accuracy


def test_epoch_means_epochs_trained_in_every_row(tiny_cfg) -> None:
    result = run(tiny_cfg("codes.epochs=[0,1,2]", "trainer.check_val_every_n_epoch=1"))  # validation asked for
    with open(Path(result["run_dir"]) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    train_rows = [float(r["epoch"]) for r in rows if r.get("train/loss")]
    val_rows = [float(r["epoch"]) for r in rows if r.get("val/acc")]
    capture_rows = [float(r["epoch"]) for r in rows if r.get("test/knn_acc")]
    assert train_rows == [1.0, 2.0] and val_rows == [1.0, 2.0] and capture_rows == [0.0, 1.0, 2.0]
    assert [r["epoch"] for r in _jsonl(result) if r["split"] == "test"] == [0, 1, 2]


def test_metrics_device_selection_on_cpu(tiny_cfg) -> None:
    from activation_hash.devices import metrics_device
    cpu = torch.device("cpu")
    assert metrics_device("auto", cpu) is None and metrics_device("cpu", cpu) is None
    assert metrics_device("auto", torch.device("cuda", 1)) == torch.device("cuda", 1)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"metrics.device='cuda:0': no CUDA device"):
            metrics_device("cuda:0", cpu)
        with pytest.raises(ValueError, match=r"metrics.device=cuda: no CUDA device"):
            run(tiny_cfg("metrics.device=cuda"))  # refused by the schema before training: no run directory yet
    with pytest.raises(ValueError, match=r"metrics.device='tpu9': allowed auto, cpu, cuda, cuda:N"):
        metrics_device("tpu9", cpu)


def test_ddp_trainer_composes_and_runs_on_one_cpu(tiny_cfg) -> None:
    cfg = tiny_cfg("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.max_epochs=1",
                   "codes.epochs=[0,1]")
    assert cfg.trainer.strategy == "ddp"
    result = run(cfg)
    assert [r["epoch"] for r in _jsonl(result)] == [0, 0, 1, 1]
    assert 0 <= result["test/knn_acc"] <= 1
