"""The report's retrieval section, drawn from the collected table only (study ``retrieval``).

Per data set: mAP vs bits for every method (one panel per width, each run's last capture), mAP vs
training epoch for the neural codes (whole code and neural_all budgets, hue = width), PR curves
over every Hamming radius at ``pr_bits`` (from the ``test/pr_curve/...`` lists, averaged over
seeds per radius), and a Markdown table of mAP at ``table_bits`` beside the published numbers of
``conf/report/default.yaml: retrieval.published``, each named with its protocol. Points average
over seeds only (± 1 std band); metric names follow ``activation_hash.metrics.families.retrieval``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from activation_hash.analysis.collect import write_atomic

_BUDGET = re.compile(r"^test/map/(?P<method>[a-z_]+)/(?P<bits>\d+|full)$")


def _last(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.sort_values("epoch").groupby("run_dir", as_index=False).tail(1)


def _budget_columns(rows: pd.DataFrame) -> dict[str, list[tuple[int, str]]]:
    """method -> [(bits, column)] for the integer budgets present with values."""
    found: dict[str, list[tuple[int, str]]] = {}
    for col in rows.columns:
        m = _BUDGET.match(col)
        if m and m["bits"] != "full" and rows[col].notna().any():
            found.setdefault(m["method"], []).append((int(m["bits"]), col))
    return {k: sorted(v) for k, v in sorted(found.items())}


def _mean_std(values: pd.Series) -> tuple[float, float]:
    v = values.dropna().astype(float)
    return (float(v.mean()), float(v.std(ddof=0))) if len(v) else (np.nan, np.nan)


def _widths(rows: pd.DataFrame) -> list[Any]:
    return sorted(rows["model.width"].dropna().unique()) if "model.width" in rows else [None]


def _at_width(rows: pd.DataFrame, width: Any) -> pd.DataFrame:
    return rows if width is None else rows[rows["model.width"] == width]


def map_vs_bits(rows: pd.DataFrame, title: str) -> tuple[Figure, pd.DataFrame]:
    last, widths = _last(rows), _widths(rows)
    fig = Figure(figsize=(4.2 * len(widths) + 1.8, 3.6), layout="constrained")
    data = []
    for i, width in enumerate(widths):
        ax = fig.add_subplot(1, len(widths), i + 1)
        at = _at_width(last, width)
        for method, cols in _budget_columns(at).items():
            stats = [(b, *_mean_std(at[c])) for b, c in cols]
            bits, mean, std = (np.array(s, dtype=float) for s in zip(*stats))
            style = "-" if method.startswith("neural") else "--"
            ax.plot(bits, mean, style, marker="o", label=method)
            ax.fill_between(bits, mean - std, mean + std, alpha=0.15)
            data += [{"model.width": width, "method": method, "bits": b, "map": m, "std": s} for b, m, s in stats]
        ax.set_xscale("log", base=2)
        ax.set_xlabel("bits")
        ax.set_ylabel("mAP (tie-aware)")
        ax.set_title(f"width {width}" if width is not None else "")
    _legend_outside(fig)
    fig.suptitle(title)
    return fig, pd.DataFrame(data)


def _legend_outside(fig: Figure) -> None:
    """One legend for the figure, right of the axes (constrained layout keeps titles apart), not
    over the data."""
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7)


def map_vs_epoch(rows: pd.DataFrame, title: str) -> tuple[Figure, pd.DataFrame]:
    cols = ["test/map"] + [c for _, c in _budget_columns(rows).get("neural_all", [])]
    fig = Figure(figsize=(4.0 * len(cols) + 1.6, 3.4), layout="constrained")
    data = []
    for i, col in enumerate(cols):
        ax = fig.add_subplot(1, len(cols), i + 1)
        for width in _widths(rows):
            at = _at_width(rows, width).groupby("epoch")[col]
            mean, std = at.mean(), at.std(ddof=0).fillna(0.0)
            ax.plot(mean.index, mean.values, marker="o", label=f"width {width}")
            ax.fill_between(mean.index, mean - std, mean + std, alpha=0.15)
            data += [{"model.width": width, "metric": col, "epoch": e, "map": m} for e, m in mean.items()]
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mAP (tie-aware)")
        ax.set_title("whole code" if col == "test/map" else f"all units, {col.split('/')[-1]} bits")
    _legend_outside(fig)
    fig.suptitle(title)
    return fig, pd.DataFrame(data)


def pr_curves(rows: pd.DataFrame, bits: int, title: str) -> tuple[Figure, pd.DataFrame] | None:
    last = _last(rows)
    width = _widths(last)[-1]
    at = _at_width(last, width)
    fig = Figure(figsize=(6.6, 4.0), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    data = []
    for col in sorted(at.columns):
        m = re.match(rf"^test/pr_curve/(?P<method>[a-z_]+)/{bits}/precision$", col)
        if not m or at[col].isna().all():
            continue
        rec_col = col[: -len("precision")] + "recall"
        prec = np.mean([json.loads(v) for v in at[col].dropna()], axis=0)
        rec = np.mean([json.loads(v) for v in at[rec_col].dropna()], axis=0)
        ax.plot(rec, prec, "-" if m["method"].startswith("neural") else "--", label=m["method"])
        data += [{"method": m["method"], "radius": r, "recall": x, "precision": y}
                 for r, (x, y) in enumerate(zip(rec, prec))]
    if not data:
        return None
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    _legend_outside(fig)
    fig.suptitle(f"{title}\n(width {width}, {bits} bits)", fontsize=10)
    return fig, pd.DataFrame(data)


def comparison_table(rows: pd.DataFrame, data_name: str, table_bits: list[int],
                     published: list[Mapping[str, Any]]) -> str:
    last = _last(rows)
    width = _widths(last)[-1]
    at = _at_width(last, width)
    db = _mean_std(at.get("test/retrieval_db_size", pd.Series(dtype=float)))[0]
    head = f"| method | protocol | " + " | ".join(f"{b} bits" for b in table_bits) + " |"
    lines = [head, "|" + "---|" * (len(table_bits) + 2)]
    ours = f"this run: split_1k, width {width}, last epoch, database {db:.0f}" if db == db else "this run"
    for method, cols in _budget_columns(at).items():
        by_bits = dict(cols)
        cells = []
        for b in table_bits:
            mean, std = _mean_std(at[by_bits[b]]) if b in by_bits else (np.nan, np.nan)
            cells.append("–" if mean != mean else f"{mean:.3f} ± {std:.3f}")
        lines.append(f"| {method} | {ours} | " + " | ".join(cells) + " |")
    for ref in published:
        if ref.get("data") != data_name:
            continue
        cells = [f"{ref['map'][b]:.3f}" if b in (ref.get("map") or {}) else "–" for b in table_bits]
        lines.append(f"| {ref['method']} (published) | {ref['protocol']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def retrieval_section(table: pd.DataFrame, cfg: Mapping[str, Any] | None, out: Path,
                      write_png: Callable[[Figure, Path, int], None], dpi: int,
                      skipped: list[tuple[str, str]]) -> list[str]:
    """Markdown lines of the section (files written to ``out``); reasons for gaps go to ``skipped``."""
    cfg = dict(cfg or {})
    if not cfg.get("enabled", True):
        return []
    study = cfg.get("study", "retrieval")
    rows = table[table["study"] == study] if "study" in table.columns else table.iloc[0:0]
    if rows.empty or "test/map" not in rows.columns or rows["test/map"].isna().all():
        skipped.append(("retrieval", f"no rows of study {study!r} with test/map in the table"))
        return []
    rows = rows[rows["test/map"].notna()]
    lines = ["## Retrieval\n",
             "Neural codes ranked by Hamming distance (relevance = same label); mAP is the tie-aware "
             "expectation over random orders of equidistant items (He et al., CVPR 2018). Points: mean "
             "over seeds at each run's last capture, band ± 1 std. Dashed: LSH / PCAH / PCA-ITQ fitted on the "
             "database's pixels or penultimate features.\n"]
    table_bits = [int(b) for b in cfg.get("table_bits", [32, 64])]
    for data_name in sorted(rows["data.name"].dropna().unique()) if "data.name" in rows else [None]:
        sub = rows if data_name is None else rows[rows["data.name"] == data_name]
        tag = f"retrieval_{data_name}"
        drawn = [(f"{tag}_map_vs_bits", f"mAP vs bits, {data_name}", map_vs_bits(sub, f"mAP vs bits, {data_name}")),
                 (f"{tag}_map_vs_epoch", f"mAP of neural codes vs epoch, {data_name}",
                  map_vs_epoch(sub, f"Neural codes along training, {data_name}")),
                 (f"{tag}_pr", f"Precision-recall over Hamming radii, {data_name}",
                  pr_curves(sub, int(cfg.get("pr_bits", 32)), f"PR, {data_name}"))]
        for name, title, result in drawn:
            if result is None:
                skipped.append((name, "no PR-curve data in the table (metrics.retrieval.pr_curves=false?)"))
                continue
            fig, data = result
            write_png(fig, out / f"{name}.png", dpi)
            write_atomic(out / f"{name}.csv", data.to_csv(index=False))
            lines += [f"### {title}\n", f"![{title}]({name}.png)\n", f"Numbers drawn: [{name}.csv]({name}.csv)\n"]
        md = comparison_table(sub, data_name, table_bits, list(cfg.get("published") or []))
        write_atomic(out / f"{tag}_table.md", f"# mAP beside published numbers, {data_name}\n\n{md}")
        lines += [f"### mAP beside published numbers, {data_name}\n", md,
                  "*Published numbers come from other protocols (named in the protocol column) and are "
                  "context, not a like-for-like comparison; supervised deep hashing is a ceiling, not a peer.*\n"]
    return lines
