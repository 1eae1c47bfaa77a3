"""What a study will cost before it runs: runs, units, optimizer steps, captures, code volume,
peak RAM and disk per unit, and the estimated time on a device.

    python -m activation_hash.plan +experiment=training_time                 # one study, smoke profile
    python -m activation_hash.plan --all profile=paper --json plan.json      # every study
    python -m activation_hash.plan --all profile=paper --device-profile bench/h100_modelled.json
    python -m activation_hash.plan --all --check                             # exit 1 if a unit will not fit here
    make plan PROFILE=paper

Every study is composed with Hydra's compose API as `+experiment=NAME profile=P OVERRIDES -m` would
be (`expand.jobs`); the launcher's units are formed by the batched launcher's rule (`expand.units`,
`hydra/launcher=batched` by default, as `make reproduce-paper`); every network is built once per
architecture and input shape on PyTorch's meta device (`arch.describe`: parameters, FLOPs, code
layers). Counted exactly: runs, units, optimizer steps, epochs, captures, bits per code, code volume.
Measured: this machine's unit costs (`calibrate`, cached per machine) or those of another device
(`--device-profile FILE`, the same JSON keys). Modelled: how those combine into seconds, RAM and disk
(`cost`, whose docstring states the model); early stopping is not foreseen, so a study that stops early
costs less than its plan.

`--json FILE` writes {"device", "source", "studies": [{"name", "profile", "runs", "units", "groups",
"optimizer_steps", "captures", "bits_per_code", "code_gbit", "estimated_seconds", "terms",
"peak_ram_bytes", "disk_bytes", "unit_disk_bytes", "largest_unit"}], "total_estimated_seconds",
"does_not_fit"}: peak_ram_bytes and unit_disk_bytes are the largest unit's, disk_bytes the study's sum.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from activation_hash.noise import quiet_third_party_noise
from activation_hash.plan.cost import TERMS, run_facts, unit_cost

GB = 1e9


def _split(overrides: Sequence[str]) -> tuple[list[str], str, list[str]]:
    studies, profile, rest = [], "smoke", []
    for o in overrides:
        key, _, value = o.partition("=")
        if key in ("+experiment", "experiment"):
            studies += [v for v in value.split(",") if v]
        elif key == "profile":
            profile = value
        else:
            rest.append(o)
    return studies, profile, rest


def plan_study(study: str, profile: str, overrides: Sequence[str], gpu: bool) -> dict[str, Any]:
    """Everything of a study a plan needs but the device's costs: jobs, units, per-run facts."""
    from activation_hash.plan.arch import code_bits, data_facts, describe, selection_bits
    from activation_hash.plan.expand import describe_unit, jobs, key_of, units
    tasks, launcher = jobs(study, profile, overrides)
    facts, infos, data_cache = [], [], {}
    for task in tasks:
        dkey = key_of({k: v for k, v in task["data"].items() if k not in ("seed",)})
        if dkey not in data_cache:
            data_cache[dkey] = data_facts(task["data"])
        data = data_cache[dkey]
        info = describe(task["model"], data[0], data[1])
        infos.append(info)
        codes = task.get("codes") or {}
        facts.append({**run_facts(task, data, info, code_bits(info, codes.get("layers", "all"))),
                      "selection_bits": selection_bits(info, codes)})
    pad = str(launcher.get("pad_widths", "auto")).lower()
    pad_widths = pad == "true" or (pad == "auto" and gpu)
    arch = lambda model, shape, classes: describe(model, shape, classes)  # noqa: E731
    unit_list, why = units(tasks, launcher, pad_widths, arch)
    return {"name": study, "profile": profile, "tasks": tasks, "facts": facts, "infos": infos,
            "units": unit_list, "why": why, "names": [describe_unit(tasks, u) for u in unit_list]}


def cost_study(p: dict[str, Any], calib: dict[str, Any]) -> dict[str, Any]:
    costs = [unit_cost([p["facts"][i] for i in u], p["infos"][u[0]], calib) for u in p["units"]]
    at_once = max(int(calib.get("units_at_once", 1)), 1)
    terms = {t: sum(c["terms"][t] for c in costs) / at_once for t in TERMS}
    largest = max(range(len(costs)), key=lambda i: costs[i]["peak_ram_bytes"]) if costs else None
    bits = sorted({f["bits"] for f in p["facts"]})
    return {"name": p["name"], "profile": p["profile"], "runs": len(p["tasks"]), "units": len(p["units"]),
            "groups": sum(len(u) > 1 for u in p["units"]),
            "optimizer_steps": sum(f["steps"] for f in p["facts"]),
            "captures": sum(f["captures"] for f in p["facts"]),
            "bits_per_code": [bits[0], bits[-1]] if bits else [0, 0],
            "code_gbit": sum(f["code_bits"] for f in p["facts"]) / 1e9,
            "estimated_seconds": sum(terms.values()), "terms": terms,
            "peak_ram_bytes": max((c["peak_ram_bytes"] for c in costs), default=0),
            "peak_device_bytes": max((c["peak_device_bytes"] for c in costs), default=0),
            "network_captures": sum(c["network_captures"] for c in costs),
            "disk_bytes": sum(c["disk_bytes"] for c in costs),
            "unit_disk_bytes": max((c["disk_bytes"] for c in costs), default=0),
            "largest_unit": p["names"][largest] if largest is not None else None,
            "_unit_costs": costs}


