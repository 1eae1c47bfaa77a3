"""codes.source=network: a capture that never holds the codes scores them from the rows' Gram
matrix, recomputed from the network one layer group at a time. Oracle: the memory path on the
same network (collect_codes + the torch backend) gives the same metrics; the scikit-learn backend
the same redundancy and K-NN; and a capture whose codes exceed metrics.max_ram grows the process
by less than its stated bound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from activation_hash.codes.capture import describe_units
from activation_hash.codes.collect import collect_codes
from activation_hash.codes.gram import plan_groups, score_network
from activation_hash.codes.source import resolve_source
from activation_hash.run import run
from activation_hash.runs.record import score_selections
from activation_hash.schema import ConfigError, validate
from tests.conftest import REPO, compose_config

WHICH = ["redundancy", "kmeans", "knn", "logreg"]
SIZES = {"train": 300, "test": 120}


def _net_and_loaders():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    with torch.no_grad():
        net[0].bias[1] = -100.0  # channel 1 of layer 1 never fires: 64 constant bits to drop
    gen = torch.Generator().manual_seed(1)
    centers = torch.randn(10, 1, 8, 8, generator=gen)
    data = {}
    for split, n in SIZES.items():
        y = torch.randint(0, 10, (n,), generator=gen)
        x = centers[y] + 0.7 * torch.randn(n, 1, 8, 8, generator=gen)
        x[5] = x[7]  # one repeated input, so one repeated code, per split
        data[split] = [(x[i:i + 64], y[i:i + 64]) for i in range(0, n, 64)]
    return net, data


@pytest.mark.parametrize("max_ram", [2**20, 20_000])  # one group; 4 groups with a layer cut in two
def test_network_source_equals_the_memory_path(max_ram: int) -> None:
    net, loaders = _net_and_loaders()
    units = describe_units(net, (1, 8, 8))
    selections = {"all": [0, 1], "1": [0], "2": [1]}
    train, test, got = score_network(net, loaders, [0, 1], units, selections, SIZES, {"max_ram": max_ram}, WHICH,
                                     None)
    assert got["all"]["code_passes"] == (1 if max_ram == 2**20 else 4)
    codes = {split: collect_codes(net, loaders[split], [0, 1]) for split in SIZES}
    want = score_selections(codes["train"], codes["test"], selections, WHICH, {"backend": "torch"}, None)
    assert train.loss == codes["train"].loss and test.acc == codes["test"].acc
    assert (train.labels == codes["train"].labels).all()
    for name in selections:
        assert got[name]["n_bits_used"] == want[name]["n_bits_used"] < want[name]["n_bits"] or name == "2"
        for key, value in want[name].items():
            if key.endswith(("net_acc", "net_loss")):
                continue
            if key == "test/logreg_acc":  # another basis of the same row space: the same optimum
                assert got[name][key] == pytest.approx(value, abs=0.01), (name, key)
            else:
                assert got[name][key] == value, (name, key)
        assert got[name]["test/redundancy"] > 0 and got[name]["train/redundancy"] > 0


def test_network_source_agrees_with_the_sklearn_backend_on_redundancy_and_knn() -> None:
    net, loaders = _net_and_loaders()
    units = describe_units(net, (1, 8, 8))
    _, _, got = score_network(net, loaders, [0, 1], units, {"all": [0, 1]}, SIZES, {}, WHICH, None)
    codes = {split: collect_codes(net, loaders[split], [0, 1]) for split in SIZES}
    want = score_selections(codes["train"], codes["test"], None, WHICH, {"backend": "sklearn"}, None)["all"]
    for key in ("train/redundancy", "test/redundancy", "test/knn_acc", "test/knn_acc_index", "test/knn_vote_ties"):
        assert got["all"][key] == want[key], key
    for key in ("train/kmeans_acc", "test/kmeans_acc"):  # scikit-learn's draws differ: the agreement bound
        assert abs(got["all"][key] - want[key]) <= 0.12, key
    assert abs(got["all"]["test/logreg_acc"] - want["test/logreg_acc"]) <= 0.01


@pytest.mark.parametrize("units,budget", [([256, 256], 30_000), ([1000, 8, 3000], 5_000), ([5], 10)])
def test_groups_cover_every_unit_once_within_the_budget(units: list[int], budget: int) -> None:
    n_rows = 100
    groups = plan_groups(units, n_rows, budget)
    covered = {li: [] for li in range(len(units))}
    for group in groups:
        assert sum(-(-(hi - lo) // 8) for _, lo, hi in group) * n_rows <= max(budget, 8 * n_rows)
        for li, lo, hi in group:
            covered[li].append((lo, hi))
    for li, u in enumerate(units):
        spans = sorted(covered[li])
        assert spans[0][0] == 0 and spans[-1][1] == u
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_auto_takes_the_network_only_past_the_budget_and_when_nothing_needs_the_codes() -> None:
    assert resolve_source("auto", 1000, 8000, 10**6) == "memory"          # 1 MB of codes: fits
    assert resolve_source("auto", 1000, 80_000, 10**6) == "network"       # 10 MB: does not
    assert resolve_source("auto", 1000, 80_000, 10**6, save=True) == "memory"
    assert resolve_source("auto", 1000, 80_000, 10**6, which=["knn", "retrieval"]) == "memory"
    assert resolve_source("memory", 1000, 80_000, 10**6) == "memory"
    # on a GPU: codes with more bits than rows score from the Gram matrix when it fits there
    assert resolve_source("auto", 1000, 8000, 10**9, device_memory=80 * 10**9) == "network"
    assert resolve_source("auto", 10_000, 8000, 10**9, device_memory=80 * 10**9) == "memory"       # rows > bits
    assert resolve_source("auto", 60_000, 10**6, 10**12, n_train=50_000, device_memory=80 * 10**9) == "network"
    assert resolve_source("auto", 60_000, 10**6, 10**12, n_train=50_000, device_memory=40 * 10**9) == "memory"
    assert resolve_source("auto", 1000, 8000, 10**9, device_memory=80 * 10**9, which=["retrieval"]) == "memory"
    assert resolve_source("auto", 1000, 8000, 10**9, device_memory=80 * 10**9, which=["knn", "binary_encoding"]) == "network"


@pytest.mark.parametrize("overrides,says", [
    (["codes.save=true"], "codes.save must be false"),
    (["codes.memmap=true"], "codes.memmap must be false"),
    (["metrics.which=[knn,retrieval]"], "retrieval"),
    (["metrics.drop_constant=false"], "drop_constant must be true"),
])
def test_network_source_refuses_what_needs_the_codes(overrides: list[str], says: str, tmp_path: Path) -> None:
    cfg = compose_config(["codes.source=network", *overrides], output_dir=tmp_path)
    with pytest.raises(ConfigError, match=says) as err:
        validate(cfg)
    assert str(err.value).startswith("codes.source=network") and "\n" not in str(err.value)


def test_a_run_with_the_network_source_writes_the_memory_runs_metrics(tiny_cfg) -> None:
    rows = {}
    for source in ("memory", "network"):
        cfg = tiny_cfg(f"codes.source={source}", "metrics.backend=torch", "trainer.max_epochs=1", "codes.epochs=[1]")
        cfg.output_dir = cfg.output_dir + source
        run(cfg)
        lines = (Path(cfg.output_dir) / "encoding.jsonl").read_text().splitlines()
        rows[source] = [json.loads(line) for line in lines]
    for mem, net in zip(rows["memory"], rows["network"]):
        assert net["code_passes"] == 1 and "code_passes" not in mem
        for key in ("n_bits_used", "train/redundancy", "test/redundancy", "test/knn_acc", "train/kmeans_acc",
                    "test/kmeans_acc", "test/net_acc"):
            if key in mem:
                assert net[key] == mem[key], key
        if "test/logreg_acc" in mem:
            assert net["test/logreg_acc"] == pytest.approx(mem["test/logreg_acc"], abs=0.01)


PEAK = """
import json, sys, torch
from torch import nn
from activation_hash.codes.gram import score_network
from activation_hash.codes.capture import describe_units
D, REPEAT, N_TRAIN, N_TEST = 32, 16384, 200, 100   # 524,288 bits per code: 19.7 MB of packed codes

