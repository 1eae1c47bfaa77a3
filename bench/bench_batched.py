"""Per-epoch training throughput of a study's width grid: one BatchedMLP for all members vs the
members one after another (each a plain solo loop: zero_grad, forward, CE, backward, step, what
Lightning's automatic optimization does per batch, minus Lightning's own per-step cost).

    python bench/bench_batched.py                 # the paper's MNIST width grid, 115 members
    python bench/bench_batched.py --train-size 2000 --epochs 1 --device cpu

Both sides train the same members from the same initial weights and loaders; the script checks
that the final weights agree and prints the ratio measured in this run. The recipe's StepLR
schedule and early stopping are not applied on either side (one epoch, scheduler step 20).
"""

from __future__ import annotations

import argparse
import copy
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import open_dict

from activation_hash.batched import BatchedMLP
from activation_hash.batched.mlp import max_relative_difference
from activation_hash.batched.fit import fit

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
    optimizer = optimizer_factory(params=net.parameters())
    net.train()
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimizer.step()
    return net


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=2000, help="MNIST training images (null: all 60,000)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--groups", type=int, default=1,
                        help="split the members, sorted by width, into this many batches (less padding)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
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
        fit(batched, [loaders[m]() for m in group], optimizer_factory, args.epochs)
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
