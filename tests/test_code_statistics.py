"""docs/examples/code_statistics.py against brute-force definitions, and on a real run's codes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

from activation_hash.run import run
from tests.conftest import REPO

SCRIPT = REPO / "docs" / "examples" / "code_statistics.py"
spec = importlib.util.spec_from_file_location("code_statistics", SCRIPT)
code_statistics = importlib.util.module_from_spec(spec)
spec.loader.exec_module(code_statistics)


def test_statistics_equal_their_definitions() -> None:
    rng = np.random.default_rng(3)
    bits = rng.random((60, 13)) < rng.random(13)  # units of different firing rates
    bits[:, 0] = True                              # a constant unit: entropy 0
    labels = np.repeat([0, 1, 2], 20)
    got = code_statistics.statistics(np.packbits(bits, axis=1), labels, 13, pairs=4000)
    p = bits.mean(axis=0)
    h = [0.0 if q in (0, 1) else -(q * np.log2(q) + (1 - q) * np.log2(1 - q)) for q in p]
    assert np.isclose(got["firing"], p.mean()) and np.isclose(got["entropy"], np.mean(h))
    exact = np.mean([np.mean([(bits[i] != bits[j]).sum() for i in np.flatnonzero(labels == a)
                              for j in np.flatnonzero(labels == b)]) for a, b in ((0, 1), (0, 2), (1, 2))])
    assert abs(got["between"] - exact) < 0.1  # 4,000 sampled pairs per class pair


def test_the_script_prints_a_row_per_saved_capture(tiny_cfg) -> None:
    cfg = tiny_cfg("codes.save=true")
    run(cfg)
    out = subprocess.run([sys.executable, str(SCRIPT), cfg.output_dir], capture_output=True, text=True, check=True)
    rows = out.stdout.splitlines()[1:]
    assert [int(r.split()[0]) for r in rows] == sorted(int(p.stem.split("=")[1])
                                                       for p in (Path(cfg.output_dir) / "codes").glob("*.npz"))
    assert all(0 <= float(r.split()[1]) <= 1 and 0 <= float(r.split()[2]) <= 1 for r in rows)
