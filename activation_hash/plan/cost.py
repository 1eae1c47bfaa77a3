"""The arithmetic of a plan: a run's steps, epochs and captures from its config, and a unit's time,
RAM and disk from a device calibration. Pure functions of dicts (no torch, no Hydra).

What is counted exactly (from the config and the meta-built network): optimizer steps, epochs,
captures, bits per code, code volume. What is measured (per device, `plan.calibrate`): the seconds
of one optimizer step beyond its arithmetic (`step_overhead_s`), of one training epoch's machinery
(`epoch_overhead_s`), of one evaluation batch (`batch_overhead_s`), of one capture's fixed part
(`capture_overhead_s`), the training and evaluation FLOP rates of each network family, the metrics'
seconds per Gbit of codes (redundancy, K-Means, logistic regression: `metrics_s_per_gbit`) and K-NN's
per 1e12 word-pairs (n_train x n_test x 64-bit words of a code, what faiss's popcount
search does: `knn_s_per_tword_pair`); with `codes.selections` the metrics are paid once per
selection, on that selection's bits (`selection_bits`). What is modelled: a training
step costs 3x the forward FLOPs (forward + backward); a batched group of M members pays one step's
overhead and M members' arithmetic; captures and validation are paid per member; a run validates
only where something reads it (`runs.validation`: val/* early stopping or checkpoint, a user callback,
trainer.check_val_every_n_epoch set), as run.py and the batched group do; early stopping is
not foreseen (every run is costed to its epoch or step limit: an upper bound); peak RAM = process
base + data (float32, once per unit plus each member's own subset) + per member parameters, gradients
and two Adam moments (16 bytes a parameter) + the larger of the training activations and the capture
(one member's: a group captures its members one at a time; `capture_memory` says what a capture holds
for each `codes.source`); with a GPU calibration, parameters, optimizer state, activations and the
network source's Gram matrix count as device memory (`peak_device_bytes`), not RAM; a network-source
capture pays one forward pass per layer group and its Gram arithmetic at `gram_flops_per_s`; disk = a resumable run's last.ckpt (12 bytes a parameter, twice while it is
replaced) + saved codes (`codes.save`) + logs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

TERMS = ("train", "epoch_machinery", "validation", "capture_forward", "capture_metrics")


def rate(calib: dict[str, Any], key: str, family: str) -> float:
    table = calib[key]
    return float(table.get(family, table["default"]))


def run_facts(task: dict[str, Any], data: tuple, info: dict[str, Any], bits: int) -> dict[str, Any]:
    """Steps, epochs, captures and sizes of one run. `data` = arch.data_facts(task["data"])."""
    from activation_hash.codes.schedule import capture_epochs
    shape, _, n_file, n_test_file = data
    d, trainer, codes = task["data"], task["trainer"], task.get("codes") or {}
    n_val = int(round(n_file * float(d.get("val_fraction") or 0.0)))
    n_train = int(d.get("train_size") or (n_file - n_val))
    n_test = int(d.get("test_size") or n_test_file)
    batch = int(d.get("batch_size") or 1)
    per_epoch = math.floor(n_train / batch) if d.get("drop_last") else math.ceil(n_train / batch)
    per_epoch = max(per_epoch, 1)
    max_epochs = int(trainer.get("max_epochs") or 0)
    max_steps = int(trainer.get("max_steps") or -1)
    steps = per_epoch * max_epochs if max_steps <= 0 else min(max_steps, per_epoch * max_epochs)
    epochs = math.ceil(steps / per_epoch) if steps else 0
    schedule = [e for e in capture_epochs(codes.get("epochs", "log:8"), max_epochs) if e <= epochs]
    captures = len(schedule) + int(bool(codes.get("capture_last", True)) and epochs < max_epochs
                                   and epochs not in schedule)
    from activation_hash.runs.validation import validation_readers
    every = trainer.get("check_val_every_n_epoch") or 1
    # a run validates only where something reads it (runs.validation), as run.py and batched/ do
    val_epochs = epochs // int(every) if n_val and validation_readers(task) else 0
    return {"n_train": n_train, "n_val": n_val, "n_test": n_test, "batch": batch,
            "eval_batch": int(d.get("eval_batch_size") or batch), "steps": steps, "epochs": epochs,
            "val_epochs": val_epochs, "captures": captures, "bits": int(bits),
            "dim": int(math.prod(shape)), "n_file": n_file, "n_test_file": n_test_file,
            "code_bits": captures * (n_train + n_test) * int(bits),
            "save_codes": bool(codes.get("save", False)), "resumable": task.get("resume", "auto") == "auto",
            "subset": d.get("train_size") is not None,
            "max_dense_bytes": int((task.get("metrics") or {}).get("max_dense_bytes", 1 << 30)),
            "source": codes.get("source", "auto"), "max_ram": (task.get("metrics") or {}).get("max_ram"),
            "network_ok": _network_ok(task)}


def _network_ok(task: dict[str, Any]) -> bool:
    from activation_hash.codes.source import network_source_reason
    codes, metrics = task.get("codes") or {}, task.get("metrics") or {}
    return network_source_reason(codes.get("save"), codes.get("memmap"), metrics.get("which"),
                                 metrics.get("drop_constant", True)) is None


def capture_memory(r: dict[str, Any], bits: int, calib: dict[str, Any]) -> dict[str, Any]:
    """Where one member's capture holds what (codes.source, `activation_hash.codes.gram`): host
    bytes, device bytes (GPU calibrations), forward passes, and the Gram arithmetic (FLOPs).
    memory: the packed codes of both splits plus the metrics' dense block on the host; network:
    one layer group's packed bits (half of metrics.max_ram) on the host, the Gram matrix (4 bytes
    an entry on a GPU, 8 on the CPU) and logistic regression's float64 eigendecomposition of the
    train block (2 x n_train^2 x 8) where the metrics run."""
    from activation_hash.codes.source import resolve_source
    n = r["n_train"] + r["n_test"]
    codes = n * math.ceil(bits / 8)
    budget = int(r.get("max_ram") or int(calib.get("ram_bytes", 0)) // 4)
    source = r.get("source", "auto")
    if source == "auto" and (not r.get("network_ok", True) or budget <= 0):  # no RAM figure: as before
        source = "memory"
    budget = max(budget, 2**20)
    gpu_memory = int(calib.get("device_memory_bytes") or 0) if calib.get("gpu") else 0
    if resolve_source(source, n, bits, budget, device_memory=gpu_memory or None, n_train=r["n_train"]) == "memory":
        return {"host": codes + min(r["max_dense_bytes"], 4 * n * bits), "device": 0, "passes": 1, "gram_flops": 0.0}
    gpu = bool(calib.get("gpu"))
    group = min(codes, max(1, budget // 2))
    solver = n * n * (4 if gpu else 8) + 2 * r["n_train"] ** 2 * 8
    # the Gram product, the eigendecomposition (~4 n_train^3) and batched Lloyd (~50 passes of n^2 x 10 K x 2)
    flops = 2.0 * n * n * bits + 4.0 * r["n_train"] ** 3 + 50 * 2.0 * n * n * 100
    return {"host": group + (0 if gpu else solver), "device": solver if gpu else 0,
            "passes": math.ceil(codes / max(1, budget // 2)), "gram_flops": flops}


def unit_cost(runs: Sequence[dict[str, Any]], info: dict[str, Any], calib: dict[str, Any]) -> dict[str, Any]:
    """Seconds (per term), peak RAM and disk of one unit: its members' run_facts, one architecture."""
    fam, flops, m = info["family"], float(info["flops"]), len(runs)
    train_fps, eval_fps = rate(calib, "train_flops_per_s", fam), rate(calib, "eval_flops_per_s", fam)
    steps = max(r["steps"] for r in runs)
    epochs = max(r["epochs"] for r in runs)
    batch = max(r["batch"] for r in runs)
    gram_fps = float(calib.get("gram_flops_per_s") or rate(calib, "eval_flops_per_s", "default"))
    t = dict.fromkeys(TERMS, 0.0)
    t["train"] = steps * (calib["step_overhead_s"] + m * 3 * flops * batch / train_fps)
    t["epoch_machinery"] = epochs * calib["epoch_overhead_s"]
    for r in runs:
        t["validation"] += r["val_epochs"] * (r["n_val"] * flops / eval_fps
                                              + math.ceil(r["n_val"] / r["eval_batch"]) * calib["batch_overhead_s"])
        n = r["n_train"] + r["n_test"]
        mem = capture_memory(r, r["bits"], calib)
        t["capture_forward"] += r["captures"] * (calib["capture_overhead_s"] + mem["passes"] * (
            n * flops / eval_fps + math.ceil(n / r["eval_batch"]) * calib["batch_overhead_s"]))
        for bits in r.get("selection_bits") or [r["bits"]]:  # codes.selections: each scored on its own
            if mem["gram_flops"]:  # codes.source=network: the Gram arithmetic at the GEMM rate
                t["capture_metrics"] += r["captures"] * capture_memory(r, bits, calib)["gram_flops"] / gram_fps
                continue
            t["capture_metrics"] += r["captures"] * (calib["metrics_s_per_gbit"] * n * bits / 1e9
                                                     + calib["knn_s_per_tword_pair"] * r["n_train"] * r["n_test"]
                                                     * math.ceil(bits / 64) / 1e12)
    r0 = runs[0]
    data = 4 * r0["dim"] * (r0["n_train"] + r0["n_val"] + r0["n_test"]) + r0["dim"] * (r0["n_file"] + r0["n_test_file"])
    data += sum(4 * r["dim"] * r["n_train"] for r in runs[1:] if r["subset"])
    params = 16 * info["params"] * m
    activations = 2 * 4 * info["activations"] * batch * m
    captured = [capture_memory(r, r["bits"], calib) for r in runs if r["captures"]]  # one member's at a time
    capture_host = max((c["host"] for c in captured), default=0)
    capture_device = max((c["device"] for c in captured), default=0)
    if calib.get("gpu"):  # parameters, optimizer state and activations live on the device
        ram = int(calib["base_ram_bytes"] + data + capture_host)
        device = int(max(params + activations, params // 4 + capture_device))
    else:
        ram = int(calib["base_ram_bytes"] + data + params + max(activations, capture_host))
        device = 0
    disk = sum(2 * 12 * info["params"] * r["resumable"]
               + (r["captures"] * (r["n_train"] + r["n_test"]) * r["bits"] // 8 if r["save_codes"] else 0)
               + 20_000 * r["captures"] + 200 * r["epochs"] for r in runs)
    return {"seconds": sum(t.values()), "terms": t, "peak_ram_bytes": ram, "peak_device_bytes": device,
            "disk_bytes": int(disk), "members": m, "steps": steps,
            "network_captures": sum(r["captures"] for r in runs if capture_memory(r, r["bits"], calib)["gram_flops"])}
