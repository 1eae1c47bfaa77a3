"""A killed batched group resumes from its last epoch (checkpoints/group.ckpt in its first
member's directory) and every member ends as in the uninterrupted group: same capture rows,
metrics.csv, codes and result.

    python -m pytest tests/test_group_resume.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from activation_hash.batched.module import BatchedClassifier
from activation_hash.runs.checkpoint import GroupLastEpoch
from activation_hash.batched.run_group import run_group
from activation_hash.runs.paths import GROUP_CHECKPOINT, GROUP_POINTER
from tests.conftest import compose_config

# 300 digits / batch 128 = 3 steps per epoch; SGD momentum and a step scheduler make the resumed
# members depend on the restored optimizer and scheduler; member 1 (label noise) stops early, after
# epoch 2 (measured), so the checkpoints hold it stopped, and its "stopped" capture comes at the end
COMMON = ["trainer.max_epochs=5", "codes.epochs=[0,1,3,4,5]", "codes.save=true", "data.train_size=300",
          "data.test_size=200", "optimizer=sgd", "optimizer.lr=0.3", "optimizer.momentum=0.9", "scheduler=step",
          "scheduler.step_size=1", "scheduler.gamma=0.7", "progress_bar=none", "codes.verbose=false",
          "callbacks=early_stopping", "callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=0.06"]
MEMBERS = [["seed=0", "model.width=16"], ["seed=1", "model.width=16", "data.label_noise=0.3"]]
TIMING = ("capture_seconds", "train_seconds", "run_dir")


class Killed(Exception):
    """Stands for the process being killed."""


def _cfgs(root: Path, *extra: str):
    return [compose_config([*COMMON, *v, *extra], output_dir=root / str(i)) for i, v in enumerate(MEMBERS)]


def _rows(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (out / "encoding.jsonl").read_text().splitlines()]


def _same_run(a: Path, b: Path) -> None:
    assert _rows(a) == _rows(b)
    assert (a / "metrics.csv").read_text() == (b / "metrics.csv").read_text()
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (a, b))
    assert {k: v for k, v in ra.items() if k not in TIMING} == {k: v for k, v in rb.items() if k not in TIMING}
    for path in sorted((b / "codes").glob("epoch=*.npz")):
        with np.load(path) as want, np.load(a / "codes" / path.name) as got:
            assert np.array_equal(want["test_codes"], got["test_codes"])
    assert sorted(p.name for p in (a / "codes").glob("*")) == sorted(p.name for p in (b / "codes").glob("*"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    run_group(_cfgs(root))
    return root


@pytest.mark.parametrize("where", ["mid-epoch", "after-the-capture-before-the-checkpoint"])
def test_a_killed_group_resumes_and_ends_as_the_uninterrupted_one(uninterrupted, tmp_path, monkeypatch, caplog,
                                                                  where) -> None:
    with monkeypatch.context() as patch:
        if where == "mid-epoch":  # in epoch 4's second step
            original = BatchedClassifier.training_step

            def step(self, batch, batch_idx):
                if self.current_epoch == 3 and batch_idx == 1:
                    raise Killed("killed mid-epoch")
                return original(self, batch, batch_idx)
            patch.setattr(BatchedClassifier, "training_step", step)
        else:  # epoch 4's capture is written, its checkpoint is not
            original = GroupLastEpoch.on_train_epoch_end

            def save(self, trainer, pl_module):
                if trainer.current_epoch == 3:
                    raise Killed("killed before the checkpoint")
                return original(self, trainer, pl_module)
            patch.setattr(GroupLastEpoch, "on_train_epoch_end", save)
        with pytest.raises(Killed):
            run_group(_cfgs(tmp_path))
    assert (tmp_path / "0" / GROUP_CHECKPOINT).is_file() and (tmp_path / "1" / GROUP_POINTER).is_file()
    assert max(r["epoch"] for r in _rows(tmp_path / "0")) == (3 if where == "mid-epoch" else 4)
    assert json.loads((uninterrupted / "1" / "result.json").read_text())["epochs_trained"] == 2
    with caplog.at_level("INFO"):
        run_group(_cfgs(tmp_path))
    assert "batched group resuming from epoch 3" in caplog.text
    for i in range(2):
        _same_run(tmp_path / str(i), uninterrupted / str(i))
        meta = json.loads((tmp_path / str(i) / "meta.json").read_text())
        assert [r["epoch"] for r in meta["resumed"]] == [3]
    assert not (tmp_path / "0" / GROUP_CHECKPOINT).exists() and not (tmp_path / "1" / GROUP_POINTER).exists()
    assert _rows(tmp_path / "1")[-1]["reason"] == "stopped" and _rows(tmp_path / "1")[-1]["epoch"] == 2


def test_a_group_of_other_members_does_not_resume_from_it(tmp_path, monkeypatch, caplog) -> None:
    original = BatchedClassifier.training_step

    def step(self, batch, batch_idx):
        if self.current_epoch == 2:
            raise Killed("killed")
        return original(self, batch, batch_idx)
    with monkeypatch.context() as patch:
        patch.setattr(BatchedClassifier, "training_step", step)
        with pytest.raises(Killed):
            run_group(_cfgs(tmp_path))
    cfgs = _cfgs(tmp_path)
    cfgs[0].seed = 5  # member 0 is another run now: the group is another group
    with caplog.at_level("INFO"):
        results = run_group(cfgs)
    assert "resuming" not in caplog.text and "member of another group" in caplog.text
    assert results[1]["epochs_trained"] == 2 and not (tmp_path / "1" / GROUP_POINTER).exists()
    assert list(tmp_path.glob("1.previous-*"))
