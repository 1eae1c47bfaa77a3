"""Figures and tables drawn from the collected table alone, one recipe each (conf/report/*.yaml).

    python -m activation_hash.analysis report outputs/multirun --out reports/paper

A recipe names the rows (`study`, `filter`, `at`) and what to draw (`kind`):
- line:  metric(s) `y` vs factor `x`, one line per `hue` (colour) and `style` (line style) value,
         mean over seeds with a ±1 std band (`errorbars: band | bar | none`), labelled in the legend;
- bar:   the same with `x` as categories (e.g. `codes.layers`);
- pairs: with-vs-without scatter; for each entry of `pairs` ({factor, without, with, label}) one
         point per model (runs agreeing on the settings that vary within either arm, or on the
         `match` columns), y = x drawn;
- hist:  distributions from a column of raw values (`values`: JSON list or a file path relative
         to the run dir: .npy, .npz, .json, .csv/.txt) or of binned counts (`counts` + `edges`);
- table: mean ± std of metrics `y` per row key (`rows`: columns, or `auto` = the varying settings).
Several metrics are overlaid on one axes (`y_layout: overlay`) or one panel each (`panels`).
Points average over seeds only: a setting that also varies within a series (say `trainer.max_epochs`
in a width sweep) splits line and bar figures into one panel per value (at most `MAX_FACETS`) and
table rows by its values; a histogram or a figure with more combinations is not drawn (`Skip`).
Recipes that do not apply to the table raise `Skip`; `render` never plots partial nonsense.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, SymmetricalLogLocator

from activation_hash.analysis.select import (Skip, aggregate, display, is_numeric, matches, mixed_settings,
                                             natural_order, normalize, resolve_at, seed_columns, select,
                                             setting_columns, sort_by, varying)

KINDS = ("line", "bar", "pairs", "hist", "table")
LINESTYLES = ("-", "--", ":", "-.")
PANEL_SIZE = (4.2, 3.3)
MAX_FACETS = 6   # panels a figure may split into for settings that vary within its series


@dataclass(frozen=True)
class Recipe:
    name: str
    kind: str = "line"
    title: str | None = None
    caption: str | None = None
    study: str | list[str] | None = None
    filter: dict[str, Any] = field(default_factory=dict)
    at: Any = "auto"                   # auto | last | all | epoch | [epochs]
    x: str | None = None
    y: list[str] = field(default_factory=list)
    hue: str | None = None
    style: str | None = None
    y_layout: str = "overlay"          # overlay | panels
    xscale: str = "linear"             # linear | log | symlog (symlog keeps epoch 0)
    yscale: str = "linear"
    xlabel: str | None = None
    ylabel: str | None = None
    errorbars: str = "band"            # band | bar | none
    order: dict[str, list[Any]] = field(default_factory=dict)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    match: str | list[str] = "auto"
    values: str | None = None
    counts: str | None = None
    edges: str | None = None
    bins: int = 40
    density: bool = True
    rows: str | list[str] = "auto"
    fmt: str = ".3f"

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Recipe:
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"recipe {spec.get('name', '?')!r}: unknown key(s) {sorted(unknown)}; "
                             f"allowed: {sorted(allowed)}")
        values = dict(spec)
        if isinstance(values.get("y"), str):
            values["y"] = [values["y"]]
        recipe = cls(**values)
        recipe.check()
        return recipe

    def check(self) -> None:
        def fail(msg: str) -> None:
            raise ValueError(f"recipe {self.name!r}: {msg}")
        if self.kind not in KINDS:
            fail(f"kind {self.kind!r} is not one of {KINDS}")
        if self.kind in ("line", "bar") and not (self.x and self.y):
            fail(f"kind {self.kind} needs x and y")
        if self.kind in ("pairs", "table") and not self.y:
            fail(f"kind {self.kind} needs y (the metrics)")
        if self.kind == "pairs" and not all({"factor", "without", "with"} <= set(p) for p in self.pairs or [{}]):
            fail("kind pairs needs pairs: [{factor, without, with, label}, ...]")
        if self.kind == "bar" and self.xscale != "linear":
            fail("kind bar has categories on x; xscale must be linear")
        if self.kind == "hist" and not (self.values or (self.counts and self.edges)):
            fail("kind hist needs values, or counts and edges")
        for key, allowed in (("y_layout", ("overlay", "panels")), ("errorbars", ("band", "bar", "none")),
                             ("xscale", ("linear", "log", "symlog")), ("yscale", ("linear", "log", "symlog"))):
            if getattr(self, key) not in allowed:
                fail(f"{key} {getattr(self, key)!r} is not one of {allowed}")


@dataclass
class Rendered:
    figure: Figure | None          # None for tables
    data: pd.DataFrame             # exactly the numbers drawn (or tabulated)
    notes: list[str] = field(default_factory=list)
    markdown: str | None = None    # tables only


def render(table: pd.DataFrame, recipe: Recipe, labels: Mapping[str, str] | None = None,
           ignore: Sequence[str] = ()) -> Rendered:
    """Draw one recipe. Raises Skip when the table has nothing for it."""
    draw = {"line": _lines, "bar": _lines, "pairs": _pairs, "hist": _hist, "table": _table}[recipe.kind]
    return draw(table, recipe, dict(labels or {}), tuple(ignore))


def label(column: str | None, labels: Mapping[str, str]) -> str:
    if column is None:
        return ""
    return labels.get(column, column.rsplit(".", 1)[-1] if "/" not in column else column)


def _present(table: pd.DataFrame, metrics: Sequence[str], notes: list[str]) -> list[str]:
    present = [m for m in metrics if m in table.columns and table[m].notna().any()]
    if not present:
        raise Skip(f"none of {list(metrics)} is in the table")
    if missing := [m for m in metrics if m not in present]:
        notes.append(f"not in the table: {', '.join(missing)}")
    return present


def _need(table: pd.DataFrame, *columns: str | None) -> None:
    for column in columns:
        if column and column not in table.columns:
            raise Skip(f"column `{column}` is not in the table")


def _describe(mixed: Mapping[str, Sequence[Any]]) -> str:
    return "; ".join(f"`{c}` ({', '.join(display(v) for v in vals[:6])}{', ...' if len(vals) > 6 else ''})"
                     for c, vals in mixed.items())


def _facets(rows: pd.DataFrame, keys: Sequence[str], ignore: Sequence[str],
            what: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Settings other than the seed that vary within the series `keys` define: each combination of
    their values becomes its own panel, so that no point averages different settings."""
    mixed = mixed_settings(rows, keys, ignore)
    if not mixed:
        return [], [()]
    columns = list(mixed)
    combos = list(dict.fromkeys(tuple(normalize(v) for v in row) for row in rows[columns].itertuples(index=False)))
    combos.sort(key=lambda combo: [_rank(v, mixed[c]) for v, c in zip(combo, columns)])
    if len(combos) > MAX_FACETS:
        raise Skip(f"runs in one {what} also differ in {_describe(mixed)} ({len(combos)} combinations, more than "
                   f"{MAX_FACETS} panels); averaging them would mix settings: give the recipe a filter, hue or style "
                   "for them")
    return columns, combos


