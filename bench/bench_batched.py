"""Per-epoch training throughput of a study's width grid: one BatchedMLP for all members, trained
by the launcher's LightningModule (`tests/batched_helpers.fit`, a Lightning Trainer per group), vs the members
one after another, each a plain solo loop (zero_grad, forward, CE, backward, step: what
Lightning's automatic optimization does per batch, minus Lightning's own per-step cost, so the
ratio is conservative).

    python bench/bench_batched.py                 # the paper's MNIST width grid, 115 members
    python bench/bench_batched.py --train-size 2000 --epochs 1 --device cpu
    python bench/bench_batched.py --end-to-end    # smoke model_size + training_time grids, whole sweeps:
                                                  # hydra/launcher=batched vs the default launcher

End to end (`--end-to-end`): each study's smoke sweep runs twice as `python -m activation_hash
+experiment=STUDY -m` subprocesses on this machine, in this run (default launcher, then
`hydra/launcher=batched`), into fresh output folders; the script prints wall and CPU seconds
(children's user+sys: the fairer figure on a machine loaded by others), their ratios, and checks
with activation_hash.batched.compare that both sweeps wrote the same run directories with the
same metrics (worst relative difference printed per file kind).

Both sides train the same members from the same initial weights and loaders; the script checks
that the final weights agree and prints the ratio measured in this run. The recipe's StepLR
schedule and early stopping are not applied on either side (one epoch, scheduler step 20).
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import subprocess
import sys
import tempfile
import time

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import open_dict

from activation_hash.batched import BatchedMLP

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root: tests/ helpers
from tests.batched_helpers import fit, max_relative_difference, train_solo  # noqa: E402

PAPER_WIDTHS = [3, 7, 10, 15, 20, 23, 27, 30, 33, 37, 40, 43, 47, 50, 53, 57, 60, 65, 70, 75, 80, 90, 100]


def members(train_size: int | None, seeds: int, widths: list[int], device: str):
    with initialize_config_module(config_module="activation_hash.conf", version_base="1.3"):
        base = compose(config_name="config", overrides=["+experiment=model_size", "profile=paper"])
    out, loaders = [], []
    data = {}
    for seed in range(seeds):
        cfg = copy.deepcopy(base)
        with open_dict(cfg):
            cfg.seed = seed
            cfg.data.train_size = train_size
        pl.seed_everything(seed, verbose=False)
        dm = instantiate(cfg.data)
        dm.setup("fit")
        data[seed] = (cfg, dm.to(device))
    for seed in range(seeds):
        for width in widths:
            cfg, dm = data[seed]
            pl.seed_everything(seed, verbose=False)
            with open_dict(cfg):
                cfg.model.width = width
            net = instantiate(cfg.model)(input_shape=tuple(dm.input_shape), num_classes=dm.num_classes)
            out.append(net.to(device))
            loaders.append(lambda dm=dm: dm.train_dataloader())
    return base, out, loaders


def solo_epochs(net, loader, optimizer_factory, epochs: int):
    return train_solo(net, loader, optimizer_factory(params=net.parameters()), epochs)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _sweep(study: str, out: str, launcher: list[str], extra: list[str]) -> tuple[float, float]:
    env = {**os.environ, "ACTIVATION_HASH_OUTPUT": out, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "activation_hash", f"+experiment={study}", "-m", *launcher,
                    "progress_bar=none", *extra], check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def end_to_end(studies: list[str], extra: list[str], keep: str | None) -> None:
    from pathlib import Path

    from activation_hash.batched.compare import compare_sweeps
    root = Path(keep or tempfile.mkdtemp(prefix="bench_batched_"))
    print(f"end to end, smoke grids, output under {root}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    totals = {"default": [0.0, 0.0], "batched": [0.0, 0.0]}
    for study in studies:
        times = {}
        for name, launcher in (("default", []), ("batched", ["hydra/launcher=batched"])):
            times[name] = _sweep(study, str(root / name), launcher, extra)
            totals[name] = [a + b for a, b in zip(totals[name], times[name])]
        (dw, dc), (bw, bc) = times["default"], times["batched"]
        print(f"{study}: default {dw:.1f} s wall / {dc:.1f} s CPU, batched {bw:.1f} s / {bc:.1f} s: "
              f"ratio {dw / bw:.2f}x wall, {dc / bc:.2f}x CPU", flush=True)
        sweep = Path("studies") / study / "smoke"
        worst = compare_sweeps(root / "batched" / sweep, root / "default" / sweep)
        print(f"  {worst.pop('runs')} runs, worst relative difference "
              + ", ".join(f"{k} {v:.2g}" for k, v in worst.items()))
    (dw, dc), (bw, bc) = totals["default"], totals["batched"]
    print(f"total: default {dw:.1f} s wall / {dc:.1f} s CPU, batched {bw:.1f} s / {bc:.1f} s: ratio "
          f"{dw / bw:.2f}x wall, {dc / bc:.2f}x CPU; load average {os.getloadavg()[0]:.1f} at the end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--end-to-end", action="store_true", help="whole smoke sweeps, batched vs default launcher")
    parser.add_argument("--studies", nargs="+", default=["model_size", "training_time"])
    parser.add_argument("--override", nargs="*", default=[], help="extra overrides for both sweeps (end to end)")
    parser.add_argument("--keep", help="output folder to keep (end to end; default: a temporary one)")
    parser.add_argument("--train-size", type=int, default=2000, help="MNIST training images (null: all 60,000)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--groups", type=int, default=1,
                        help="split the members, sorted by width, into this many batches (less padding)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.end_to_end:
        end_to_end(args.studies, args.override, args.keep)
        return
    cfg, nets, loaders = members(args.train_size or None, args.seeds, PAPER_WIDTHS, args.device)
    optimizer_factory = instantiate(cfg.optimizer)
    print(f"{len(nets)} members (widths {PAPER_WIDTHS[0]}..{PAPER_WIDTHS[-1]} x {args.seeds} seeds), "
          f"{args.train_size} MNIST images, {args.epochs} epoch(s), device {args.device}, "
          f"{torch.get_num_threads()} thread(s), {args.groups} batch(es)")

    by_width = sorted(range(len(nets)), key=lambda m: nets[m][1].out_features)
    groups = [by_width[g * len(nets) // args.groups:(g + 1) * len(nets) // args.groups] for g in range(args.groups)]
    sync(args.device)
    t0 = time.perf_counter()
    batches = []
    for group in groups:
        batched = BatchedMLP([copy.deepcopy(nets[m]) for m in group]).to(args.device)
        fit(batched, [loaders[m]() for m in group], optimizer_factory, args.epochs,
            accelerator="gpu" if args.device.startswith("cuda") else "cpu")
        batches.append((group, batched))
    sync(args.device)
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    solos = [solo_epochs(copy.deepcopy(n), make(), optimizer_factory, args.epochs) for n, make in zip(nets, loaders)]
    sync(args.device)
    t_solo = time.perf_counter() - t0

    worst = 0.0
    for group, batched in batches:
        for j, m in enumerate(group):
            worst = max(worst, max_relative_difference(batched.member_state(j, copy.deepcopy(nets[m])), solos[m]))
    print(f"one after another: {t_solo:.2f} s per {args.epochs} epoch(s)   batched: {t_batched:.2f} s   "
          f"ratio {t_solo / t_batched:.2f}x   max relative weight difference {worst:.2e}")


if __name__ == "__main__":
    main()
