"""metrics.max_ram: codes larger than the budget are never materialised whole. A network's codes
are captured batch by batch into a memory-mapped packed file; the metrics then run on that file
in a fresh process under a small budget, and the process's peak memory grows by less than the
budget while the metrics equal the in-memory run's (K-Means within the agreement bound)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST, WIDTH = 5000, 1000, 2048
BUDGET = 48 * 2**20  # the unpacked float64 codes are 80 MB (the in-memory run grows by 170-270 MB)

CAPTURE = """
import sys, numpy as np, torch
from activation_hash.codes.capture import CodeRecorder
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(64, {w}), torch.nn.ReLU(), torch.nn.Linear({w}, 10))
gen = torch.Generator().manual_seed(1)
centers = torch.randn(10, 64, generator=gen) * 2
for split, n in (("train", {n_train}), ("test", {n_test})):
    labels = torch.randint(0, 10, (n,), generator=gen)
    out = np.lib.format.open_memmap(f"{{sys.argv[1]}}/{{split}}.npy", mode="w+", dtype=np.uint8, shape=(n, {w} // 8))
    with torch.no_grad(), CodeRecorder(net) as rec:
        for lo in range(0, n, 500):  # one batch at a time: the codes never sit whole in RAM
            y = labels[lo:lo + 500]
            net(centers[y] + torch.randn(len(y), 64, generator=gen))
            out[lo:lo + len(y)] = rec.packed().numpy()
    out.flush()
    np.save(f"{{sys.argv[1]}}/{{split}}_labels.npy", labels.numpy())
"""

SCORE = """
import json, sys, os, numpy as np
from activation_hash.metrics import encoding_metrics
d = sys.argv[1]
budget = None if sys.argv[2] == "none" else int(sys.argv[2])
train, test = (np.load(f"{d}/{s}.npy", mmap_mode="r") for s in ("train", "test"))
labels = [np.load(f"{d}/{s}_labels.npy") for s in ("train", "test")]
def score(rows):
    return encoding_metrics(train[:rows], labels[0][:rows], test[:rows], labels[1][:rows], train.shape[1] * 8,
                            which=("redundancy", "kmeans", "knn"), backend="torch", max_ram=budget, n_threads=1)
score(200)  # warm-up on 200 rows: imports, kernels and thread pools loaded, as in a process that trained


def status(key):  # kB -> bytes, from /proc/self/status
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))


open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current resident size
rss = status("VmRSS")
out = score(None)
peak = status("VmHWM")
print(json.dumps({"metrics": out, "grew": max(0, peak - rss)}))
"""


def _run(code: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def test_codes_beyond_max_ram_stream_within_it(tmp_path: Path) -> None:
    _run(CAPTURE.format(w=WIDTH, n_train=N_TRAIN, n_test=N_TEST), str(tmp_path))
    streamed = json.loads(_run(SCORE, str(tmp_path), str(BUDGET)))
    in_memory = json.loads(_run(SCORE, str(tmp_path), "none"))
    print(f"peak growth: streamed {streamed['grew'] / 2**20:.1f} MiB (budget {BUDGET / 2**20:.0f} MiB), "
          f"in memory {in_memory['grew'] / 2**20:.1f} MiB")
    assert streamed["grew"] <= BUDGET, (streamed["grew"], BUDGET)
    assert in_memory["grew"] > BUDGET, (in_memory["grew"], BUDGET)  # the same metrics in memory do need more: the bound is real
    a, b = streamed["metrics"], in_memory["metrics"]
    for key in ("n_bits_used", "train/redundancy", "test/redundancy", "test/knn_acc", "test/knn_acc_index",
                "test/knn_boundary_ties", "test/knn_vote_ties"):
        assert a[key] == b[key], key
    for key in ("train/kmeans_acc", "test/kmeans_acc"):
        assert abs(a[key] - b[key]) <= 0.03, (key, a[key], b[key])
