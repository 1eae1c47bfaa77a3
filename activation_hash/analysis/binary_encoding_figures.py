"""Report section of the binary-encoding study: per-dimension histograms of the test latents at
each arm's first and last capture (the paper's bimodality picture), drawn from the collected table
only. The histograms are the ``test/latent_hist_counts`` / ``test/latent_hist_edges`` columns the
``binary_encoding`` metric family writes (per dimension, JSON lists), so nothing but the table is
read. The per-arm curves (binarity, same-encoding fraction, accuracy vs epoch) and the robustness
and reliability bars are ordinary recipes in conf/report/default.yaml.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

STUDY = "binary_encoding"
COUNTS, EDGES = "test/latent_hist_counts", "test/latent_hist_edges"
VARIANTS = ("bin_enc", "lin_pen", "nonlin_pen", "no_pen")


def _lists(cell) -> list | None:
    if isinstance(cell, str):
        return json.loads(cell)
    return cell if isinstance(cell, list) else None


def histogram_rows(table: pd.DataFrame) -> pd.DataFrame:
    """First and last capture of the lowest-seed run of each arm that has latent histograms."""
    if "study" not in table.columns or COUNTS not in table.columns:
        return table.iloc[0:0]
    rows = table[(table["study"] == STUDY) & table[COUNTS].notna()].copy()
    if rows.empty:
        return rows
    rows["_seed"] = rows["seed"] if "seed" in rows.columns else 0
    picked = []
    for _, arm in rows.groupby("model.variant", sort=False):
        run = arm[arm["_seed"] == arm["_seed"].min()]
        run = run[run["run_dir"] == run["run_dir"].iloc[0]].sort_values("epoch")
        picked.append(run.iloc[[0, -1]] if len(run) > 1 else run)
    return pd.concat(picked).drop(columns="_seed")


def latent_histograms(table: pd.DataFrame, out: Path, dpi: int, write_png: Callable) -> list[str]:
    """Draw ``latent_histograms.png`` into ``out``; report.md lines (empty when the study is absent)."""
    rows = histogram_rows(table)
    if rows.empty:
        return []
    arms = [v for v in VARIANTS if v in set(rows["model.variant"])] + \
        [v for v in rows["model.variant"].unique() if v not in VARIANTS]
    dims = max(len(_lists(c)) for c in rows[COUNTS])
    fig, axes = plt.subplots(len(arms), dims, figsize=(2.2 * dims, 1.8 * len(arms)), squeeze=False)
    for i, arm in enumerate(arms):
        captures = rows[rows["model.variant"] == arm]
        for j, (style, (_, row)) in enumerate(zip(("first", "last"), captures.iterrows())):
            for d, (counts, edges) in enumerate(zip(_lists(row[COUNTS]), _lists(row[EDGES]))):
                ax = axes[i, d]
                ax.stairs(np.asarray(counts), np.asarray(edges), fill=style == "last", alpha=0.6 if j else 1.0,
                          color="C0" if style == "last" else "0.5", label=f"epoch {int(row['epoch'])}")
        for d in range(dims):
            axes[i, d].set_yticks([])
            axes[0, d].set_title(f"z{d + 1}", fontsize=9)
        axes[i, 0].set_ylabel(arm, fontsize=9)
        axes[i, 0].legend(fontsize=6, loc="upper left")
    fig.suptitle("Test latents per dimension, first (line) and last (filled) capture", fontsize=10)
    write_png(fig, out / "latent_histograms.png", dpi)
    plt.close(fig)
    return ["## Binary encoding: latent histograms\n", "![latent histograms](latent_histograms.png)\n",
            "*Per latent dimension, the test set's z at each arm's first and last capture (lowest seed); "
            "bin_enc's bimodal peaks are the binary code. no_pen has no latent.*\n"]
