"""steps_per_call: k optimizer steps per Lightning training_step train exactly as one step per call."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from activation_hash.codes import load_codes
from activation_hash.data import InMemoryDataModule
from activation_hash.data.tensor_loader import TensorBatchLoader
from activation_hash.models import NonFiniteLossError
from activation_hash.run import run
from activation_hash.validate import resolve_steps_per_call
from tests.conftest import TINY, compose_config

# 300 training digits in batches of 16: 19 batches per epoch, the last of 12 samples; with k = 16
# that is 2 calls per epoch, the last over 3 batches: a partial last chunk and a partial last batch.
PARTIAL = [*TINY, "data.batch_size=16", "codes.save=true"]


class Recorder(pl.Callback):
    """Saves the final weights, global_step and the number of on_train_batch_end calls to `path`."""

    def __init__(self, path: str):
        self.path, self.batch_end_calls = path, 0

    def on_train_batch_end(self, *args) -> None:
        self.batch_end_calls += 1

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.save({"weights": pl_module.net.state_dict(), "global_step": trainer.global_step,
                    "batch_end_calls": self.batch_end_calls}, self.path)


def _run(tmp_path: Path, name: str, *overrides: str) -> Path:
    out = tmp_path / name
    run(compose_config([*PARTIAL, *overrides, "+callbacks.recorder._target_=tests.test_fused_steps.Recorder",
                        f"+callbacks.recorder.path={tmp_path / name}.pt"], output_dir=out))
    return out


def _same_training(single: Path, fused: Path) -> None:
    a, b = torch.load(f"{single}.pt"), torch.load(f"{fused}.pt")
    assert a["weights"].keys() == b["weights"].keys()
    for key in a["weights"]:  # bit-identical (NaN where the other has NaN)
        torch.testing.assert_close(a["weights"][key], b["weights"][key], rtol=0, atol=0, equal_nan=True, msg=key)
    assert a["global_step"] == b["global_step"]
    # the same train/loss, train/acc, val/* and encoding metrics, logged at the same steps
    assert (single / "metrics.csv").read_text() == (fused / "metrics.csv").read_text()
    rows = [[{k: v for k, v in json.loads(line).items() if k != "capture_seconds"}
             for line in (out / "encoding.jsonl").read_text().splitlines()] for out in (single, fused)]
    assert rows[0] and rows[0] == rows[1]
    saved = sorted(p.name for p in (single / "codes").iterdir())
    assert saved and saved == sorted(p.name for p in (fused / "codes").iterdir())
    for name in saved:
        a, b = load_codes(single / "codes" / name), load_codes(fused / "codes" / name)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), name


# Gradient norms here stay below the study's clip value 1.0, so smaller values make clipping bite.
@pytest.mark.parametrize("overrides", [
    ["optimizer=adam"],
    ["optimizer=adam", "regularizer=gradient_clip", "trainer.gradient_clip_val=0.1", "scheduler=step",
     "scheduler.step_size=1", "scheduler.gamma=0.5"],
    ["optimizer=sgd", "regularizer=gradient_clip", "trainer.gradient_clip_val=0.01",
     "trainer.gradient_clip_algorithm=value"],
    ["optimizer=sgd", "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5"],
], ids=["adam", "adam-clip-norm-step", "sgd-clip-value", "sgd-step"])
def test_fused_steps_train_exactly_as_single_steps(tmp_path: Path, overrides: list[str]) -> None:
    single = _run(tmp_path, "single", *overrides, "steps_per_call=1")
    fused = _run(tmp_path, "fused", *overrides)  # auto: 16 here
    _same_training(single, fused)
    assert torch.load(f"{single}.pt")["batch_end_calls"] == 2 * 19
    assert torch.load(f"{fused}.pt")["batch_end_calls"] == 2 * 2


def test_nan_loss_stops_fused_training_at_the_same_point(tmp_path: Path) -> None:
    nan = ["optimizer=sgd", "optimizer.lr=1e30", "trainer.max_epochs=4", "codes.epochs=[0,1,2,3,4]"]
    for name, k in (("single", 1), ("fused", 16)):
        with pytest.raises(NonFiniteLossError, match="training loss became nan"):
            _run(tmp_path, name, *nan, f"steps_per_call={k}")
    _same_training(tmp_path / "single", tmp_path / "fused")


@pytest.mark.parametrize("value", ["0", "-2", "true", "fast", "1.5"])
def test_bad_steps_per_call_fails_before_training(tiny_cfg, value: str) -> None:
    cfg = tiny_cfg(f"steps_per_call={value}")
    with pytest.raises(ValueError, match=r"steps_per_call=.*: must be auto or an int >= 1"):
        run(cfg)
    assert not Path(cfg.output_dir).exists()


def test_explicit_steps_per_call_where_fusing_is_unsafe_fails_before_training(tiny_cfg) -> None:
    cfg = tiny_cfg("steps_per_call=4", "+trainer.max_steps=10")
    with pytest.raises(ValueError, match=r"steps_per_call=4: trainer.max_steps=10 .*use steps_per_call=1"):
        run(cfg)
    assert not Path(cfg.output_dir).exists()


@pytest.mark.parametrize("trainer, expected", [
    ({}, 16),
    ({"max_steps": -1, "accumulate_grad_batches": 1, "limit_train_batches": 1.0, "val_check_interval": None,
      "overfit_batches": 0.0, "strategy": "ddp", "precision": "16-mixed"}, 16),
    ({"max_steps": 100}, 1),
    ({"accumulate_grad_batches": 2}, 1),
    ({"limit_train_batches": 1}, 1),  # an int: one batch
    ({"limit_train_batches": 0.5}, 1),
    ({"val_check_interval": 0.25}, 1),
    ({"overfit_batches": 3}, 1),
    ({"strategy": "fsdp"}, 1),
    ({"gradient_clip_val": 1.0, "precision": "16-mixed"}, 1),
])
def test_auto_fuses_only_where_it_trains_the_same(trainer: dict, expected: int) -> None:
    datamodule = InMemoryDataModule(name="digits")
    assert resolve_steps_per_call("auto", trainer, datamodule) == expected
    assert resolve_steps_per_call(1, trainer, datamodule) == 1
    if expected == 1:
        with pytest.raises(ValueError, match="steps_per_call=8: trainer[.]"):
            resolve_steps_per_call(8, trainer, datamodule)


def test_auto_does_not_fuse_other_data_and_ddp_config_fuses() -> None:
    other = pl.LightningDataModule()
    assert resolve_steps_per_call("auto", {}, other) == 1
    with pytest.raises(ValueError, match="steps_per_call=2: the training data .* TensorBatchLoader"):
        resolve_steps_per_call(2, {}, other)
    ddp = compose_config(["trainer=ddp"])
    assert resolve_steps_per_call(ddp.steps_per_call, ddp.trainer, InMemoryDataModule(name="digits")) == 16


def test_chunked_loader_yields_the_same_batches_in_chunks() -> None:
    x, y = torch.arange(75.0).reshape(75, 1), torch.arange(75)
    for rank, world in ((0, 1), (0, 2), (1, 2)):
        plain = TensorBatchLoader(x, y, 4, shuffle=True, seed=5, rank=rank, world_size=world)
        chunked = TensorBatchLoader(x, y, 4, shuffle=True, seed=5, rank=rank, world_size=world, chunk=3)
        batches, chunks = list(plain), list(chunked)
        # 75 or 37 samples: 19 or 10 batches (the last partial), 7 or 4 chunks (the last partial)
        assert len(chunked) == len(chunks) == -(-len(batches) // 3) and len(plain) == len(batches)
        assert [len(c) for c in chunks[:-1]] == [3] * (len(chunks) - 1) and 1 <= len(chunks[-1]) < 3
        flat = [b for c in chunks for b in c]
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, flat, strict=True))


@pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")
def test_fused_classifier_needs_a_chunking_datamodule() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from activation_hash.models import MLP, Classifier
    module = Classifier(MLP((1, 2, 2), 2, depth=1, width=3), 2, optimizer=torch.optim.SGD, steps_per_call=4)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    data = DataLoader(TensorDataset(torch.rand(8, 1, 2, 2), torch.randint(0, 2, (8,))), batch_size=2)
    with pytest.raises(ValueError, match=r"steps_per_call=4 needs a datamodule .*InMemoryDataModule.*got NoneType"):
        trainer.fit(module, train_dataloaders=data)


_DDP_SCRIPT = """
import functools, os, sys
import pytorch_lightning as pl, torch
from activation_hash.codes import load_codes
from activation_hash.data import InMemoryDataModule
from activation_hash.models import MLP, Classifier