def _rank(value: Any, ordered: Sequence[Any]) -> int:
    texts = [normalize(v) for v in ordered]
    return texts.index(value) if value in texts else len(texts)


def _in_facet(frame: pd.DataFrame, columns: Sequence[str], combo: Sequence[Any]) -> pd.Series:
    keep = pd.Series(True, index=frame.index)
    for column, value in zip(columns, combo):
        keep &= matches(frame[column], value)
    return keep


def _facet_title(columns: Sequence[str], combo: Sequence[Any], labels: Mapping[str, str]) -> str:
    return ", ".join(f"{label(c, labels)} {display(v)}" for c, v in zip(columns, combo))


def spread_entry(counts: pd.Series, errorbars: str = "band") -> dict[str, Any]:
    """The legend entry that says what the band or bars are: ±1 std over the n seeds of a point
    (`counts`: the number of runs averaged into each point)."""
    counts = counts[counts > 1]
    if errorbars == "none" or counts.empty:
        return {}
    low, high = int(counts.min()), int(counts.max())
    n = f"{low}" if low == high else f"{low}–{high}"
    if errorbars == "bar":
        return {f"error bars: ±1 std over {n} seeds": Line2D([], [], color="0.3", marker="|", ls="none", ms=10)}
    return {f"band: ±1 std over {n} seeds": Patch(color="0.3", alpha=0.18, lw=0)}