class Wide(nn.Module):  # a cheap network with very wide codes: one ReLU over shifted copies of the input
    def __init__(self):
        super().__init__()
        self.offset = nn.Parameter(torch.randn(D * REPEAT) * 0.5)
        self.relu = nn.ReLU()
        self.head = nn.Linear(D, 10)
    def forward(self, x):
        self.relu(x.repeat(1, REPEAT) + self.offset)
        return self.head(x)

torch.manual_seed(0)
net = Wide()
gen = torch.Generator().manual_seed(1)
centers = torch.randn(10, D, generator=gen)
data = {}
for split, n in (("train", N_TRAIN), ("test", N_TEST)):
    y = torch.randint(0, 10, (n,), generator=gen)
    x = centers[y] + torch.randn(n, D, generator=gen)
    data[split] = [(x[i:i + 1], y[i:i + 1]) for i in range(n)]  # a batch: 2 MB of activations
units = describe_units(net, (D,))
sizes = {"train": N_TRAIN, "test": N_TEST}
budget = int(sys.argv[1])
which = ["redundancy", "kmeans", "knn", "logreg"]
small = {s: data[s][:20] for s in data}
score_network(net, small, [0], units, {"all": [0]}, {"train": 20, "test": 20}, {"max_ram": budget}, which, None)  # warm-up


