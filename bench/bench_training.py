"""Training throughput of the paper's MNIST MLPs: Lightning against a plain PyTorch loop.

Run (about a minute on 2 CPU cores):

    . .venv/bin/activate
    python bench/bench_training.py
    python bench/bench_training.py --epochs 2 --repeats 7 --widths 40 100 --batch-sizes 128 64 --threads 1

For every (width, batch size) this trains a depth-1 MLP on MNIST (48,000 training images, the
paper's split) three ways, in the same process, on the same device:

    lightning   pl.Trainer(...).fit(Classifier(MLP), datamodule=InMemoryDataModule): the project's path
                (automatic optimization, one optimizer step per training_step)
    plain       the same model, initial weights, Adam, data order and batch size in a hand-written loop
                over the same TensorBatchLoader (slices of device tensors, no DataLoader)
    dataloader  a plain loop over torch DataLoader(TensorDataset(x, y)): per-sample indexing and
                collation, the overhead the tensor loader avoids (its own shuffle order)

The three run interleaved (L P D, L P D, ...); the first round is a warm-up and is discarded.
Wall-clock samples/s are reported as median [min-max] over the rounds; the ratio Lightning/plain is
taken per round (the two runs are seconds apart, so slow phases of a shared machine hit both)
and its median is the verdict: PASS when Lightning's overhead is below 10% for every
configuration, FAIL otherwise. Process CPU time gives a second ratio that other processes on a
busy machine disturb less (meaningful with --threads 1). Each round also checks that Lightning
and the plain loop end with the same weights, i.e. that they really did the same work.

--threads defaults to 1: on a small shared machine several intra-op threads contend with other
processes and timings swing by 10x; pass --threads 0 to keep torch's default.
Exit code 0 unless something errors; PASS/FAIL is printed.
"""

from __future__ import annotations

import argparse
import copy
import functools
import logging
import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from activation_hash.data.datamodule import InMemoryDataModule
from activation_hash.data.tensor_loader import TensorBatchLoader
from activation_hash.models.classifier import Classifier
from activation_hash.models.mlp import MLP

TARGET_OVERHEAD = 0.10
LR = 1e-3
SEED = 0
DEPTH = 1


@dataclass
class Timing:
    wall: float
    cpu: float


@dataclass
class Runs:
    """Timings of one configuration, one entry per kept round."""
    lightning: list[Timing] = field(default_factory=list)
    plain: list[Timing] = field(default_factory=list)
    dataloader: list[Timing] = field(default_factory=list)
    max_weight_diff: float = 0.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed run (default 1)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds after the warm-up round (default 7)")
    parser.add_argument("--widths", type=int, nargs="+", default=[40, 100], help="hidden widths (default 40 100)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 64], help="default 128 64")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads; 0 keeps torch's default (default 1)")
    parser.add_argument("--root", default=os.environ.get("ACTIVATION_HASH_DATA", "/work/shared/datasets"),
                        help="folder holding MNIST/raw (default $ACTIVATION_HASH_DATA or /work/shared/datasets)")
    args = parser.parse_args()
    if args.epochs < 1 or args.repeats < 1 or args.threads < 0:
        parser.error("--epochs and --repeats must be >= 1, --threads >= 0")
    if min(args.widths) < 1 or min(args.batch_sizes) < 1:
        parser.error("--widths and --batch-sizes must be >= 1")
    return args


