"""The report's DLGN section: DLGN / DLGN-SF against the ReLU MLP, drawn from the collected table.

    python -m activation_hash +experiment=dlgn_vs_relu -m
    python -m activation_hash.analysis report $ACTIVATION_HASH_OUTPUT/studies/dlgn_vs_relu/smoke --out reports/dlgn

Applies to every study of the table that has DLGN runs (`model._target_` ending in `.DLGN`), per
data set. One line per model family (ReLU MLP, DLGN, DLGN-SF, DGN; per depth when several):

- `dlgn_{study}_{data}_vs_width.png`: test redundancy, K-NN, logistic-regression and network
  accuracy vs width, at each run's last capture, mean over seeds, band +- 1 std;
- `dlgn_{study}_{data}_vs_epoch.png`: the same along training (one line style per width);
- `dlgn_{study}_{data}_gates.png`: the gates' clustering per layer along training
  (`test/gate_cluster_score_l{l}` solid, `test/gate_abs_cos_mean_l{l}` dashed, from the
  `halfspaces` probe), one panel per DLGN family, at the largest width;
- a Markdown table of the last capture per family and width;
- `dlgn_{study}_{data}_gate_excess.csv` and a table: each layer's gate clustering score at the last
  capture minus the same run's score at initialization (epoch 0), mean ± std over seeds, so what a
  random initialization already gives is not read as learned clustering (seed 004's claim);
- the half-space pictures: each DLGN family's `halfspaces/epoch=NNNN.png` of its last capture at
  the largest width (lowest seed), copied from the run directory the table names, when it exists.

Every number comes from the table; `NAME.csv` beside each figure holds the numbers drawn.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from activation_hash.analysis.collect import write_atomic
from activation_hash.analysis.figures import plain_ticks, spread_entry

METRICS = {"test/redundancy": "test redundancy", "test/knn_acc": "K-NN acc.", "test/logreg_acc": "LR acc.",
           "test/net_acc": "network acc."}
FAMILIES = ("ReLU MLP", "DLGN", "DLGN (frozen gates)", "DLGN-SF", "DGN", "deep linear")
_VARIANTS = {"dlgn": "DLGN", "dlgn_sf": "DLGN-SF", "dgn": "DGN"}
_GATE = re.compile(r"^test/gate_(?P<name>cluster_score|abs_cos_mean)_l(?P<layer>\d+)$")


def family(target: object, variant: object, frozen: object = False) -> str:
    """Legend name of a run's model from `model._target_`, `model.variant`, `model.freeze_gates`."""
    name = str(target).rsplit(".", 1)[-1]
    if name == "DLGN":
        base = _VARIANTS.get(str(variant), f"DLGN ({variant})")
        return f"{base} (frozen gates)" if str(frozen).lower() == "true" else base
    return {"MLP": "ReLU MLP", "DeepLinear": "deep linear"}.get(name, name)


def is_dlgn(table: pd.DataFrame) -> pd.Series:
    if "model._target_" not in table.columns:
        return pd.Series(False, index=table.index)
    return table["model._target_"].astype(str).str.endswith(".DLGN")


def tidy(table: pd.DataFrame) -> pd.DataFrame:
    """Rows with a capture, with `family` (plus the depth when several depths are present)."""
    rows = table[table["epoch"].notna()].copy()
    variant = rows["model.variant"] if "model.variant" in rows.columns else pd.Series(None, index=rows.index)
    frozen = rows["model.freeze_gates"] if "model.freeze_gates" in rows.columns else pd.Series(False, index=rows.index)
    rows["family"] = [family(t, v, f) for t, v, f in zip(rows["model._target_"], variant, frozen)]
    if "model.depth" in rows.columns and rows["model.depth"].nunique() > 1:
        rows["family"] = rows["family"] + ", depth " + rows["model.depth"].astype("Int64").astype(str)
    rows["epoch"] = rows["epoch"].astype(int)
    return rows


def _order(families: list[str]) -> list[str]:
    rank = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(families, key=lambda f: (rank.get(f.split(",")[0], len(rank)), f))