def _positive_only(rows: pd.DataFrame, column: str, scale: str, notes: list[str]) -> pd.DataFrame:
    if scale != "log" or not pd.api.types.is_numeric_dtype(rows[column]):
        return rows
    keep = rows[column] > 0
    if not keep.all():
        dropped = natural_order(rows.loc[~keep, column].unique())
        notes.append(f"log axis: left out {column} = {', '.join(display(v) for v in dropped)}")
    return rows[keep]


def _ordered(values: Sequence[Any], column: str | None, recipe: Recipe) -> list[Any]:
    """Values in the recipe's `order` for this column first, the rest in natural order."""
    found = natural_order(values)
    wanted = [normalize(v) for v in recipe.order.get(column, [])]
    picked = [v for w in wanted for v in found if normalize(v) == w]
    return picked + [v for v in found if v not in picked]


def _colors(n: int) -> list[Any]:
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i if n <= 10 else i / max(n - 1, 1)) for i in range(n)]


def new_figure(n_panels: int, n_rows: int = 1) -> tuple[Figure, list[Axes]]:
    n_cols = int(np.ceil(n_panels / n_rows))
    fig = Figure(figsize=(PANEL_SIZE[0] * n_cols + 0.4, PANEL_SIZE[1] * n_rows + 0.8), layout="constrained")
    FigureCanvasAgg(fig)  # Agg, without pyplot's global state
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel().tolist()
    for extra in axes[n_panels:]:
        extra.remove()
    return fig, axes[:n_panels]


def _legend(fig: Figure, entries: Mapping[str, Any]) -> None:
    """One legend for the whole figure, below the axes so it never hides data or the title."""
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=min(len(entries), 4),
                   fontsize="small", frameon=False)


def _axes_legend_entries(axes: Sequence[Axes]) -> dict[str, Any]:
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(text, handle)
    return entries if len(entries) > 1 else {}


def _set_scales(ax: Axes, recipe: Recipe) -> None:
    for axis, scale in (("x", recipe.xscale), ("y", recipe.yscale)):
        setter = ax.set_xscale if axis == "x" else ax.set_yscale
        setter(scale, **({"linthresh": 1} if scale == "symlog" else {}))
        plain_ticks(ax.xaxis if axis == "x" else ax.yaxis, scale)