def resolve_device(name: str) -> torch.device:
    """The device Lightning's accelerator="auto" picks (cuda, else mps, else cpu), or the one named."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(device: torch.device, work: Callable[[], nn.Module]) -> tuple[Timing, nn.Module]:
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    net = work()
    synchronize(device)
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), net


def fresh_net(init: dict[str, torch.Tensor], width: int, datamodule: InMemoryDataModule,
              device: torch.device) -> nn.Module:
    net = MLP(datamodule.input_shape, datamodule.num_classes, depth=DEPTH, width=width)
    net.load_state_dict(init)
    return net.to(device)


def trainer_kwargs(epochs: int, accelerator: str, device: torch.device) -> dict:
    devices = [device.index] if device.type == "cuda" and device.index is not None else 1
    return dict(max_epochs=epochs, accelerator=accelerator, devices=devices, logger=False,
                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                num_sanity_val_steps=0, limit_val_batches=0)


def train_lightning(net: nn.Module, datamodule: InMemoryDataModule, kwargs: dict,
                    device: torch.device) -> nn.Module:
    model = Classifier(net, datamodule.num_classes, optimizer=functools.partial(torch.optim.Adam, lr=LR))
    trainer = pl.Trainer(**kwargs)
    trainer.fit(model, datamodule=datamodule)
    root = trainer.strategy.root_device
    if root.type != device.type or (device.index is not None and root.index != device.index):
        raise RuntimeError(f"Lightning trained on {root} but the plain loops use "
                           f"{device}; pass --device explicitly")
    return model.net


def train_plain(net: nn.Module, datamodule: InMemoryDataModule, epochs: int) -> nn.Module:
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    # the loader of datamodule.train_dataloader() without chunks: the same (seed, epoch) orders as Lightning's
    loader = TensorBatchLoader(datamodule.x_train, datamodule.y_train, datamodule.batch_size,
                               shuffle=datamodule.shuffle, seed=datamodule.seed)
    net.train()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            optimizer.step()
    return net


def train_dataloader_loop(net: nn.Module, dataset: TensorDataset, batch_size: int, epochs: int,
                          device: torch.device) -> nn.Module:
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(SEED))
    net.train()
    for _ in range(epochs):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad()
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            optimizer.step()
    return net


def max_weight_diff(a: nn.Module, b: nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


def bench_configuration(width: int, batch_size: int, datamodule: InMemoryDataModule, cpu_data: TensorDataset,
                        args: argparse.Namespace, kwargs: dict, device: torch.device) -> Runs:
    datamodule.batch_size = batch_size  # train_dataloader() reads it on every call
    torch.manual_seed(SEED)
    init = copy.deepcopy(MLP(datamodule.input_shape, datamodule.num_classes, depth=DEPTH, width=width).state_dict())
    runs = Runs()
    for round_index in range(args.repeats + 1):
        lightning, lightning_net = timed(device, lambda: train_lightning(
            fresh_net(init, width, datamodule, device), datamodule, kwargs, device))
        plain, plain_net = timed(device, lambda: train_plain(
            fresh_net(init, width, datamodule, device), datamodule, args.epochs))
        loader, _ = timed(device, lambda: train_dataloader_loop(
            fresh_net(init, width, datamodule, device), cpu_data, batch_size, args.epochs, device))
        runs.max_weight_diff = max(runs.max_weight_diff, max_weight_diff(lightning_net, plain_net))
        if round_index == 0:
            continue  # warm-up
        runs.lightning.append(lightning)
        runs.plain.append(plain)
        runs.dataloader.append(loader)
    return runs


def throughput(samples: int, timings: list[Timing]) -> str:
    rates = [samples / t.wall for t in timings]
    return f"{statistics.median(rates):7.0f} [{min(rates):.0f}-{max(rates):.0f}]"


def paired_ratios(numerator: list[Timing], denominator: list[Timing], clock: str) -> list[float]:
    return [getattr(n, clock) / getattr(d, clock) for n, d in zip(numerator, denominator)]


def main() -> None:
    args = parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # no "GPU available: ..." per fit
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    accelerator = "auto" if args.device == "auto" else {"cuda": "gpu"}.get(device.type, device.type)

    datamodule = InMemoryDataModule(name="mnist", root=args.root, batch_size=args.batch_sizes[0], seed=SEED)
    datamodule.setup()
    cpu_data = TensorDataset(datamodule.x_train, datamodule.y_train)  # the DataLoader reference reads CPU tensors
    datamodule.to(device)  # Classifier.on_fit_start does the same; the plain loop indexes these device tensors
    n_train = len(datamodule.y_train)
    samples = n_train * args.epochs
    kwargs = trainer_kwargs(args.epochs, accelerator, device)

    print(f"bench_training: MNIST MLP depth {DEPTH}, {n_train} training samples x {args.epochs} epoch(s), "
          f"{args.repeats} rounds after 1 warm-up, device {device}, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, pytorch-lightning {pl.__version__}, "
          f"python {platform.python_version()}")
    print("samples/s: median [min-max] over rounds; ratios: median [min-max] of per-round pairs\n")
    header = (f"{'width':>5} {'batch':>5}  {'lightning':>22}  {'plain':>22}  {'dataloader':>22}  "
              f"{'L/plain wall':>18}  {'overhead':>8}  {'L/plain cpu':>11}  {'+ms/step':>8}  {'DL/plain':>8}")
    print(header)
    print("-" * len(header))

    failed: list[str] = []
    max_diff = 0.0
    for batch_size in args.batch_sizes:
        for width in args.widths:
            runs = bench_configuration(width, batch_size, datamodule, cpu_data, args, kwargs, device)
            max_diff = max(max_diff, runs.max_weight_diff)
            wall = paired_ratios(runs.lightning, runs.plain, "wall")
            cpu = paired_ratios(runs.lightning, runs.plain, "cpu")
            loader = paired_ratios(runs.dataloader, runs.plain, "wall")
            ratio = statistics.median(wall)
            steps = args.epochs * math.ceil(n_train / batch_size)
            extra_ms = 1e3 * (statistics.median(t.wall for t in runs.lightning)
                              - statistics.median(t.wall for t in runs.plain)) / steps
            print(f"{width:>5} {batch_size:>5}  {throughput(samples, runs.lightning)}  "
                  f"{throughput(samples, runs.plain)}  {throughput(samples, runs.dataloader)}  "
                  f"{ratio:5.2f} [{min(wall):.2f}-{max(wall):.2f}]  {100 * (ratio - 1):+7.0f}%  {statistics.median(cpu):11.2f}  "
                  f"{extra_ms:8.3f}  {statistics.median(loader):8.2f}", flush=True)
            if ratio - 1 >= TARGET_OVERHEAD:
                failed.append(f"width {width} batch {batch_size}: +{100 * (ratio - 1):.0f}%")

    print(f"\nsame work check: largest |weight difference| Lightning vs plain = {max_diff:.3g}"
          f"{' (identical)' if max_diff == 0 else ''}")
    print(f"+ms/step: Lightning's extra wall time per optimizer step over the plain loop; "
          f"DL/plain: the DataLoader(TensorDataset) loop's time over the tensor-slicing loop")
    if failed:
        print(f"FAIL: Lightning overhead >= {100 * TARGET_OVERHEAD:.0f}% over the plain loop for "
              f"{len(failed)} configuration(s): {'; '.join(failed)}")
    else:
        print(f"PASS: Lightning overhead < {100 * TARGET_OVERHEAD:.0f}% over the plain loop for every configuration")


if __name__ == "__main__":
    main()
