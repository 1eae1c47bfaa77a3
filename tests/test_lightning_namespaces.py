"""DataModules, callbacks and loggers written with `lightning` (lightning.pytorch) or
`pytorch_lightning` both run: data=custom, +callbacks.X._target_, logger=."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from activation_hash.lightning_ns import as_trainer_datamodule, trainer_target
from tests.conftest import REPO

L = pytest.importorskip("lightning")


def test_lightning_targets_are_read_in_the_trainers_namespace() -> None:
    assert trainer_target("lightning.pytorch.callbacks.ModelCheckpoint") == "pytorch_lightning.callbacks.ModelCheckpoint"
    assert trainer_target("lightning.pytorch.loggers.CSVLogger") == "pytorch_lightning.loggers.CSVLogger"
    assert trainer_target("lightning.Callback") == "pytorch_lightning.Callback"
    assert trainer_target("lightning_extras.Foo") == "lightning_extras.Foo"
    assert trainer_target("my_pkg.callbacks.Thing") == "my_pkg.callbacks.Thing"


def test_a_lightning_datamodule_is_wrapped_with_its_hooks_and_attributes() -> None:
    import pytorch_lightning as pl
    from tests.lightning_datamodule import LitBlobs
    dm = LitBlobs(n=60)
    dm.note = "mine"
    wrapped = as_trainer_datamodule(dm)
    assert isinstance(wrapped, pl.LightningDataModule) and not isinstance(dm, pl.LightningDataModule)
    wrapped.setup("fit")
    assert len(wrapped.train_dataloader().dataset) == 60 and wrapped.note == "mine"
    assert not hasattr(type(wrapped), "val_dataloader") or "val_dataloader" not in vars(type(wrapped))
    assert as_trainer_datamodule(object()) is None


def test_lightning_datamodule_callback_and_logger_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "activation_hash", "data=custom",
           "data.datamodule._target_=tests.lightning_datamodule.LitBlobs", "+data.datamodule.n=200",
           "model.width=12", "trainer.max_epochs=3", "codes.epochs=[0,3]", "progress_bar=none",
           "+callbacks.count._target_=tests.lightning_datamodule.CountEpochs", f"+callbacks.count.path={tmp_path / 'n'}",
           "+callbacks.best._target_=lightning.pytorch.callbacks.ModelCheckpoint",
           f"+callbacks.best.dirpath={tmp_path / 'best'}", "trainer.enable_checkpointing=true",
           "+logger.lit._target_=lightning.pytorch.loggers.CSVLogger", f"+logger.lit.save_dir={tmp_path / 'lit'}",
           f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "encoding.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["split"]) for r in rows] == [(0, "train"), (0, "test"), (3, "train"), (3, "test")]
    assert rows[-1]["test/n"] == 100 and rows[-1]["test/knn_acc"] > 0.9  # separable blobs; chance is 1/3
    assert (tmp_path / "n").read_text() == "3"  # the L.Callback saw every epoch
    assert list((tmp_path / "best").glob("*.ckpt"))  # lightning's ModelCheckpoint kept a checkpoint
    (hparams,) = (tmp_path / "lit").rglob("hparams.yaml")  # lightning's CSVLogger got the config
    assert yaml.safe_load(hparams.read_text())["model"]["width"] == 12