k, out = int(sys.argv[1]), sys.argv[2]
pl.seed_everything(0, verbose=False)
module = Classifier(MLP((1, 8, 8), 10, depth=1, width=16), 10, steps_per_call=k,
                    optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9),
                    **({"gradient_clip_val": 0.05} if k > 1 else {}))
trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     gradient_clip_val=0.05 if k == 1 else None)
trainer.fit(module, datamodule=InMemoryDataModule(name="digits", train_size=300, batch_size=16))
if trainer.is_global_zero:
    torch.save({"weights": module.net.state_dict(), "global_step": trainer.global_step}, out)
"""


@pytest.mark.slow  # two DDP processes on CPU (gloo), twice: ~30 s
def test_fused_steps_train_exactly_as_single_steps_under_ddp(tmp_path: Path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(_DDP_SCRIPT))
    for k in (1, 4):  # per rank 150 samples: 10 batches (the last of 6), 3 chunks of 4 (the last of 2)
        subprocess.run([sys.executable, str(script), str(k), str(tmp_path / f"{k}.pt")], check=True,
                       cwd=Path(__file__).resolve().parents[1], capture_output=True, timeout=300)
    single, fused = torch.load(tmp_path / "1.pt"), torch.load(tmp_path / "4.pt")
    assert single["global_step"] == fused["global_step"] == 2 * 10
    for key in single["weights"]:
        assert torch.equal(single["weights"][key], fused["weights"][key]), key
