"""SIGTERM and SIGINT end a run with the shells' exit status (143, 130) and one line naming the
run directory and how to resume it; a sweep ends non-zero and says how many jobs finished; the
interrupted run resumes from its checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

# a long run on few samples: the signal arrives in training, after the first checkpoint
LONG = ["trainer.max_epochs=400", "codes.epochs=[0,1]", "data.train_size=300", "data.test_size=100",
        "model.width=16", "progress_bar=none", "codes.verbose=false", "metrics.which=[redundancy]"]


def _start(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "ACTIVATION_HASH_OUTPUT": str(tmp_path / "outputs"), "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": "1"}
    env.pop("SUBMITIT_EXECUTOR", None)
    return subprocess.Popen([sys.executable, "-m", "activation_hash", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(pattern: str, root: Path, proc: subprocess.Popen, count: int = 1) -> list[Path]:
    for _ in range(2400):  # polls up to 240 s: a bound on a hang, not a timed assertion
        found = sorted(root.glob(pattern))
        if len(found) >= count:
            return found
        if proc.poll() is not None:
            pytest.fail(f"the run ended (status {proc.returncode}) before {pattern}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"no {pattern} under {root}")


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143),
                                            pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_a_run_non_zero_with_one_line_and_it_resumes(tmp_path, signum, status) -> None:
    proc = _start(tmp_path, *LONG)
    (ckpt,) = _wait_for("outputs/runs/*/*/checkpoints/last.ckpt", tmp_path, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    run_dir = ckpt.parent.parent
    assert proc.returncode == status, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error: interrupted")]
    assert lines == [f"error: interrupted by {signum.name}: run directory {run_dir} is unfinished; "
                     "run the same command again to resume it (resume=auto)"]
    assert not (run_dir / "result.json").exists() and ckpt.is_file()

    from activation_hash.runs.checkpoint import resumable  # the same command resumes from the checkpoint
    from tests.conftest import compose_config
    assert resumable(compose_config(LONG, output_dir=run_dir), run_dir) == ckpt


@pytest.mark.slow  # a sweep of two CLI jobs: ~40 s
def test_an_interrupted_sweep_exits_non_zero_and_says_how_many_jobs_finished(tmp_path) -> None:
    # job 0 trains 1 epoch and finishes; job 1 is interrupted in training
    proc = _start(tmp_path, "-m", *[a for a in LONG if not a.startswith("trainer.max_epochs")],
                  "trainer.max_epochs=1,400")
    (ckpt,) = _wait_for("outputs/multirun/*/*/1_*/checkpoints/last.ckpt", tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error: interrupted")]
    assert lines == [f"error: interrupted by SIGTERM: run directory {ckpt.parent.parent} is unfinished; "
                     "run the same command again to resume it (resume=auto); 1 job(s) of this sweep finished "
                     "before it"]
    (first,) = (tmp_path / "outputs" / "multirun").glob("*/*/0_*")
    assert (first / "result.json").is_file()


class _TermsInItsCheckpoint(__import__("pytorch_lightning").LightningModule):
    """Sends itself SIGTERM while epoch 1's checkpoint is written: inside LastEpoch's hold, so the
    signal is held, and Lightning's own handler (composed with ours) ends fit() at that epoch's
    end with its SIGTERMException, whose exit status is 0."""

    def __init__(self):
        super().__init__()
        import torch
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, _):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        import torch
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_save_checkpoint(self, checkpoint) -> None:
        if self.current_epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_sigterm_held_at_an_epochs_checkpoint_still_ends_the_run_with_143(tmp_path, capsys, monkeypatch) -> None:
    import pytorch_lightning as pl
    import torch

    from activation_hash.runs import signals
    from activation_hash.runs.checkpoint import LastEpoch

    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    monkeypatch.setitem(signals.FINISHED, "runs", 0)  # runs earlier tests finished in this process
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)
    trainer = pl.Trainer(max_epochs=5, callbacks=[LastEpoch(tmp_path)], logger=False, accelerator="cpu",
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=True)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as ended:
        with signals.interruptible([tmp_path]):
            trainer.fit(_TermsInItsCheckpoint(), data)
    assert ended.value.code == 143
    assert trainer.current_epoch == 2  # stopped at epoch 1's end, not after all 5
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: interrupted by SIGTERM: run directory {tmp_path} is unfinished; "
        "run the same command again to resume it (resume=auto)")
    assert signal.getsignal(signal.SIGTERM) is before
