"""A sweep ends with a one-screen summary and the command that makes its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from activation_hash.sweep_summary import summary_lines
from tests.conftest import REPO


def _run(root: Path, name: str, result: dict | None) -> None:
    (root / name / ".hydra").mkdir(parents=True)
    if result is not None:
        (root / name / "result.json").write_text(json.dumps(result))


def test_summary_counts_runs_and_names_the_best(tmp_path: Path) -> None:
    sweep = tmp_path / "studies" / "model_size" / "smoke"
    _run(sweep, "model.width=3,seed=0", {"test/knn_acc": 0.5})
    _run(sweep, "model.width=40,seed=0", {"test/knn_acc": 0.9})
    _run(sweep, "model.width=40,seed=1", {"test/knn_acc": 0.7})
    _run(sweep, "model.width=80,seed=0", None)  # unfinished
    lines = summary_lines(sweep, "test/knn_acc", "smoke", study_layout=True)
    assert lines[0] == f"4 runs in {sweep}: 3 finished, 1 without a result"
    assert lines[1] == "test/knn_acc  min 0.500  median 0.700  max 0.900  (best: model.width=40,seed=0)"
    assert lines[2].startswith("report: make report PROFILE=smoke") and str(sweep) in lines[2]
    assert len(lines) <= 24  # one screen


def test_a_sweep_prints_its_summary(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "ACTIVATION_HASH_OUTPUT": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "activation_hash", "-m", "seed=0,1", "trainer.max_epochs=1",
                          "codes.epochs=[1]", "data.train_size=100", "data.test_size=100", "model.width=8",
                          "progress_bar=none", "codes.verbose=false", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    tail = out.stdout.strip().splitlines()[-3:]
    assert tail[0] == f"2 runs in {tmp_path / 'sweep'}: 2 finished, 0 without a result"
    assert tail[2] == f"report: python -m activation_hash.analysis report {tmp_path / 'sweep'} --out reports/smoke"
