"""The activation hash phase chart: each (run, capture) and each grid point in one of three regimes.

    python -m activation_hash.analysis report outputs/multirun --out reports/paper   # draws the charts

The paper (Sec. 5.6) names the regimes but leaves the thresholds between them open. The rule
used here reads the two encoding properties separately and calls a point sufficiently expressive
only when both are saturated:

- determinism, from the test redundancy R (a fraction of samples, so absolute thresholds make
  sense on every data set): R <= eps_r means almost every sample has a code of its own;
- categorization, from the accuracy A of a simple classifier on the codes (default K-NN on the
  test codes), judged relative to the plateau P, the best seed-averaged accuracy over the chart's
  grid, because the reachable accuracy depends on the data set (~0.95 on MNIST, ~0.5 on CIFAR-10).
  P is the `plateau_quantile` quantile of the grid points' mean accuracies (1.0 = the maximum; a
  lower quantile is less sensitive to one lucky grid point).

    sufficiently-expressive   R <= eps_r   and  A >= P - eps_a
    under-expressive          R >  rho_u   or   A <  P - delta_u
    critically-expressive     otherwise (the transition between the two)

Defaults: eps_r = 0.01, rho_u = 0.10, eps_a = 0.02, delta_u = 0.10, plateau_quantile = 1.0, set in
conf/report/default.yaml (`phase:`) and overridable per chart. The two conditions cannot both hold
because eps_r < rho_u and eps_a < delta_u (checked). Rows are classified from their own R and A;
grid points (the chart) from the mean over seeds. eps_a should exceed the seed-to-seed spread of
A; the report prints that spread next to the thresholds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from activation_hash.analysis.figures import label, new_figure
from activation_hash.analysis.select import (Skip, display, mixed_settings, natural_order, resolve_at, select,
                                             sort_by)

REGIMES = ("under-expressive", "critically-expressive", "sufficiently-expressive")
COLORS = {"under-expressive": "#d62728", "critically-expressive": "#ff9f1c", "sufficiently-expressive": "#2ca02c"}


@dataclass(frozen=True)
class PhaseRule:
    accuracy: str = "test/knn_acc"
    redundancy: str = "test/redundancy"
    eps_r: float = 0.01
    eps_a: float = 0.02
    rho_u: float = 0.10
    delta_u: float = 0.10
    plateau_quantile: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.eps_r < self.rho_u:
            raise ValueError(f"phase thresholds need 0 <= eps_r < rho_u, got eps_r={self.eps_r}, rho_u={self.rho_u}")
        if not 0 <= self.eps_a < self.delta_u:
            raise ValueError(f"phase thresholds need 0 <= eps_a < delta_u, got eps_a={self.eps_a}, "
                             f"delta_u={self.delta_u}")
        if not 0 < self.plateau_quantile <= 1:
            raise ValueError(f"plateau_quantile must be in (0, 1], got {self.plateau_quantile}")

    def describe(self, plateau: float | None = None) -> str:
        p = "P" if plateau is None else f"P={plateau:.3f}"
        return (f"sufficient: R ≤ {self.eps_r:g} and A ≥ {p} − {self.eps_a:g};  "
                f"under: R > {self.rho_u:g} or A < {p} − {self.delta_u:g};  critical: otherwise")


@dataclass(frozen=True)
class PhaseChart:
    name: str
    x: str
    y: str
    title: str | None = None
    study: str | list[str] | None = None
    filter: dict[str, Any] = field(default_factory=dict)
    at: Any = "auto"
    rule: dict[str, Any] = field(default_factory=dict)   # overrides of the default thresholds

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> PhaseChart:
        allowed = {f.name for f in dataclasses.fields(cls)}
        if unknown := set(spec) - allowed:
            raise ValueError(f"phase chart {spec.get('name', '?')!r}: unknown key(s) {sorted(unknown)}; "
                             f"allowed: {sorted(allowed)}")
        return cls(**spec)


@dataclass
class Phase:
    rows: pd.DataFrame      # one per (run, capture): run_dir, seed, x, y, R, A, regime
    cells: pd.DataFrame     # one per grid point: x, y, R and A means, A std, runs, regime
    plateau: float
    rule: PhaseRule
    notes: list[str]


def regimes(redundancy: Any, accuracy: Any, plateau: float, rule: PhaseRule) -> np.ndarray:
    r, a = np.asarray(redundancy, dtype=float), np.asarray(accuracy, dtype=float)
    sufficient = (r <= rule.eps_r) & (a >= plateau - rule.eps_a)
    under = (r > rule.rho_u) | (a < plateau - rule.delta_u)
    return np.select([sufficient, under], [REGIMES[2], REGIMES[0]], REGIMES[1])


def classify(table: pd.DataFrame, chart: PhaseChart, rule: PhaseRule, ignore: Sequence[str] = ()) -> Phase:
    """Regimes of the chart's rows and grid points. Raises Skip when the chart does not apply."""
    rule = dataclasses.replace(rule, **chart.rule)
    for column in (chart.x, chart.y, rule.redundancy, rule.accuracy):
        if column not in table.columns:
            raise Skip(f"column `{column}` is not in the table")
    rows = select(table, chart.study, chart.filter, resolve_at(chart.at, chart.x, chart.y))
    rows = rows.dropna(subset=[rule.redundancy, rule.accuracy])
    for axis in (chart.x, chart.y):
        if rows[axis].nunique() < 2:
            raise Skip(f"`{axis}` takes a single value here; a phase chart needs two varying factors")
    notes = []
    if mixed := mixed_settings(rows, [chart.x, chart.y], ignore):   # a cell averages over seeds only
        raise Skip("grid points would average runs that also differ in "
                   + ", ".join(f"`{c}` ({', '.join(display(v) for v in vals[:6])})" for c, vals in mixed.items())
                   + "; give the chart a filter for them")
    cells = (rows.groupby([chart.x, chart.y], dropna=False)
             .agg(redundancy=(rule.redundancy, "mean"), accuracy=(rule.accuracy, "mean"),
                  accuracy_std=(rule.accuracy, "std"), runs=(rule.accuracy, "count"))
             .reset_index())
    plateau = float(cells["accuracy"].quantile(rule.plateau_quantile))
    cells["regime"] = regimes(cells["redundancy"], cells["accuracy"], plateau, rule)
    keep = [c for c in ("run_dir", "seed", "epoch") if c in rows.columns and c not in (chart.x, chart.y)]
    classified = rows[[*keep, chart.x, chart.y, rule.redundancy, rule.accuracy]].assign(
        regime=regimes(rows[rule.redundancy], rows[rule.accuracy], plateau, rule))
    return Phase(sort_by(classified, [chart.x, chart.y]), sort_by(cells, [chart.x, chart.y]), plateau, rule, notes)


