"""Compare the run directories of two sweeps (e.g. batched launcher vs Hydra's basic launcher).

    python -m activation_hash.batched.compare SWEEP_A SWEEP_B      # prints the worst differences

Runs are matched by directory name. For each pair: the same files, config.yaml equal (but in the result-neutral
keys, rundir.NOT_RESULT_KEYS: output paths, logger), the same encoding.jsonl rows and keys with numbers equal to `rtol` (relative to
max(|b|, 1e-12)... for fractions in [0, 1] the absolute difference is what counts), the same
metrics.csv columns and rows, result.json keys, and saved codes. Returns the worst relative
difference seen per file kind; raises AssertionError naming the first structural mismatch.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from activation_hash.runs.claim import changed_keys, comparable

OUTPUTS = ("config.yaml", "meta.json", "encoding.jsonl", "metrics.csv", "result.json")
# differ by construction: where and when the run ran, and how long it took
# worst absolute difference per metric name seen by this process (redundancies near 0 have large
# relative but tiny absolute differences)
ABSOLUTE: dict[str, float] = {}
VOLATILE = {"capture_seconds", "train_seconds", "run_dir", "output_dir"}


def _number(v: Any) -> Any:
    try:
        return float(v) if isinstance(v, str) else v
    except ValueError:
        return v


def _diff(a: Any, b: Any, where: str) -> float:
    if isinstance(a, list) and isinstance(b, list):  # e.g. a probe's histogram counts and edges
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} values"
        return max((_diff(x, y, where) for x, y in zip(a, b)), default=0.0)
    a, b = _number(a), _number(b)
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str):
        assert a == b, f"{where}: {a!r} != {b!r}"
        return 0.0
    a, b = float(a), float(b)
    if math.isnan(a) and math.isnan(b):
        return 0.0
    ABSOLUTE[where.rsplit(" ", 1)[-1]] = max(ABSOLUTE.get(where.rsplit(" ", 1)[-1], 0.0), abs(a - b))
    return abs(a - b) / max(abs(b), 1e-12) if a != b else 0.0


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compare_runs(a: Path, b: Path, per_key: dict[str, float] | None = None) -> dict[str, float]:
    """Worst relative difference per file; `per_key` (when given) collects it per metric name."""
    worst = {"encoding": 0.0, "metrics.csv": 0.0, "result": 0.0}
    keys = per_key if per_key is not None else {}

    def note(kind: str, key: str, d: float) -> None:
        worst[kind] = max(worst[kind], d)
        keys[key] = max(keys.get(key, 0.0), d)
    for name in OUTPUTS:
        assert (a / name).is_file() == (b / name).is_file(), f"{a.name}: {name} in one run only"
    ca, cb = (comparable(yaml.safe_load((p / "config.yaml").read_text())) for p in (a, b))
    assert ca == cb, f"{a.name}: config.yaml differs in {changed_keys(ca, cb)}"
    ra, rb = _rows(a / "encoding.jsonl"), _rows(b / "encoding.jsonl")
    assert len(ra) == len(rb), f"{a.name}: {len(ra)} vs {len(rb)} encoding rows"
    for x, y in zip(ra, rb):
        assert x.keys() == y.keys(), f"{a.name}: encoding keys {sorted(x.keys() ^ y.keys())}"
        for k in x.keys() - VOLATILE:
            note("encoding", k, _diff(x[k], y[k], f"{a.name} encoding {k}"))
    with open(a / "metrics.csv") as fa, open(b / "metrics.csv") as fb:
        ma, mb = list(csv.DictReader(fa)), list(csv.DictReader(fb))
    assert len(ma) == len(mb), f"{a.name}: {len(ma)} vs {len(mb)} metrics.csv rows"
    for x, y in zip(ma, mb):
        assert x.keys() == y.keys(), f"{a.name}: metrics.csv columns {sorted(x.keys() ^ y.keys())}"
        for k in x:
            assert (x[k] == "") == (y[k] == ""), f"{a.name}: metrics.csv {k} empty in one row only"
            if x[k] != "":
                note("metrics.csv", k, _diff(x[k], y[k], f"{a.name} metrics.csv {k}"))
    if (a / "result.json").is_file():
        ja, jb = json.loads((a / "result.json").read_text()), json.loads((b / "result.json").read_text())
        assert ja.keys() == jb.keys(), f"{a.name}: result keys {sorted(ja.keys() ^ jb.keys())}"
        for k in ja.keys() - VOLATILE:
            if isinstance(ja[k], dict) and all(isinstance(v, dict) for v in ja[k].values()):  # selections
                assert ja[k].keys() == jb[k].keys(), f"{a.name}: result {k}"
                for name, part in ja[k].items():
                    for kk in part.keys() - VOLATILE:
                        note("result", f"{name}/{kk}", _diff(part[kk], jb[k][name].get(kk), f"{a.name} result {k}.{name}.{kk}"))
            elif isinstance(ja[k], dict):
                assert ja[k] == jb[k], f"{a.name}: result {k}"
            else:
                note("result", k, _diff(ja[k], jb[k], f"{a.name} result {k}"))
    codes_a = sorted(p.name for p in (a / "codes").glob("*.npz")) if (a / "codes").is_dir() else []
    codes_b = sorted(p.name for p in (b / "codes").glob("*.npz")) if (b / "codes").is_dir() else []
    assert codes_a == codes_b, f"{a.name}: codes {codes_a} vs {codes_b}"
    for name in codes_a:
        za, zb = np.load(a / "codes" / name), np.load(b / "codes" / name)
        assert sorted(za.files) == sorted(zb.files), f"{a.name}/{name}: arrays {za.files} vs {zb.files}"
        for k in za.files:
            if k.endswith("codes"):
                agree = float(np.mean(np.unpackbits(za[k], axis=1) == np.unpackbits(zb[k], axis=1)))
                worst[f"codes bits differing"] = max(worst.get("codes bits differing", 0.0), 1 - agree)
            else:
                assert np.array_equal(za[k], zb[k]), f"{a.name}/{name}: {k}"
    return worst


def _run_dirs(sweep: Path) -> list[str]:
    """The sweep's run directories (holding config.yaml), relative to it: an override value with
    a slash (model=tiny/resnet20) nests a job's directory a level deeper."""
    return sorted(str(p.parent.relative_to(sweep)) for p in sweep.rglob("config.yaml")
                  if not any(part.startswith(".") for part in p.relative_to(sweep).parts))


def compare_sweeps(a: Path, b: Path, per_key: dict[str, float] | None = None) -> dict[str, float]:
    runs, other = _run_dirs(Path(a)), _run_dirs(Path(b))
    assert runs == other and runs, f"run directories differ: {sorted(set(runs) ^ set(other))}"
    worst: dict[str, float] = {}
    for name in runs:
        for k, v in compare_runs(Path(a) / name, Path(b) / name, per_key).items():
            worst[k] = max(worst.get(k, 0.0), v)
    worst["runs"] = len(runs)
    return worst


if __name__ == "__main__":
    detail: dict[str, float] = {}
    print(json.dumps(compare_sweeps(Path(sys.argv[1]), Path(sys.argv[2]), detail), indent=1))
    print("per key, nonzero (worst relative difference, worst absolute difference):")
    for key, value in sorted(detail.items(), key=lambda kv: -kv[1]):
        if value:
            print(f"  {key}: {value:.3g}  {ABSOLUTE.get(key, 0.0):.3g}")
