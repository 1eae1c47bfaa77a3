"""An output location that cannot be written fails before training with one line naming it
(`output_root=PATH: not writable (why)` or `output_dir=...`; exit 2 from the command line), and a
disk that fills mid-run stops the run with the file and the free space, leaving it resumable.
Tests run as root, where chmod does not stop writes: read-only and full disks are simulated by
mocking os.access / shutil.disk_usage / an ENOSPC error."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from activation_hash.run import run
from activation_hash.schema import ConfigError
from tests.conftest import TINY, compose_config
from tests.test_resume import RUN


def test_a_run_dir_under_a_regular_file_fails_before_training(tmp_path) -> None:
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "run"
    with pytest.raises(ConfigError, match=rf"^output_dir={out}: not writable \({tmp_path / 'file'} is not a directory\)$"):
        run(compose_config(TINY, output_dir=out))


def test_an_output_root_that_is_read_only_is_named(tmp_path, monkeypatch) -> None:
    from activation_hash.runs import space
    cfg = compose_config([*TINY, f"output_root={tmp_path}"], output_dir=tmp_path / "runs" / "a")
    monkeypatch.setattr(space.os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(ConfigError, match=rf"^output_root={tmp_path}: not writable \({tmp_path} is read-only"):
        run(cfg)
    assert not (tmp_path / "runs").exists()


def test_a_full_disk_fails_before_training(tmp_path, monkeypatch) -> None:
    from activation_hash.runs import space
    monkeypatch.setattr(space.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 4096})())
    with pytest.raises(ConfigError, match=r"not writable \(disk full: 4096 bytes free at "):
        run(compose_config(TINY, output_dir=tmp_path / "run"))


def test_a_disk_filling_mid_run_stops_it_with_one_line_and_it_resumes(tmp_path, monkeypatch, caplog) -> None:
    from activation_hash.runs import record
    out = tmp_path / "run"
    original = record.atomic_write

    def full(path, content):
        if Path(path).name == "encoding.jsonl" and '"epoch": 2' in content:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return original(path, content)
    with monkeypatch.context() as patch:
        patch.setattr(record, "atomic_write", full)
        with pytest.raises(ConfigError, match=rf"^output_dir={out}: disk full writing {out / 'encoding.jsonl'} "
                                              r"\(\d+ bytes free\); the run is kept unfinished"):
            run(compose_config(RUN, output_dir=out))
    assert not (out / "result.json").exists()
    with caplog.at_level("INFO"):
        result = run(compose_config(RUN, output_dir=out))
    assert "resuming from epoch 1" in caplog.text and result["epochs_trained"] == 4


def test_the_command_line_names_an_output_root_under_a_file_and_exits_2(tmp_path) -> None:
    import subprocess
    import sys
    from tests.conftest import REPO
    (tmp_path / "file").write_text("")
    env = {**os.environ, "ACTIVATION_HASH_OUTPUT": str(tmp_path / "file" / "out"), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "activation_hash", *TINY], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == \
        f"error: output_root={tmp_path / 'file' / 'out'}: not writable ({tmp_path / 'file'} is not a directory)"