def plot_phase(phase: Phase, chart: PhaseChart, labels: Mapping[str, str] | None = None) -> Figure:
    """The grid as a map of cells coloured by regime, in value order on both axes (the paper's
    grids are irregular, roughly logarithmic), each cell annotated with its mean R and A."""
    labels = dict(labels or {})
    cells = phase.cells
    xs, ys = natural_order(cells[chart.x].unique()), natural_order(cells[chart.y].unique())
    column = {display(v): i for i, v in enumerate(xs)}
    row = {display(v): i for i, v in enumerate(ys)}
    grid = np.full((len(ys), len(xs)), np.nan)
    for x, y, regime in zip(cells[chart.x], cells[chart.y], cells["regime"]):
        grid[row[display(y)], column[display(x)]] = REGIMES.index(regime)

    fig, (ax,) = new_figure(1)
    fig.set_size_inches(max(5.5, 0.55 * len(xs) + 2.5), max(4.2, 0.32 * len(ys) + 2.6))
    ax.pcolormesh(np.arange(len(xs) + 1) - 0.5, np.arange(len(ys) + 1) - 0.5, np.ma.masked_invalid(grid),
                  cmap=ListedColormap([COLORS[r] for r in REGIMES]), vmin=-0.5, vmax=len(REGIMES) - 0.5,
                  edgecolors="white", linewidth=1.5)
    if len(cells) <= 150:
        for x, y, r, a, regime in zip(cells[chart.x], cells[chart.y], cells["redundancy"], cells["accuracy"],
                                      cells["regime"]):
            ax.text(column[display(x)], row[display(y)], f"R {r:.3f}\nA {a:.3f}", ha="center", va="center",
                    fontsize=6 if len(xs) > 8 else 7, color="black" if regime == REGIMES[1] else "white")
    ax.set_xticks(range(len(xs)), [display(v) for v in xs], rotation=90 if len(xs) > 10 else 0)
    ax.set_yticks(range(len(ys)), [display(v) for v in ys])
    ax.set_xlabel(label(chart.x, labels))
    ax.set_ylabel(label(chart.y, labels))
    rule = phase.rule
    ax.set_title(f"R = {label(rule.redundancy, labels)}, A = {label(rule.accuracy, labels)}, "
                 f"P = {phase.plateau:.3f} (best mean A)\n"
                 f"sufficient: R ≤ {rule.eps_r:g} and A ≥ P − {rule.eps_a:g};  "
                 f"under: R > {rule.rho_u:g} or A < P − {rule.delta_u:g}", fontsize="x-small")
    handles = [Patch(color=COLORS[r], label=r) for r in REGIMES]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize="small", frameon=False)
    fig.suptitle(chart.title or chart.name)
    return fig
