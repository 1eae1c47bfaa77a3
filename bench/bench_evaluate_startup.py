"""Time from process launch to the first metric computation of ``python -m activation_hash.evaluate``.

    python bench/bench_evaluate_startup.py [--repeats 5]

Writes a small codes file (2,000 + 500 random codes of 64 bits), launches evaluate on it as a
fresh process with ``-X importtime`` off and an environment hook that prints a timestamp when
``compute_families`` is first entered, and reports launch-to-first-metric times (median of the
repeats) against the target of 1 s, plus the total process time. Numbers depend on the machine:
record them in bench/README.md, not in code.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Run evaluate with a wrapper that stamps the first entry into compute_families.
HOOK = """
import sys, time
import activation_hash.evaluate as ev
inner = ev.compute_families
def stamped(*a, **k):
    print(f"FIRST_METRIC {time.time():.6f}", flush=True)
    return inner(*a, **k)
ev.compute_families = stamped
sys.exit(ev.main(sys.argv[1:]))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    bits = rng.random((2500, 64)) < 0.5
    labels = rng.integers(0, 10, 2500)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    starts, totals = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "codes.npz"
        np.savez(path, train_codes=np.packbits(bits[:2000], axis=1), test_codes=np.packbits(bits[2000:], axis=1),
                 train_labels=labels[:2000], test_labels=labels[2000:], n_bits=np.int64(64))
        for _ in range(args.repeats):
            launched = time.time()
            proc = subprocess.run([sys.executable, "-c", HOOK, str(path)], cwd=ROOT, env=env,
                                  capture_output=True, text=True)
            totals.append(time.time() - launched)
            if proc.returncode:
                print(proc.stderr, file=sys.stderr)
                return 1
            stamp = next(float(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("FIRST_METRIC"))
            starts.append(stamp - launched)
    first = statistics.median(starts)
    print(f"evaluate: launch to first metric computation {first:.3f} s (median of {args.repeats}; "
          f"min {min(starts):.3f}, max {max(starts):.3f}); whole process {statistics.median(totals):.3f} s; "
          f"target < 1 s: {'met' if first < 1 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
