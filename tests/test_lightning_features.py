"""Lightning features a user reaches for work unchanged through run(cfg) and the composed config."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from activation_hash.run import run
from tests.conftest import TINY, compose_config


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_fast_dev_run_takes_one_step_and_writes_a_result(tiny_cfg) -> None:
    cfg = tiny_cfg("trainer.fast_dev_run=true", "codes.epochs=[0,1]", "trainer.max_epochs=1")
    result = run(cfg)
    out = Path(cfg.output_dir)
    assert (out / "result.json").is_file() and result["run_dir"] == str(out)
    assert [(r["epoch"], r["split"]) for r in _rows(out / "encoding.jsonl")] == [
        (0, "train"), (0, "test"), (1, "train"), (1, "test")]
    assert result["epochs_trained"] == 1


def test_gradient_clip_and_accumulation_reach_the_trainer(tiny_cfg) -> None:
    plain = run(tiny_cfg("codes.epochs=[2]"))
    clipped = run(compose_config([*TINY, "codes.epochs=[2]", "trainer.gradient_clip_val=1e-4"],
                                 output_dir=Path(plain["run_dir"]).parent / "clip"))
    accumulated = run(compose_config([*TINY, "codes.epochs=[2]", "trainer.accumulate_grad_batches=2"],
                                     output_dir=Path(plain["run_dir"]).parent / "acc"))
    # a tiny clip norm barely moves the net: its training differs from the plain run
    assert clipped["test/net_acc"] != plain["test/net_acc"] or clipped["test/net_loss"] != plain["test/net_loss"]
    assert accumulated["test/net_loss"] != plain["test/net_loss"]


def test_lr_monitor_and_step_checkpoints_as_user_callbacks(tiny_cfg) -> None:
    cfg = tiny_cfg("+callbacks.lr._target_=pytorch_lightning.callbacks.LearningRateMonitor",
                   "+callbacks.lr.logging_interval=step",
                   "+callbacks.ckpt._target_=pytorch_lightning.callbacks.ModelCheckpoint",
                   "+callbacks.ckpt.every_n_train_steps=3", "+callbacks.ckpt.save_top_k=-1",
                   "+callbacks.ckpt.dirpath=${output_dir}/checkpoints", "trainer.enable_checkpointing=true",
                   "data.batch_size=100")
    run(cfg)
    out = Path(cfg.output_dir)
    rows = _csv(out / "metrics.csv")
    lr_rows = [r for r in rows if r.get("lr-Adam") or r.get("lr-SGD")]
    steps_per_epoch = 3  # 300 digits (minus the validation share) in batches of 100
    assert len(lr_rows) >= 2 * (steps_per_epoch - 1)  # one per optimizer step, not per fused chunk
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("*.ckpt"))
    assert any("step=3" in name for name in ckpts), ckpts


def test_ddp_trainer_composes_and_runs_on_one_cpu(tiny_cfg) -> None:
    cfg = tiny_cfg("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.max_epochs=1",
                   "codes.epochs=[0,1]")
    assert cfg.trainer.strategy == "ddp"
    result = run(cfg)
    assert [r["epoch"] for r in _rows(Path(cfg.output_dir) / "encoding.jsonl")] == [0, 0, 1, 1]
    assert 0 <= result["test/knn_acc"] <= 1