def misfits(p: dict[str, Any], study: dict[str, Any], limits: dict[str, int], calib: dict[str, Any]) -> list[str]:
    """One line per unit that will not fit `limits` (ram_bytes, disk_bytes), with what to change."""
    lines = []
    for unit, name, c in zip(p["units"], p["names"], study["_unit_costs"]):
        m = len(unit)
        if c["peak_ram_bytes"] > limits["ram_bytes"]:
            info, facts = p["infos"][unit[0]], [p["facts"][i] for i in unit]
            fits = [k for k in range(m - 1, 0, -1)
                    if unit_cost(facts[:k], info, calib)["peak_ram_bytes"] <= limits["ram_bytes"]]
            alone = unit_cost(facts[:1], info, calib)["peak_ram_bytes"]
            fix = (f"hydra.launcher.max_members={fits[0]} (smaller groups)" if fits else
                   f"even one run needs {alone / GB:.1f} GB: a machine with more RAM, a smaller data.batch_size "
                   "or metrics.max_ram (codes.source=auto then scores wide codes from the network)")
            lines.append(f"{p['name']}: unit {name}: peak RAM {c['peak_ram_bytes'] / GB:.1f} GB > this machine's "
                         f"{limits['ram_bytes'] / GB:.1f} GB; change: {fix}")
        device_memory = int(calib.get("device_memory_bytes") or 0)
        if device_memory and c["peak_device_bytes"] > device_memory:
            info, facts = p["infos"][unit[0]], [p["facts"][i] for i in unit]
            fits = [k for k in range(m - 1, 0, -1)
                    if unit_cost(facts[:k], info, calib)["peak_device_bytes"] <= device_memory]
            fix = (f"hydra.launcher.max_members={fits[0]} (smaller groups)" if fits else
                   "a smaller data.batch_size or a device with more memory")
            lines.append(f"{p['name']}: unit {name}: device memory {c['peak_device_bytes'] / GB:.1f} GB > the "
                         f"device's {device_memory / GB:.1f} GB; change: {fix}")
        if c["disk_bytes"] > limits["disk_bytes"]:
            lines.append(f"{p['name']}: unit {name}: disk {c['disk_bytes'] / GB:.1f} GB > the "
                         f"{limits['disk_bytes'] / GB:.1f} GB free; change: codes.save=false, resume=never, "
                         "or ACTIVATION_HASH_OUTPUT on a larger disk")
    return lines