def status(key):  # kB -> bytes, from /proc/self/status
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))


open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current resident size
before = status("VmRSS")
_, _, scored = score_network(net, data, [0], units, {"all": [0]}, sizes, {"max_ram": budget}, which, None)
print(json.dumps({"grown": status("VmHWM") - before, "metrics": scored["all"]}))
"""


@pytest.mark.slow  # about a minute: 35 forward passes and a 300 x 300 Gram over 524,288 bits
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-memory reset")
def test_codes_wider_than_max_ram_never_held(tmp_path: Path) -> None:
    budget = 2**20
    n, n_train, bits = 300, 200, 524_288
    script = tmp_path / "peak.py"
    script.write_text(PEAK)
    out = subprocess.run([sys.executable, str(script), str(budget)], capture_output=True, text=True, cwd=REPO,
                         timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # the stated bound: the budget, the Gram matrix (float64 on the CPU), logistic regression's
    # float64 train block and eigenvectors, three activation tensors of one batch (the forward
    # pass's own), the one-vs-one solver's gathered rows (45 pairs x 2 n_train / 10 rows x rank,
    # float64, and its product), 4 MiB for the rest -- less than the packed codes alone
    ovo = 45 * (2 * n_train // 10) * n_train * 8 * 2
    bound = budget + n * n * 8 + 2 * n_train * n_train * 8 + 3 * bits * 4 + ovo + 4 * 2**20
    assert bound < n * bits // 8
    assert result["grown"] < bound, (result["grown"], bound)
    print(f"peak growth {result['grown'] / 2**20:.1f} MiB, bound {bound / 2**20:.1f} MiB, "
          f"packed codes {n * bits / 8 / 2**20:.1f} MiB")
    assert result["metrics"]["code_passes"] >= 30  # half the budget per group: 1,748 bytes of each row
    assert result["metrics"]["n_bits_used"] > bits // 2 and 0 <= result["metrics"]["test/knn_acc"] <= 1


def test_families_that_read_no_code_bits_run_with_the_network_source(tmp_path: Path) -> None:
    """model=binary_encoding's family reads the latents and logits, not the code bits: with
    codes.source=network it runs on extras collected in the first pass, equal to the memory run's."""
    rows = {}
    for source in ("memory", "network"):
        cfg = compose_config(["model=binary_encoding", "model.backbone.width=16", "trainer.max_epochs=1",
                              "codes.epochs=[1]", "data.train_size=300", "data.test_size=200", "progress_bar=none",
                              "codes.verbose=false", "metrics.backend=torch", f"codes.source={source}"],
                             output_dir=tmp_path / source)
        run(cfg)
        rows[source] = [json.loads(line) for line in (tmp_path / source / "encoding.jsonl").read_text().splitlines()]
    test = {s: next(r for r in rows[s] if r["split"] == "test") for s in rows}
    assert test["network"]["code_passes"] == 1
    for key in ("test/binarity_separation", "test/same_encoding_frac", "test/nc1", "test/redundancy", "test/knn_acc",
                "test/kmeans_acc", "n_bits_used"):
        assert test["network"][key] == pytest.approx(test["memory"][key], rel=1e-9, abs=1e-12), key