def _last(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.sort_values("epoch").groupby("run_dir", as_index=False).tail(1)


def summary(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, std and number of runs of every metric per `by` group."""
    metrics = [m for m in METRICS if m in rows.columns]
    grouped = rows.groupby(by)
    # sample std over seeds (ddof=1), as every other figure of the report draws it
    out = grouped[metrics].agg(["mean", lambda v: float(np.std(v.dropna(), ddof=1)) if v.notna().sum() > 1 else np.nan])
    out.columns = [f"{m}_{'mean' if s == 'mean' else 'std'}" for m, s in out.columns]
    out["runs"] = grouped["run_dir"].nunique()
    return out.reset_index()


def vs_width(rows: pd.DataFrame, title: str) -> tuple[Figure, pd.DataFrame]:
    data = summary(_last(rows), ["family", "model.width"])
    metrics = [m for m in METRICS if f"{m}_mean" in data.columns]
    fig = Figure(figsize=(3.3 * len(metrics), 3.2))
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        for k, name in enumerate(_order(list(data["family"].unique()))):
            part = data[data["family"] == name].sort_values("model.width")
            x, y, s = part["model.width"], part[f"{metric}_mean"], part[f"{metric}_std"].fillna(0)
            ax.plot(x, y, marker="o", ms=3, color=f"C{k}", label=name)
            ax.fill_between(x, y - s, y + s, color=f"C{k}", alpha=0.15, lw=0)
        ax.set(xscale="log", xlabel="width (units per layer)", ylabel=METRICS[metric], title=METRICS[metric])
        plain_ticks(ax.xaxis, "log")
        ax.title.set_fontsize(9)
        if i == len(metrics) - 1:
            handles, texts = ax.get_legend_handles_labels()
            band = spread_entry(data["runs"])
            ax.legend(handles + list(band.values()), texts + list(band), fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, data


def vs_epoch(rows: pd.DataFrame, title: str) -> tuple[Figure, pd.DataFrame]:
    data = summary(rows, ["family", "model.width", "epoch"])
    metrics = [m for m in METRICS if f"{m}_mean" in data.columns]
    widths = sorted(data["model.width"].unique())
    styles = ["-", "--", ":", "-."]
    fig = Figure(figsize=(3.3 * len(metrics) + 1.6, 3.4))
    grid = fig.add_gridspec(1, len(metrics) + 1, width_ratios=[3.3] * len(metrics) + [1.6])
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(grid[0, i])
        for k, name in enumerate(_order(list(data["family"].unique()))):
            for j, width in enumerate(widths):
                part = data[(data["family"] == name) & (data["model.width"] == width)].sort_values("epoch")
                if part.empty:
                    continue
                ax.plot(part["epoch"], part[f"{metric}_mean"], styles[j % len(styles)], marker="o", ms=2,
                        color=f"C{k}", label=f"{name}, width {width:g}")
        _epoch_axis(ax, data["epoch"])
        ax.set_title(METRICS[metric], fontsize=9)
        ax.set_ylabel(METRICS[metric])
    key = fig.add_subplot(grid[0, -1])
    key.set_axis_off()
    key.legend(*fig.axes[0].get_legend_handles_labels(), fontsize=6, loc="center left", frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, data


def _epoch_axis(ax, epochs: pd.Series) -> None:
    """symlog epoch axis (epoch 0 = initialization) ticked at the captured epochs."""
    ticks = sorted(int(e) for e in epochs.dropna().unique())
    ax.set(xscale="symlog", xlabel="epoch")
    if len(ticks) <= 12:
        ax.set_xticks(ticks, [str(t) for t in ticks])


def gate_columns(rows: pd.DataFrame) -> dict[str, list[tuple[int, str]]]:
    """{cluster_score | abs_cos_mean: [(layer, column)]} for the gate metrics present."""
    found: dict[str, list[tuple[int, str]]] = {}
    for col in rows.columns:
        if (m := _GATE.match(col)) and rows[col].notna().any():
            found.setdefault(m["name"], []).append((int(m["layer"]), col))
    return {k: sorted(v) for k, v in found.items()}


def gates(rows: pd.DataFrame, title: str) -> tuple[Figure, pd.DataFrame] | None:
    columns = gate_columns(rows)
    if not columns:
        return None
    all_cols = [c for cols in columns.values() for _, c in cols]
    rows = rows[rows[all_cols].notna().any(axis=1)]
    width = rows["model.width"].max()
    rows = rows[rows["model.width"] == width]
    names = _order(list(rows["family"].unique()))
    data = rows.groupby(["family", "epoch"])[all_cols].mean().reset_index()
    fig = Figure(figsize=(3.6 * len(names), 3.2))
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1, sharey=fig.axes[0] if fig.axes else None)
        part = data[data["family"] == name].sort_values("epoch")
        for metric, style in (("cluster_score", "-"), ("abs_cos_mean", "--")):
            for layer, col in columns.get(metric, []):
                if part[col].notna().any():
                    label = f"layer {layer}, {'cluster score' if metric == 'cluster_score' else 'mean |cos|'}"
                    ax.plot(part["epoch"], part[col], style, marker="o", ms=2, color=f"C{layer - 1}", label=label)
        _epoch_axis(ax, part["epoch"])
        ax.set_title(f"{name}, width {width:g}", fontsize=9)
        ax.legend(fontsize=6)
    fig.axes[0].set_ylabel("|cos| between gates' effective weights")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, data.assign(**{"model.width": width})


def last_table(rows: pd.DataFrame) -> str:
    data = summary(_last(rows), ["family", "model.width"])
    data = data.assign(_rank=[_order(list(data["family"].unique())).index(f) for f in data["family"]])
    data = data.sort_values(["model.width", "_rank"])
    metrics = [m for m in METRICS if f"{m}_mean" in data.columns]
    lines = ["| width | model | epoch | runs | " + " | ".join(METRICS[m] for m in metrics) + " |",
             "|---:|---|---:|---:|" + "---:|" * len(metrics)]
    last = _last(rows).groupby(["family", "model.width"])["epoch"].max()
    for _, r in data.iterrows():
        cells = [("–" if pd.isna(r[f"{m}_mean"]) else f"{r[f'{m}_mean']:.3f}"
                  + (f" ± {r[f'{m}_std']:.3f}" if pd.notna(r[f"{m}_std"]) else "")) for m in metrics]
        lines.append(f"| {r['model.width']:g} | {r['family']} | {last[(r['family'], r['model.width'])]} | "
                     f"{int(r['runs'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def gate_excess(rows: pd.DataFrame) -> pd.DataFrame:
    """Per family, width and layer: gate clustering score at each run's last capture minus the same
    run's score at epoch 0 (`excess_mean`, `excess_std` over seeds, `init_mean`, `last_mean`, `runs`).
    Empty when no run has the score at both epoch 0 and a later capture."""
    columns = ["family", "model.width", "layer", "init_mean", "last_mean", "excess_mean", "excess_std", "runs"]
    scores = [(int(m.group("layer")), c) for c in rows.columns
              if (m := _GATE.match(c)) and m.group("name") == "cluster_score"]
    out = []
    for (fam, width), part in rows.groupby(["family", "model.width"]):
        for layer, column in sorted(scores):
            init = part[part["epoch"] == 0].set_index("run_dir")[column].astype(float)
            last = _last(part[part["epoch"] > 0]).set_index("run_dir")[column].astype(float)
            delta = (last - init.reindex(last.index)).dropna()
            if delta.empty:
                continue
            out.append({"family": fam, "model.width": width, "layer": layer,
                        "init_mean": float(init.reindex(delta.index).mean()),
                        "last_mean": float(last.reindex(delta.index).mean()),
                        "excess_mean": float(delta.mean()),
                        "excess_std": float(delta.std(ddof=1)) if len(delta) > 1 else np.nan, "runs": len(delta)})
    return pd.DataFrame(out, columns=columns)


def gate_excess_table(data: pd.DataFrame) -> str:
    lines = ["| width | model | layer | at init | last | last − init | runs |", "|---:|---|---:|---:|---:|---:|---:|"]
    for _, r in data.sort_values(["model.width", "family", "layer"]).iterrows():
        spread = "" if pd.isna(r["excess_std"]) else f" ± {r['excess_std']:.3f}"
        lines.append(f"| {r['model.width']:g} | {r['family']} | {r['layer']} | {r['init_mean']:.3f} | "
                     f"{r['last_mean']:.3f} | {r['excess_mean']:+.3f}{spread} | {r['runs']} |")
    return "\n".join(lines) + "\n"


def copy_halfspace_pictures(rows: pd.DataFrame, out: Path, tag: str) -> list[tuple[str, str]]:
    """(file in `out`, caption) per DLGN family: the largest width's lowest-seed run, last capture."""
    copied = []
    dlgn = rows[is_dlgn(rows)]
    if dlgn.empty:
        return copied
    width = dlgn["model.width"].max()
    dlgn = dlgn[dlgn["model.width"] == width]
    for name in _order(list(dlgn["family"].unique())):
        part = dlgn[dlgn["family"] == name]
        if "seed" in part.columns:
            part = part[part["seed"] == part["seed"].min()]
        last = part.sort_values("epoch").iloc[-1]
        source = Path(str(last["run_dir"])) / "halfspaces" / f"epoch={int(last['epoch']):04d}.png"
        if source.is_file():
            target = f"{tag}_halfspaces_{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_').lower()}.png"
            write_atomic(out / target, lambda f, s=source: shutil.copyfileobj(s.open("rb"), f))
            copied.append((target, f"{name}, width {width:g}, epoch {int(last['epoch'])} "
                                   f"(seed {last.get('seed', '?')}; from `{source}`)"))
    return copied


def dlgn_section(table: pd.DataFrame, out: Path, dpi: int,
                 write_png: Callable[[Figure, Path, int], None]) -> list[str]:
    """report.md lines of the DLGN section (files written to `out`); empty without DLGN runs."""
    if table.empty or not is_dlgn(table).any() or "epoch" not in table.columns:
        return []
    lines = ["## DLGN vs ReLU MLP\n",
             "Deep Linearly Gated Networks (the code is the gate pattern 1[g^l > 0], every gate a half-space "
             "of the input) against ReLU MLPs of the same depth and width, i.e. the same number of code units. "
             "Points: mean over seeds, band ± 1 std; vs width at each run's last capture.\n"]
    studies = list(table.loc[is_dlgn(table), "study"].dropna().unique()) if "study" in table.columns else []
    for study in sorted(studies, key=str) or [None]:
        rows = table if study is None else table[table["study"] == study]
        rows = tidy(rows)
        for data_name in sorted(rows["data.name"].dropna().unique()) if "data.name" in rows else [None]:
            sub = rows if data_name is None else rows[rows["data.name"] == data_name]
            parts = [str(s) for s in (study, data_name) if s is not None]
            tag = "_".join(parts if parts and parts[0].startswith("dlgn") else ["dlgn", *parts])
            where = ", ".join(str(s) for s in (study, data_name) if s is not None)
            lines.append(f"### {where}\n")
            drawn = [(f"{tag}_vs_width", f"Codes and network vs width, {where}", vs_width(sub, f"vs width, {where}")),
                     (f"{tag}_vs_epoch", f"Codes and network along training, {where}",
                      vs_epoch(sub, f"along training, {where}")),
                     (f"{tag}_gates", f"Gate clustering per layer along training, {where}",
                      gates(sub, f"DLGN gates' |cos| per layer, {where}"))]
            for name, title, result in drawn:
                if result is None:
                    continue
                fig, data = result
                write_png(fig, out / f"{name}.png", dpi)
                write_atomic(out / f"{name}.csv", data.to_csv(index=False))
                lines += [f"![{title}]({name}.png)\n", f"Numbers drawn: [{name}.csv]({name}.csv)\n"]
            md = last_table(sub)
            write_atomic(out / f"{tag}_table.md", f"# Last capture, {where}\n\n{md}")
            lines += [f"Last capture per model and width (mean ± std over seeds):\n", md]
            excess = gate_excess(sub)
            if not excess.empty:
                write_atomic(out / f"{tag}_gate_excess.csv", excess.to_csv(index=False))
                lines += ["Gate clustering beyond initialization: each layer's clustering score (mean over gates "
                          "of the largest |cos| to another gate of the layer) at the last capture minus the same "
                          f"run's score at epoch 0 (mean ± std over seeds; [{tag}_gate_excess.csv]({tag}_gate_excess.csv)). "
                          "Frozen gates give 0 by construction.\n", gate_excess_table(excess)]
            for file, caption in copy_halfspace_pictures(sub, out, tag):
                lines += [f"![half-spaces]({file})\n", f"*Effective gating weights, {caption}.*\n"]
    return lines