def _hours(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 600 else f"{seconds / 3600:.1f} h"


def render(studies: list[dict[str, Any]], calib: dict[str, Any]) -> str:
    head = (f"{'study':<24}{'runs':>6}{'units':>7}{'groups':>7}{'steps':>13}{'capt':>7}{'bits/code':>19}"
            f"{'Gbit':>10}{'time':>10}{'RAM/unit':>10}{'disk/unit':>10}"
            + (f"{'GPU/unit':>10}" if calib.get("gpu") else "") + "  largest terms")
    lines = [f"device: {calib.get('device')} ({calib.get('source')})", head]
    for s in studies:
        b = s["bits_per_code"]
        top = sorted(s["terms"].items(), key=lambda kv: -kv[1])[:2]
        share = ", ".join(f"{k} {100 * v / s['estimated_seconds']:.0f}%" for k, v in top if s["estimated_seconds"])
        lines.append(f"{s['name']:<24}{s['runs']:>6}{s['units']:>7}{s['groups']:>7}{s['optimizer_steps']:>13,}"
                     f"{s['captures']:>7}{(f'{b[0]:,}' if b[0] == b[1] else f'{b[0]:,}-{b[1]:,}'):>19}"
                     f"{s['code_gbit']:>10.2f}{_hours(s['estimated_seconds']):>10}"
                     f"{s['peak_ram_bytes'] / GB:>8.1f}GB{s['unit_disk_bytes'] / GB:>8.2f}GB"
                     + (f"{s['peak_device_bytes'] / GB:>8.1f}GB" if calib.get("gpu") else "") + f"  {share}")
    total = sum(s["estimated_seconds"] for s in studies)
    lines.append(f"total: {sum(s['runs'] for s in studies):,} runs, {sum(s['units'] for s in studies):,} units, "
                 f"{sum(s['optimizer_steps'] for s in studies):,} optimizer steps, "
                 f"{sum(s['captures'] for s in studies):,} captures, {sum(s['code_gbit'] for s in studies):,.1f} Gbit "
                 f"of codes, about {_hours(total)}")
    lines.append("counted: runs, units, steps, captures, bits; measured: the device's unit costs; modelled: their "
                 "sum (activation_hash/plan/cost.py), no early stopping (an upper bound)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m activation_hash.plan", description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="+experiment=NAME, profile=smoke|paper, any override")
    parser.add_argument("--all", action="store_true", help="every experiment file")
    parser.add_argument("--json", metavar="FILE", help="write the plan as JSON")
    parser.add_argument("--device-profile", metavar="FILE", help="a calibration measured on another device")
    parser.add_argument("--write-profile", metavar="FILE", help="write the calibration used to FILE")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 (after printing why) when a unit will not fit this machine's RAM or disk")
    parser.add_argument("--max-ram", type=float, metavar="GB", help="RAM limit for --check (default: this machine's)")
    parser.add_argument("--max-disk", type=float, metavar="GB", help="disk limit for --check (default: free space)")
    args = parser.parse_args(argv)
    quiet_third_party_noise()
    from activation_hash.plan.expand import studies_available
    studies, profile, overrides = _split(args.overrides)
    known = studies_available()
    if args.all:
        studies = known
    if unknown := [s for s in studies if s not in known]:
        print(f"error: +experiment={unknown[0]}: not an experiment file; allowed: {', '.join(known)}", file=sys.stderr)
        return 2
    if not studies:
        print("error: +experiment=: name a study (+experiment=NAME) or pass --all", file=sys.stderr)
        return 2
    if not any(o.startswith("hydra/launcher=") for o in overrides):
        overrides = [*overrides, "hydra/launcher=batched"]   # as make reproduce-paper
    from activation_hash.plan import calibrate
    calib = calibrate.load(args.device_profile) if args.device_profile else None
    gpu = bool(calib.get("gpu")) if calib else calibrate.calibration_device() != "cpu"
    planned = [plan_study(s, profile, overrides, gpu) for s in studies]
    if calib is None:
        families = {}
        for p in planned:
            for task, info in zip(p["tasks"], p["infos"]):
                if info["family"] not in families:
                    from activation_hash.plan.arch import data_facts
                    shape, classes = data_facts(task["data"])[:2]
                    families[info["family"]] = (task["model"], shape, classes, info["flops"])
        calib = calibrate.here(families)
    import os
    limits = calibrate.machine_limits(os.environ.get("ACTIVATION_HASH_OUTPUT", "outputs"))
    if args.max_ram is not None:
        limits["ram_bytes"] = int(args.max_ram * GB)
    if args.max_disk is not None:
        limits["disk_bytes"] = int(args.max_disk * GB)
    # metrics.max_ram=null is a quarter of the RAM of the machine that runs (codes.source=auto)
    calib = {**calib, "ram_bytes": int(calib.get("ram_bytes") or limits["ram_bytes"])}
    costed = [cost_study(p, calib) for p in planned]
    print(render(costed, calib))
    bad = [line for p, s in zip(planned, costed) for line in misfits(p, s, limits, calib)]
    if args.json:
        from activation_hash.atomic import atomic_write_json
        atomic_write_json(Path(args.json), {
            "device": calib.get("device"), "source": calib.get("source"),
            "studies": [{k: v for k, v in s.items() if not k.startswith("_")} for s in costed],
            "total_estimated_seconds": sum(s["estimated_seconds"] for s in costed), "does_not_fit": bad})
    if args.write_profile:
        from activation_hash.atomic import atomic_write_json
        atomic_write_json(Path(args.write_profile), calib)
    if bad:
        print(f"{len(bad)} unit(s) will not fit this machine (RAM {limits['ram_bytes'] / GB:.1f} GB, "
              f"disk {limits['disk_bytes'] / GB:.1f} GB free):", file=sys.stderr)
        print("\n".join("  " + line for line in bad), file=sys.stderr)
        if args.check:
            print("nothing was run.", file=sys.stderr)
            return 1
    return 0
