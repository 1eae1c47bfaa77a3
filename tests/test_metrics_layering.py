"""Layering of the metrics: importing them, or running ``evaluate`` on a CPU, loads neither
torch, Lightning nor Hydra; no private scikit-learn (or Lightning) API is used anywhere."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pytorch_lightning", "lightning", "hydra", "omegaconf")


def _modules_after(code: str) -> set[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_import_metrics_loads_no_framework() -> None:
    loaded = _modules_after("import activation_hash.metrics as m; m.families(); m.METRIC_NAMES")
    assert not [name for name in HEAVY + ("faiss", "sklearn") if name in loaded]


def test_evaluate_on_cpu_loads_no_framework(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    bits = rng.random((300, 30)) < 0.5
    labels = rng.integers(0, 3, 300)
    path = tmp_path / "codes.npz"
    np.savez(path, train_codes=np.packbits(bits[:200], axis=1), test_codes=np.packbits(bits[200:], axis=1),
             train_labels=labels[:200], test_labels=labels[200:], n_bits=30)
    loaded = _modules_after(f"from activation_hash import evaluate; assert evaluate.main([{str(path)!r}]) == 0")
    assert not [name for name in HEAVY if name in loaded]
    assert "faiss" in loaded  # K-NN did run, and loaded faiss itself


# Private scikit-learn modules or attributes, private Lightning/Hydra trainer attributes, and the
# fused-step machinery issue 8 removed.
PRIVATE = [re.compile(p) for p in (r"sklearn\.[a-z_.]*\._", r"from sklearn[\w.]* import _",
                                   r"_batches_that_stepped", r"steps_per_call",
                                   r"trainer\.[a-z_]+\._[a-z]", r"from (pytorch_lightning|lightning|hydra)[\w.]*\._",
                                   r"import (pytorch_lightning|lightning|hydra)[\w.]*\._")]


def _hits(paths: list[Path], patterns: list[re.Pattern]) -> list[str]:
    hits = []
    for path in paths:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            hits += [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for p in patterns if p.search(line)]
    return hits


def _files(*roots: str) -> list[Path]:
    out = []
    for root in roots:
        base = ROOT / root
        out += [p for p in base.rglob("*") if p.is_file() and p.suffix in (".py", ".yaml", ".md", ".cfg", ".toml")]
    return out


def test_no_private_library_api_nor_fused_steps_anywhere() -> None:
    code = [p for p in _files("activation_hash", "conf", "bench") if p.suffix != ".md"]
    assert code and _hits(code, PRIVATE) == []