def plain_ticks(axis: Any, scale: str) -> None:
    """On a log or symlog axis, plain numbers at 1-2-5 steps (1, 2, 5, 10, 20, ...), not 10^k alone."""
    if scale == "linear":
        return
    if scale == "log":
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    else:
        axis.set_major_locator(SymmetricalLogLocator(base=10, linthresh=1, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _lines(table: pd.DataFrame, recipe: Recipe, labels: dict[str, str], ignore: tuple[str, ...]) -> Rendered:
    notes: list[str] = []
    _need(table, recipe.x, recipe.hue, recipe.style)
    rows = select(table, recipe.study, recipe.filter, resolve_at(recipe.at, recipe.x, recipe.hue, recipe.style))
    metrics = _present(rows, recipe.y, notes)
    rows = _positive_only(rows, recipe.x, recipe.xscale, notes)
    if rows.empty:
        raise Skip(f"no rows left with {recipe.x} > 0 for the log axis")
    groups = [c for c in (recipe.hue, recipe.style) if c]
    if len({recipe.x, *groups}) != len(groups) + 1:
        raise ValueError(f"recipe {recipe.name!r}: x, hue and style must be different columns")
    facet_columns, facets = _facets(rows, [recipe.x, *groups], ignore, "line" if recipe.kind == "line" else "bar group")
    if facet_columns:
        notes.append(f"one panel per value of {', '.join(f'`{c}`' for c in facet_columns)}, which also varies "
                     "within the series")
    data = aggregate(rows, [*facet_columns, *groups, recipe.x], metrics)
    if data.empty:
        raise Skip(f"no values of {metrics}")

    panels = recipe.y_layout == "panels" and len(metrics) > 1
    overlay = not panels and len(metrics) > 1
    hues = _ordered(data[recipe.hue].unique(), recipe.hue, recipe) if recipe.hue else [None]
    styles = _ordered(data[recipe.style].unique(), recipe.style, recipe) if recipe.style else [None]
    xs = _ordered(data[recipe.x].unique(), recipe.x, recipe)
    position = {display(x): i for i, x in enumerate(xs)}
    categorical = recipe.kind == "bar" or not is_numeric(data[recipe.x])
    # one panel per (facet, metric) when metrics are panels, else per facet; facets are rows
    panel_metrics = metrics if panels else metrics[:1]
    specs = [(combo, metric) for combo in facets for metric in panel_metrics]
    n_rows = len(facets) if panels else max(1, int(np.ceil(len(facets) / 3)))
    fig, axes = new_figure(len(specs), n_rows=n_rows)
    per_axes = [[(h, s, m) for h in hues for s in styles for m in (metrics if overlay else [metric])]
                for _, metric in specs]

    # Lines: colour = hue value (else the metric), line style = (metric, style value); the legend
    # lists colours and line styles separately so it grows with their sum, not their product.
    # Bars: one colour per bar of a group.
    def hue_text(hue: Any) -> str:
        return f"{label(recipe.hue, labels)} {display(hue)}"

    def dash_text(metric: str, style: Any) -> str:
        return ", ".join(p for p in (label(metric, labels) if overlay and recipe.hue else "",
                                     f"{label(recipe.style, labels)} {display(style)}" if recipe.style else "") if p)

    color_keys = hues if recipe.hue else (metrics if overlay else [None])
    dash_keys = [(m, s) for m in (metrics if overlay and recipe.hue else [None]) for s in styles]
    colors = dict(zip(color_keys, _colors(len(color_keys))))
    bar_colors = _colors(len(per_axes[0]))
    legend: dict[str, Any] = {}
    for ax, series, (combo, _) in zip(axes, per_axes, specs):
        for slot, (hue, style, metric) in enumerate(series):
            part = data[(data["metric"] == metric) & _in_facet(data, facet_columns, combo)
                        & (matches(data[recipe.hue], hue) if recipe.hue else True)
                        & (matches(data[recipe.style], style) if recipe.style else True)]
            if part.empty:
                continue
            pos = np.array([position[display(x)] for x in part[recipe.x]], dtype=float)
            part, pos = part.iloc[np.argsort(pos, kind="stable")], np.sort(pos)
            mean, std = part["mean"].to_numpy(float), np.nan_to_num(part["std"].to_numpy(float))
            show_err = recipe.errorbars != "none" and bool((part["n"] > 1).any())
            if recipe.kind == "bar":
                text = ", ".join(p for p in (hue_text(hue) if recipe.hue else "", dash_text(metric, style),
                                             label(metric, labels) if overlay and not recipe.hue else "") if p)
                width = 0.8 / len(series)
                bars = ax.bar(pos + (slot - (len(series) - 1) / 2) * width, mean, width, color=bar_colors[slot],
                              yerr=std if show_err else None, capsize=2, error_kw={"elinewidth": 0.8})
                if text:
                    legend.setdefault(text, bars)
                continue
            color = colors[hue if recipe.hue else (metric if overlay else None)]
            dashes = LINESTYLES[dash_keys.index((metric if overlay and recipe.hue else None, style)) % len(LINESTYLES)]
            x = pos if categorical else part[recipe.x].to_numpy(float)
            kwargs = dict(color=color, ls=dashes, marker="o", ms=3, lw=1.4)
            if show_err and recipe.errorbars == "bar":
                ax.errorbar(x, mean, yerr=std, capsize=2, **kwargs)
            else:
                ax.plot(x, mean, **kwargs)
                if show_err:
                    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.18, lw=0)
    if recipe.kind == "line":
        if len(color_keys) > 1:
            for key in color_keys:
                legend[hue_text(key) if recipe.hue else label(key, labels)] = Line2D([], [], color=colors[key], lw=2)
        if len(dash_keys) > 1:
            for i, (metric, style) in enumerate(dash_keys):
                dashes = LINESTYLES[i % len(LINESTYLES)]
                legend[dash_text(metric, style)] = Line2D([], [], color="0.3", lw=1.4, ls=dashes)

    legend.update(spread_entry(data["n"], recipe.errorbars) if recipe.kind == "line" or recipe.errorbars == "bar" else {})
    for ax, (combo, metric) in zip(axes, specs):
        _set_scales(ax, recipe)
        if categorical:
            ax.set_xticks(range(len(xs)), [display(x) for x in xs], rotation=30 if len(xs) > 6 else 0)
        ax.set_xlabel(recipe.xlabel or label(recipe.x, labels))
        title = [label(metric, labels)] if panels else []
        title += [_facet_title(facet_columns, combo, labels)] if facet_columns else []
        if title:
            ax.set_title("\n".join(title), fontsize="medium")
        if panels:
            ax.set_ylabel(label(metric, labels))
        else:
            ax.set_ylabel(recipe.ylabel or (label(metrics[0], labels) if len(metrics) == 1 else "value"))
        ax.grid(alpha=0.3, which="major")
    fig.suptitle(recipe.title or recipe.name)
    _legend(fig, legend)
    return Rendered(fig, data, notes)


def _pairs(table: pd.DataFrame, recipe: Recipe, labels: dict[str, str], ignore: tuple[str, ...]) -> Rendered:
    notes: list[str] = []
    at = resolve_at(recipe.at)
    rows = select(table, recipe.study, recipe.filter, at)
    metrics = _present(rows, recipe.y, notes)
    matched: list[pd.DataFrame] = []
    for pair in recipe.pairs:
        factor = pair["factor"]
        name = pair.get("label") or label(factor, labels)
        if factor not in rows.columns:
            notes.append(f"{name}: column `{factor}` is not in the table")
            continue
        without = rows[matches(rows[factor], pair["without"])]
        with_ = rows[matches(rows[factor], pair["with"])]
        if isinstance(recipe.match, str):
            # a model is what varies within an arm (width, seed, other factors); settings that are
            # constant in each arm but differ between them come with the factor and must not be matched
            settings = setting_columns(rows, ignore)
            keys = [c for c in settings if c != factor and (c in varying(without, [c]) or c in varying(with_, [c]))]
        else:
            keys = list(recipe.match)
        if at != "last":
            keys.append("epoch")
        if without.duplicated(keys).any() or with_.duplicated(keys).any():
            notes.append(f"{name}: several runs share the matching settings {keys}; their pairs are ambiguous")
        # null keys (e.g. gradient_clip_val: null) must match each other, so merge on their text form
        left = without[metrics].assign(**{f"key:{k}": without[k].map(display) for k in keys})
        right = with_[metrics].assign(**{f"key:{k}": with_[k].map(display) for k in keys})
        merged = left.merge(right, on=[f"key:{k}" for k in keys], suffixes=(" without", " with"))
        if merged.empty:
            notes.append(f"{name}: no model has runs both with {factor} = {pair['with']} "
                         f"and {factor} = {pair['without']}")
            continue
        merged = merged.rename(columns={f"key:{k}": k for k in keys}).assign(pair=name)
        matched.append(merged)
    if not matched:
        raise Skip("no with/without pairs in the table")
    data = pd.concat(matched, ignore_index=True)

    pair_names = list(dict.fromkeys(data["pair"]))
    panels = recipe.y_layout == "panels"
    n_rows = len(metrics) if panels else 1
    fig, axes = new_figure(len(pair_names) * n_rows, n_rows=n_rows)
    colors = _colors(len(metrics))
    for r, metric_group in enumerate([[m] for m in metrics] if panels else [metrics]):
        for c, name in enumerate(pair_names):
            ax = axes[r * len(pair_names) + c]
            part = data[data["pair"] == name]
            lows, highs = [], []
            for metric in metric_group:
                x, y = part[f"{metric} without"].astype(float), part[f"{metric} with"].astype(float)
                ax.scatter(x, y, s=12, alpha=0.7, color=colors[metrics.index(metric)],
                           label=label(metric, labels))
                lows.append(min(x.min(), y.min()))
                highs.append(max(x.max(), y.max()))
                if len(metric_group) == 1:
                    ax.text(0.03, 0.97, f"n = {len(part)}\nmean(w/ − w/o) = {np.mean(y - x):+.3f}",
                            transform=ax.transAxes, va="top", fontsize="small")
            low, high = min(lows), max(highs)
            pad = 0.05 * (high - low or 1)
            ax.plot([low - pad, high + pad], [low - pad, high + pad], color="0.4", ls="--", lw=0.8)
            ax.set_xlim(low - pad, high + pad)
            ax.set_ylim(low - pad, high + pad)
            ax.set_aspect("equal", adjustable="box")
            what = label(metric_group[0], labels) if len(metric_group) == 1 else (recipe.ylabel or "metric")
            ax.set_xlabel(f"without {name}")
            ax.set_ylabel(f"{what}, with {name}" if c == 0 else f"with {name}")
            if r == 0:
                ax.set_title(name, fontsize="medium")
            ax.grid(alpha=0.3)
    fig.suptitle(recipe.title or recipe.name)
    if not panels:
        _legend(fig, _axes_legend_entries(axes))
    return Rendered(fig, data, notes)


def _hist(table: pd.DataFrame, recipe: Recipe, labels: dict[str, str], ignore: tuple[str, ...]) -> Rendered:
    notes: list[str] = []
    source = recipe.values or recipe.counts
    _need(table, recipe.hue)
    if source not in table.columns or (recipe.edges and recipe.edges not in table.columns):
        raise Skip(f"column `{source}` is not in the table (no histogram data)")
    rows = select(table, recipe.study, recipe.filter, resolve_at(recipe.at, recipe.hue))
    rows = rows[rows[source].notna()]
    if rows.empty:
        raise Skip(f"column `{source}` is empty for these runs")
    if mixed := mixed_settings(rows, [recipe.hue] if recipe.hue else [], ignore):
        raise Skip(f"runs in one histogram also differ in {_describe(mixed)}; pooling them would mix settings: "
                   "give the recipe a filter or hue for them")

    samples: dict[Any, list[tuple[np.ndarray, np.ndarray]]] = {}   # hue -> [(values, weights)]
    for _, row in rows.iterrows():
        try:
            if recipe.values:
                values = _load_values(row[recipe.values], Path(row["run_dir"]))
                weights = np.ones_like(values)
            else:
                values, weights = _binned(row[recipe.counts], row[recipe.edges], recipe.xscale)
        except (OSError, ValueError) as err:
            notes.append(f"{row['run_dir']}: {err}")
            continue
        finite = np.isfinite(values)
        samples.setdefault(row[recipe.hue] if recipe.hue else None, []).append((values[finite], weights[finite]))
    if not samples:
        raise Skip("no histogram data could be read")

    everything = np.concatenate([v for runs in samples.values() for v, _ in runs])
    positive = everything[everything > 0]
    if recipe.xscale == "log" and positive.size and positive.min() < positive.max():
        edges = np.geomspace(positive.min(), positive.max(), recipe.bins + 1)
    else:
        edges = np.histogram_bin_edges(everything, bins=recipe.bins)
    fig, (ax,) = new_figure(1)
    hues = _ordered(list(samples), recipe.hue, recipe) if recipe.hue else [None]
    colors = _colors(len(hues))
    summary = []
    for hue, color in zip(hues, colors):
        values = np.concatenate([v for v, _ in samples[hue]])
        weights = np.concatenate([w for _, w in samples[hue]])
        text = f"{label(recipe.hue, labels)} {display(hue)}" if recipe.hue else None
        ax.hist(values, bins=edges, weights=weights, density=recipe.density, histtype="stepfilled", alpha=0.35,
                color=color, edgecolor=color, lw=1.2, label=text)
        mean = float(np.average(values, weights=weights)) if weights.sum() else float("nan")
        summary.append({**({recipe.hue: hue} if recipe.hue else {}), "runs": len(samples[hue]),
                        "count": float(weights.sum()), "mean": mean})
    _set_scales(ax, recipe)
    ax.set_xlabel(recipe.xlabel or label(source, labels))
    ax.set_ylabel(recipe.ylabel or ("density" if recipe.density else "count"))
    ax.grid(alpha=0.3)
    fig.suptitle(recipe.title or recipe.name)
    _legend(fig, _axes_legend_entries([ax]))
    return Rendered(fig, pd.DataFrame(summary), notes)


def _load_values(cell: Any, run_dir: Path) -> np.ndarray:
    """Raw values from a JSON list cell or from a file (relative paths are inside the run dir)."""
    text = str(cell).strip()
    if text.startswith("["):
        return np.asarray(json.loads(text), dtype=float).ravel()
    path = Path(text) if Path(text).is_absolute() else run_dir / text
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False).astype(float).ravel()
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            key = "diameter" if "diameter" in npz.files else npz.files[0]
            return npz[key].astype(float).ravel()
    if path.suffix == ".json":
        return np.asarray(json.loads(path.read_text()), dtype=float).ravel()
    return np.loadtxt(path, dtype=float, delimiter="," if path.suffix == ".csv" else None).ravel()


