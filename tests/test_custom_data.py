"""data=custom: a plain LightningDataModule runs end to end through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from activation_hash.data.protocol import describe
from tests.conftest import REPO
from tests.plain_datamodule import BlobsDataModule


def test_protocol_is_derived_from_the_loaders() -> None:
    dm = BlobsDataModule(n=100)
    dm.setup("fit")
    info = describe(dm)
    assert info.input_shape == (6,) and info.num_classes == 3
    assert (info.n_train, info.n_test) == (100, 50)
    ys = [y for _, y in info.eval_loaders()["train"]]
    assert len(ys) == 1 and ys[0].tolist() == dm.train.tensors[1].tolist()  # in order, unshuffled
    x, y = info.test_batch(7)
    assert x.shape == (7, 6) and y.tolist() == dm.test.tensors[1][:7].tolist()
    assert info.train_clean_labels is None


def test_plain_datamodule_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "activation_hash", "data=custom",
           "data.datamodule._target_=tests.plain_datamodule.BlobsDataModule", "+data.datamodule.n=200",
           "model.width=12", "trainer.max_epochs=4", "codes.epochs=[0,4]", "progress_bar=none",
           f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "encoding.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["split"]) for r in rows] == [(0, "train"), (0, "test"), (4, "train"), (4, "test")]
    last = rows[-1]
    assert last["n_bits"] == 12 and last["test/n"] == 100
    assert last["test/knn_acc"] > 0.9 and last["test/net_acc"] > 0.4  # separable blobs; chance is 1/3
    assert (out / "result.json").is_file()
