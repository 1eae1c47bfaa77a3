"""Unit costs of this machine, measured once and cached (or read from a file measured elsewhere).

    python -m activation_hash.plan --all --write-profile FILE   # measure here (every family), write FILE

Measured here, in seconds, on the device the runs would use (`calibration_device`: the first CUDA
GPU when torch sees one, else the CPU threads this process may use):
  - three tiny real runs (`activation_hash.run.run`, synthetic 4x4 data, a 4-unit MLP, one cheap
    metric) whose differences give `step_overhead_s` (many one-sample steps), `epoch_overhead_s` and
    `batch_overhead_s` (many one-step epochs with a validation batch each), and `capture_overhead_s`
    (the third run's fixed cost of one capture);
  - per network family of the plan, training steps (forward, backward, Adam) and forward passes of
    its own architecture on a small batch: `train_flops_per_s` and `eval_flops_per_s` from the FLOPs
    counted on the meta device, the fastest of five timed rounds (`best_rate`: on a shared machine
    other load only ever slows a round, so the fastest is the closest to what the device does);
  - one capture's metrics on 12,000 + 2,500 codes of 64 bits (sign patterns of a random ReLU layer
    over a 10-class Gaussian mixture; a quarter of an MNIST MLP capture): `metrics_s_per_gbit`
    (redundancy, K-Means, logistic regression) and `knn_s_per_tword_pair` (K-NN, per 1e12
    train x test pairs of 64-bit words), on the CPU (scikit-learn, the backend of a CPU capture);
  - on a GPU: `gram_flops_per_s`, an FP32 product of 0/1 matrices (codes.source=network's Gram
    product, fastest of five rounds), and the device's memory (`device_memory_bytes`, torch's public
    device properties).
The file is cached as ~/.cache/activation_hash/plan-HOST-cpuNt.json for N torch threads (a CPU's
rates depend on them) or plan-HOST-cuda.json ($ACTIVATION_HASH_CACHE overrides the folder); a family
measured once is not measured again. RAM and disk limits are this machine's
(MemTotal, free space under the output root) unless given.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from activation_hash.atomic import atomic_write_json

TINY = ["data=synthetic", "model.width=4", "model.depth=1", "metrics.which=[redundancy]", "logger=[]",
        "resume=never", "progress_bar=none", "codes.verbose=false", "trainer.accelerator=cpu"]


def calibration_device() -> str:
    """Where the runs of this machine train: "cuda" when torch sees a GPU, else "cpu"."""
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def cache_path(device: str = "cpu") -> Path:
    """The cached calibration of this host: per torch thread count on the CPU, per device type else."""
    folder = Path(os.environ.get("ACTIVATION_HASH_CACHE", Path.home() / ".cache" / "activation_hash"))
    if device == "cpu":
        import torch
        device = f"cpu{torch.get_num_threads()}t"
    return folder / f"plan-{socket.gethostname()}-{device}.json"


def machine_limits(output_root: str | Path = ".") -> dict[str, int]:
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    root = Path(output_root).resolve()
    while not root.exists():
        root = root.parent
    return {"ram_bytes": int(ram), "disk_bytes": int(shutil.disk_usage(root).free)}


def _sync(device: str) -> None:
    if device != "cpu":
        import torch
        torch.cuda.synchronize()


def best_rate(work: float, run: Callable[[], object], sync: Callable[[], None] = lambda: None, rounds: int = 5,
              min_s: float = 0.1, max_s: float = 20.0, clock: Callable[[], float] = time.perf_counter) -> float:
    """`work` per second of `run()`, the fastest of `rounds` timed rounds after one warm-up call; a
    round repeats `run()` for at least `min_s` (`sync()` waits for the device before the clock is
    read), and the rounds stop early after `max_s` in all."""
    run()
    sync()
    best, begun = 0.0, clock()
    for _ in range(rounds):
        started, n = clock(), 0
        while n < 1 or clock() - started < min_s:
            run()
            n += 1
        sync()
        best = max(best, work * n / max(clock() - started, 1e-12))
        if clock() - begun > max_s:
            break
    return best


def _timed_run(overrides: list[str], folder: Path) -> float:
    from hydra import compose, initialize_config_module
    from omegaconf import open_dict

    from activation_hash.run import run
    with initialize_config_module(config_module="activation_hash.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*TINY, *overrides])
    with open_dict(cfg):
        cfg.output_dir = str(folder / str(len(list(folder.iterdir()))))
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the run's table is not the plan's output
        run(cfg)
    return time.perf_counter() - started


def measure_overheads(device: str = "cpu") -> dict[str, float]:
    """Step, epoch, evaluation-batch and capture overheads from three tiny real runs (400 samples)
    on `device`."""
    import logging
    logging.getLogger("activation_hash").setLevel(logging.WARNING)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    on = [f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}"]  # after TINY's: it wins
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _timed_run([*on, "trainer.max_epochs=1", "codes.epochs=[1]"], folder)  # warm-up: imports, first compile
        one = _timed_run([*on, "trainer.max_epochs=1", "data.batch_size=400", "data.val_fraction=0", "codes.epochs=[1]"], folder)
        two = _timed_run([*on, "trainer.max_epochs=1", "data.batch_size=400", "data.val_fraction=0", "codes.epochs=[0,1]"], folder)
        steps = _timed_run([*on, "trainer.max_epochs=1", "data.batch_size=1", "data.val_fraction=0", "codes.epochs=[1]"], folder)
        epochs = _timed_run([*on, "trainer.max_epochs=100", "data.batch_size=400", "data.val_fraction=0",
                             "codes.epochs=[100]"], folder)
        val = _timed_run([*on, "trainer.max_epochs=100", "data.batch_size=320", "data.val_fraction=0.2",
                          "trainer.check_val_every_n_epoch=1", "codes.epochs=[100]"], folder)  # validation on
    step = max((steps - one) / 399, 1e-5)
    epoch = max((epochs - one) / 99 - step, 1e-5)
    batch = max((val - epochs) / 100, 1e-5)
    return {"step_overhead_s": step, "epoch_overhead_s": epoch, "batch_overhead_s": batch,
            "capture_overhead_s": max(two - one, 1e-3)}


def measure_family(model: dict, shape: tuple[int, ...], classes: int, flops: int,
                   device: str = "cpu") -> tuple[float, float]:
    """(training, evaluation) FLOP/s of one architecture on `device`: a few Adam steps and forward passes."""
    import torch
    from hydra.utils import instantiate
    net = instantiate(model)(input_shape=tuple(shape), num_classes=classes).to(device)
    batch = max(2, min(256, int(2e9 // max(flops, 1))))   # about 2 GFLOP of forward work a step
    x = torch.rand(batch, *shape, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    opt = torch.optim.Adam(net.parameters(), 1e-3)

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    net.train()
    train = best_rate(3 * flops * batch, step, lambda: _sync(device))
    net.eval()
    with torch.no_grad():
        return train, best_rate(flops * batch, lambda: net(x), lambda: _sync(device))


def measure_metrics(which: tuple[str, ...] = ("redundancy", "kmeans", "knn", "logreg")) -> dict[str, float]:
    """Metrics seconds per Gbit (all but K-NN) and K-NN seconds per 1e12 word-pairs, one capture."""
    import numpy as np

    from activation_hash.metrics import compute_families
    from activation_hash.metrics.registry import CodeSet
    rng = np.random.default_rng(0)
    n_train, n_test, bits, classes = 12000, 2500, 64, 10
    centres = rng.normal(size=(classes, 64))
    w = rng.normal(size=(64, bits))

    def codes(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % classes
        x = centres[y] + rng.normal(scale=1.5, size=(n, 64))
        return np.packbits((x @ w) > 0, axis=1), y
    (tr, ytr), (te, yte) = codes(n_train), codes(n_test)
    codeset = CodeSet(tr, ytr, te, yte, bits)
    linear = [f for f in which if f != "knn"]
    started = time.perf_counter()
    compute_families(codeset, linear)
    t_linear = time.perf_counter() - started
    started = time.perf_counter()
    compute_families(codeset, ["knn"])
    t_knn = time.perf_counter() - started
    return {"metrics_s_per_gbit": t_linear / ((n_train + n_test) * bits / 1e9),
            "knn_s_per_tword_pair": t_knn / (n_train * n_test * math.ceil(bits / 64) / 1e12)}


def load(path: str | Path) -> dict[str, Any]:
    try:
        calib = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: --device-profile={path}: not a readable JSON calibration ({err})") from err
    need = ("step_overhead_s", "epoch_overhead_s", "batch_overhead_s", "capture_overhead_s", "train_flops_per_s",
            "eval_flops_per_s", "metrics_s_per_gbit", "knn_s_per_tword_pair", "base_ram_bytes")
    if missing := [k for k in need if k not in calib]:
        raise SystemExit(f"error: --device-profile={path}: missing keys {missing}; a calibration holds {list(need)}")
    for key in ("train_flops_per_s", "eval_flops_per_s"):
        calib[key].setdefault("default", max(calib[key].values()) if calib[key] else 1e9)
    return calib


def measure_gram(device: str) -> dict[str, float]:
    """The FP32 rate of a 0/1 matrix product on `device` (codes.source=network's Gram product) and
    the device's memory."""
    import torch
    x = (torch.rand(2048, 16384, device=device) > 0.5).float()
    rate = best_rate(2 * 2048 * 2048 * 16384, lambda: x @ x.T, lambda: _sync(device))
    return {"gram_flops_per_s": rate,
            "device_memory_bytes": int(torch.cuda.get_device_properties(device).total_memory)}


def here(families: dict[str, tuple[dict, tuple[int, ...], int, int]], path: Path | None = None,
         device: str | None = None) -> dict[str, Any]:
    """This machine's calibration on `device` (`calibration_device()` when None): the cached file,
    with what it lacks (overheads, metrics, the families in `families`: name -> (model config,
    shape, classes, FLOPs), on a GPU its Gram rate and memory) measured and added."""
    device = device or calibration_device()
    path = path or cache_path(device)
    calib: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    missing = ("step_overhead_s" not in calib or "metrics_s_per_gbit" not in calib
               or any(name not in calib.get("train_flops_per_s", {}) for name in families))
    if missing:  # stderr: stdout is the plan
        print(f"calibrating this machine's unit costs (once, cached in {path})", file=sys.stderr, flush=True)
    if "step_overhead_s" not in calib:
        import resource
        calib.update(measure_overheads(device))
        calib["base_ram_bytes"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        changed = True
    if "metrics_s_per_gbit" not in calib:
        calib.update(measure_metrics())
        changed = True
    calib.setdefault("train_flops_per_s", {})
    calib.setdefault("eval_flops_per_s", {})
    for name, (model, shape, classes, flops) in families.items():
        if name not in calib["train_flops_per_s"]:
            calib["train_flops_per_s"][name], calib["eval_flops_per_s"][name] = measure_family(
                model, shape, classes, flops, device)
            changed = True
    if device != "cpu" and "gram_flops_per_s" not in calib:
        calib.update(measure_gram(device))
        changed = True
    calib["gpu"] = device != "cpu"
    for key in ("train_flops_per_s", "eval_flops_per_s"):
        calib[key]["default"] = min([v for k, v in calib[key].items() if k != "default"] or [1e9])
    torch = __import__("torch")
    what = torch.cuda.get_device_name(device) if device != "cpu" else "CPU"
    calib["device"] = f"{platform.node()}: {what}, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}"
    calib["source"] = "measured on this machine by activation_hash.plan.calibrate"
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, calib)
    return calib