def _binned(counts_cell: Any, edges_cell: Any, xscale: str) -> tuple[np.ndarray, np.ndarray]:
    """A stored histogram as (bin centres, counts), to be re-binned on common edges."""
    counts = np.asarray(json.loads(str(counts_cell)), dtype=float)
    edges = np.asarray(json.loads(str(edges_cell)), dtype=float)
    if edges.size != counts.size + 1:
        raise ValueError(f"{counts.size} counts need {counts.size + 1} edges, got {edges.size}")
    centres = np.sqrt(edges[:-1] * edges[1:]) if xscale == "log" and (edges > 0).all() else (edges[:-1] + edges[1:]) / 2
    return centres, counts


def _table(table: pd.DataFrame, recipe: Recipe, labels: dict[str, str], ignore: tuple[str, ...]) -> Rendered:
    notes: list[str] = []
    rows = select(table, recipe.study, recipe.filter, resolve_at(recipe.at))
    metrics = _present(rows, recipe.y, notes)
    if isinstance(recipe.rows, str):
        settings = setting_columns(rows, ignore)
        keys = [c for c in varying(rows, settings) if c not in seed_columns(rows, settings)]
        keys = keys or [c for c in ("study",) if c in rows.columns]
    else:
        _need(rows, *recipe.rows)
        keys = list(recipe.rows)
    if mixed := mixed_settings(rows, keys, ignore):   # rows average over seeds only
        keys += list(mixed)
        notes.append(f"rows also split by {', '.join(f'`{c}`' for c in mixed)}, which varies between runs")
    data = aggregate(rows, keys, metrics)
    cell = data.assign(text=[f"{m:{recipe.fmt}}" + (f" ± {s:{recipe.fmt}}" if n > 1 else "")
                             for m, s, n in zip(data["mean"], data["std"], data["n"])])
    wide = cell.pivot_table(index=keys, columns="metric", values="text", aggfunc="first", dropna=False,
                            sort=False)
    seeds = data.groupby(keys, dropna=False, sort=False)["n"].max().rename("runs")
    wide = wide.reindex(columns=metrics).join(seeds)
    # pivot_table(dropna=False) spans every combination of the keys' values; keep those with runs
    wide = sort_by(wide[wide["runs"].notna()].reset_index(), keys)
    header = [label(k, labels) for k in keys] + [label(m, labels) for m in metrics] + ["runs"]
    body = [[display(v) for v in row[keys]] + [row[m] if isinstance(row[m], str) else "" for m in metrics]
            + [str(int(row["runs"]))] for _, row in wide.iterrows()]
    return Rendered(None, data, notes, markdown=markdown_table(header, body))


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), line(["---"] * len(header)), *map(line, body)]) + "\n"
