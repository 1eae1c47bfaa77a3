"""A batched group's members are checked as a solo run's files are before the group continues
from its checkpoint, and keep their metrics.csv rows on disk as they go: a group killed hard (no
`finally`, as by SIGKILL) resumes every member with the rows an uninterrupted group writes.

Oracle: the uninterrupted group of tests/test_group_resume.py's configs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from activation_hash.batched.module import BatchedClassifier
from activation_hash.batched.run_group import run_group
from activation_hash.runs.paths import GROUP_CHECKPOINT
from tests.conftest import REPO
from tests.test_group_resume import Killed, _cfgs, _same_run


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    run_group(_cfgs(root))
    return root


def _kill_mid_epoch_4(root: Path, monkeypatch) -> None:
    original = BatchedClassifier.training_step

    def step(self, batch, batch_idx):
        if self.current_epoch == 3 and batch_idx == 1:
            raise Killed("killed mid-epoch")
        return original(self, batch, batch_idx)
    with monkeypatch.context() as patch:
        patch.setattr(BatchedClassifier, "training_step", step)
        with pytest.raises(Killed):
            run_group(_cfgs(root))


def test_a_group_killed_hard_resumes_every_member_with_all_its_csv_rows(uninterrupted, tmp_path, caplog) -> None:
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from activation_hash.batched.module import BatchedClassifier
        from activation_hash.batched.run_group import run_group
        from tests.test_group_resume import _cfgs
        original = BatchedClassifier.training_step
        def step(self, batch, batch_idx):
            if self.current_epoch == 3 and batch_idx == 1:
                os._exit(9)  # no finally, no logger finalize: what SIGKILL leaves
            return original(self, batch, batch_idx)
        BatchedClassifier.training_step = step
        from pathlib import Path
        run_group(_cfgs(Path({str(tmp_path)!r})))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 9, done.stderr[-3000:]
    assert (tmp_path / "0" / GROUP_CHECKPOINT).is_file()
    with caplog.at_level("INFO"):
        run_group(_cfgs(tmp_path))
    assert "batched group resuming from epoch 3" in caplog.text
    for i in range(2):
        _same_run(tmp_path / str(i), uninterrupted / str(i))  # metrics.csv included


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def _garbage_row(path: Path) -> None:
    with open(path, "a") as f:
        f.write("garbage,x,,,not a number\n")


FAULTS = {
    "encoding-missing": ("1/encoding.jsonl", Path.unlink, "1: encoding.jsonl is missing"),
    "codes-truncated": ("0/codes/epoch=0001.npz", _truncate, "0: codes/epoch=0001.npz cannot be read"),
    "metrics-garbage-row": ("0/metrics.csv", _garbage_row, "0: metrics.csv row"),
    "config-garbage": ("1/config.yaml", lambda p: p.write_text("{[: not yaml"), "config.yaml cannot be read"),
}


@pytest.mark.parametrize("fault", [pytest.param(f, marks=pytest.mark.slow) if f in ("metrics-garbage-row", "config-garbage")
                                   else f for f in FAULTS])  # the slow ones: the solo run's file checks, again
def test_a_damaged_member_file_starts_the_group_over_with_a_message(uninterrupted, tmp_path, monkeypatch, caplog,
                                                                     fault) -> None:
    name, damage, words = FAULTS[fault]
    _kill_mid_epoch_4(tmp_path, monkeypatch)
    damage(tmp_path / name)
    with caplog.at_level("INFO"):
        run_group(_cfgs(tmp_path))
    assert words in caplog.text and "resuming" not in caplog.text
    for i in range(2):
        _same_run(tmp_path / str(i), uninterrupted / str(i))


def test_sigterm_ends_a_group_with_143_and_one_line_and_it_resumes(uninterrupted, tmp_path, monkeypatch, capsys,
                                                                     caplog) -> None:
    import signal
    before = signal.getsignal(signal.SIGTERM)
    original = BatchedClassifier.training_step

    def step(self, batch, batch_idx):
        if self.current_epoch == 3 and batch_idx == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, batch, batch_idx)
    with monkeypatch.context() as patch:
        patch.setattr(BatchedClassifier, "training_step", step)
        with pytest.raises(SystemExit) as info:
            run_group(_cfgs(tmp_path))
    assert info.value.code == 143
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: interrupted")]
    assert len(lines) == 1 and lines[0].startswith(
        f"error: interrupted by SIGTERM: run directory {tmp_path / '0'}, {tmp_path / '1'} is unfinished; "
        "run the same command again to resume it (resume=auto)")
    assert signal.getsignal(signal.SIGTERM) == before  # the handlers are put back
    with caplog.at_level("INFO"):
        run_group(_cfgs(tmp_path))
    assert "batched group resuming from epoch 3" in caplog.text
    for i in range(2):
        _same_run(tmp_path / str(i), uninterrupted / str(i))


def test_every_member_records_the_threads_its_group_ran_with(uninterrupted: Path) -> None:
    """A group sets its threads once, as a solo run does, and each member's meta.json says how many
    and why (a group run by the batched launcher on one job left torch's default and recorded null)."""
    import json
    placements = [json.loads(p.read_text())["placement"] for p in sorted(uninterrupted.glob("*/meta.json"))]
    assert len(placements) >= 2
    assert all(p["threads"] >= 1 and p["thread_source"].startswith(f"{p['threads']} = min(affinity") for p in placements)
