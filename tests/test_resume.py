"""A killed run resumes from its last epoch (checkpoints/last.ckpt) and ends as the uninterrupted
run: same weights, same capture rows, same metrics.csv, same result.

    python -m pytest tests/test_resume.py -q
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from activation_hash.models.classifier import Classifier
from activation_hash.run import run
from tests.conftest import compose_config

# 300 digits / batch 128 = 3 steps per epoch; a step scheduler and SGD momentum make the resumed
# run depend on the scheduler's and the optimizer's restored state, not only on the weights
RUN = ["trainer.max_epochs=4", "codes.epochs=[0,1,2,3,4]", "codes.save=true", "data.train_size=300",
       "data.test_size=200", "model.width=16", "optimizer=sgd", "optimizer.lr=0.3", "optimizer.momentum=0.9",
       "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5", "progress_bar=none",
       "codes.verbose=false"]
TIMING = ("capture_seconds", "train_seconds", "run_dir")


class Killed(Exception):
    """Stands for the process being killed."""


def _rows(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (out / "encoding.jsonl").read_text().splitlines()]


def _result(out: Path) -> dict:
    return {k: v for k, v in json.loads((out / "result.json").read_text()).items() if k not in TIMING}


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def _kill_in(monkeypatch, hook: str, epoch: int) -> None:
    """Raise Killed in Classifier.<hook> when `epoch` epochs have been trained (1-based epoch `epoch`)."""
    original = getattr(Classifier, hook)

    def killed(self, *args, **kwargs):
        if self.current_epoch + 1 == epoch:
            raise Killed(f"killed in {hook} of epoch {epoch}")
        return original(self, *args, **kwargs)
    monkeypatch.setattr(Classifier, hook, killed)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    run(compose_config(RUN, output_dir=out))
    return out


@pytest.mark.parametrize("hook, at", [("on_train_epoch_end", 3), ("training_step", 3)],
                         ids=["after-the-capture-before-the-checkpoint", "mid-epoch"])
def test_a_killed_run_resumes_and_ends_as_the_uninterrupted_one(uninterrupted, tmp_path, monkeypatch, caplog,
                                                                hook, at) -> None:
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _kill_in(patch, hook, at)
        with pytest.raises(Killed):
            run(compose_config(RUN, output_dir=out))
    assert not (out / "result.json").exists()
    epochs_before = sorted({r["epoch"] for r in _rows(out)})
    # killed after epoch 3's capture (its rows are written) but before its checkpoint: epoch 2's stays
    assert epochs_before == ([0, 1, 2, 3] if hook == "on_train_epoch_end" else [0, 1, 2])
    first_rows = _rows(out)
    with caplog.at_level("INFO"):
        run(compose_config(RUN, output_dir=out))
    assert "resuming from epoch 2 (checkpoints/last.ckpt)" in caplog.text
    assert not list(tmp_path.glob("run.previous-*"))  # nothing moved aside

    assert _rows(out) == _rows(uninterrupted)
    assert [r for r in _rows(out) if r["epoch"] <= 2] == [r for r in first_rows if r["epoch"] <= 2]
    assert _result(out) == _result(uninterrupted)
    assert (out / "metrics.csv").read_text() == (uninterrupted / "metrics.csv").read_text()
    resumed, straight = _weights(out), _weights(uninterrupted)
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)  # bit for bit on a CPU
    for epoch in range(5):
        name = f"epoch={epoch:04d}.npz"
        assert (out / "codes" / name).read_bytes() == (uninterrupted / "codes" / name).read_bytes()
    meta = json.loads((out / "meta.json").read_text())
    assert [r["epoch"] for r in meta["resumed"]] == [2]


def test_the_captures_before_the_checkpoint_are_not_made_again(tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _kill_in(patch, "training_step", 3)
        with pytest.raises(Killed):
            run(compose_config(RUN, output_dir=out))
    lines = (out / "encoding.jsonl").read_text().splitlines()
    before = {r["epoch"]: r["capture_seconds"] for r in map(json.loads, lines)}
    run(compose_config(RUN, output_dir=out))
    after = [json.loads(line) for line in (out / "encoding.jsonl").read_text().splitlines()]
    assert {r["epoch"]: r["capture_seconds"] for r in after if r["epoch"] <= 2} == before  # the same rows, kept
    assert sorted({r["epoch"] for r in after}) == [0, 1, 2, 3, 4]
    assert json.loads((out / "result.json").read_text())["epochs_trained"] == 4


def test_resume_never_and_a_changed_config_start_from_epoch_zero(tmp_path, monkeypatch, caplog) -> None:
    out = tmp_path / "run"
    for rerun in (["resume=never"], ["optimizer.lr=0.2"]):
        with monkeypatch.context() as patch:
            _kill_in(patch, "training_step", 2)
            with pytest.raises(Killed):
                run(compose_config(RUN, output_dir=out))
        assert (out / "checkpoints" / "last.ckpt").is_file()
        caplog.clear()
        with caplog.at_level("INFO"):
            run(compose_config([*RUN, *rerun], output_dir=out))
        assert "resuming" not in caplog.text and "previous-" in caplog.text
        assert "resumed" not in json.loads((out / "meta.json").read_text())
        # resume=never keeps no checkpoint at all
        assert (out / "checkpoints").exists() == (rerun != ["resume=never"])
        shutil.rmtree(out)


def test_a_finished_run_is_reused_not_resumed(tmp_path, caplog) -> None:
    out = tmp_path / "run"
    first = run(compose_config(RUN, output_dir=out))
    with caplog.at_level("INFO"):
        again = run(compose_config(RUN, output_dir=out))
    assert again == first and "already finished" in caplog.text and "resuming" not in caplog.text


@pytest.mark.parametrize("stopping, stopped_at", [
    # the training loss never improves by 100: early stopping ends the run after epoch 2 of 4
    (["callbacks=early_stopping", "callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=100"], 2),
    # 3 steps per epoch: stops in epoch 3 (which counts as trained); such runs keep no checkpoint
    (["trainer.max_steps=7"], 3),
], ids=["early-stopping", "max-steps"])
def test_a_run_killed_in_its_stopped_capture_ends_as_the_uninterrupted_one(tmp_path, monkeypatch, stopping,
                                                                           stopped_at, caplog) -> None:
    from activation_hash.codes.callback import NeuralCodeCallback
    stopping = [*stopping, "codes.epochs=[0,1]"]
    straight = run(compose_config([*RUN, *stopping], output_dir=tmp_path / "straight"))
    assert straight["epochs_trained"] == stopped_at and straight["epoch"] == stopped_at
    out = tmp_path / "run"
    original = NeuralCodeCallback.capture

    def killed(self, trainer, pl_module, epoch, reason="scheduled"):
        if reason == "stopped":
            raise Killed("killed in the capture made when training stopped")
        return original(self, trainer, pl_module, epoch, reason)
    with monkeypatch.context() as patch:
        patch.setattr(NeuralCodeCallback, "capture", killed)
        with pytest.raises(Killed):
            run(compose_config([*RUN, *stopping], output_dir=out))
    assert (out / "checkpoints" / "last.ckpt").is_file() == (stopped_at == 2)
    with caplog.at_level("INFO"):
        resumed = run(compose_config([*RUN, *stopping], output_dir=out))
    # early stopping: resumed from epoch 1 (the epoch that stops is not kept); max_steps: from 0
    assert ("resuming from epoch 1" in caplog.text) == (stopped_at == 2)
    assert {k: v for k, v in resumed.items() if k not in TIMING} == \
        {k: v for k, v in straight.items() if k not in TIMING}
    assert _rows(out) == _rows(tmp_path / "straight")
    assert [r["reason"] for r in _rows(out)] == ["scheduled"] * 4 + ["stopped"] * 2


def test_an_unreadable_checkpoint_starts_the_run_over(tmp_path, monkeypatch, caplog) -> None:
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _kill_in(patch, "training_step", 2)
        with pytest.raises(Killed):
            run(compose_config(RUN, output_dir=out))
    ckpt = out / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # cut short
    with caplog.at_level("INFO"):
        result = run(compose_config(RUN, output_dir=out))
    assert "cannot be read" in caplog.text and "resuming" not in caplog.text and result["epochs_trained"] == 4


def test_a_bad_resume_value_fails_before_training() -> None:
    from activation_hash.schema import ConfigError, validate
    with pytest.raises(ConfigError, match=r"^resume=sometimes: allowed: auto, never$"):
        validate(compose_config(["resume=sometimes"]))
