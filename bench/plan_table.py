"""The plan of every study as a Markdown table, for bench/README.md.

    python -m activation_hash.plan --all profile=paper --device-profile bench/h100_modelled.json \
        --max-ram 100 --max-disk 50 --json /tmp/h100.json
    python bench/plan_table.py /tmp/h100.json [/tmp/cpu.json]

One row per study: runs, units, steps, captures, Gbit of codes, the time and its two largest terms,
peak RAM / device memory / disk per unit and how many captures score from the network
(codes.source=network); a second JSON (another device) adds its time as a column.
"""

from __future__ import annotations

import json
import sys


def hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f}" if seconds >= 360 else f"{seconds / 3600:.2f}"


def largest(study: dict) -> str:
    top = sorted(study["terms"].items(), key=lambda kv: -kv[1])[:2]
    return ", ".join(f"{name.replace('_', ' ')} {hours(v)}" for name, v in top if v >= 0.1 * study["estimated_seconds"])


def table(main: dict, other: dict | None = None) -> str:
    extra = {s["name"]: s for s in (other or {}).get("studies", [])}
    head = ["study", "runs", "units", "steps", "captures", "Gbit", "h (largest terms)", "RAM/unit", "GPU/unit",
            "disk/unit", "network captures"] + (["h on the other device"] if other else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in main["studies"]:
        row = [s["name"], f"{s['runs']:,}", f"{s['units']:,}", f"{s['optimizer_steps']:,}", f"{s['captures']:,}",
               f"{s['code_gbit']:,.1f}", f"{hours(s['estimated_seconds'])} ({largest(s)})",
               f"{s['peak_ram_bytes'] / 1e9:.1f} GB", f"{s.get('peak_device_bytes', 0) / 1e9:.1f} GB",
               f"{s['unit_disk_bytes'] / 1e9:.2f} GB", f"{s.get('network_captures', 0):,}"]
        if other:
            row.append(hours(extra[s["name"]]["estimated_seconds"]) if s["name"] in extra else "")
        lines.append("| " + " | ".join(row) + " |")
    total = sum(s["estimated_seconds"] for s in main["studies"])
    foot = ["**total**", f"{sum(s['runs'] for s in main['studies']):,}", f"{sum(s['units'] for s in main['studies']):,}",
            f"{sum(s['optimizer_steps'] for s in main['studies']):,}", f"{sum(s['captures'] for s in main['studies']):,}",
            f"{sum(s['code_gbit'] for s in main['studies']):,.0f}", f"**{hours(total)}**", "", "", "", ""]
    if other:
        foot.append(f"**{hours(other['total_estimated_seconds'])}**")
    lines.append("| " + " | ".join(foot) + " |")
    if main.get("does_not_fit"):
        lines += ["", "Units that do not fit:", *[f"- {line}" for line in main["does_not_fit"]]]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    docs = [json.load(open(path)) for path in sys.argv[1:]]
    print(table(docs[0], docs[1] if len(docs) > 1 else None))
