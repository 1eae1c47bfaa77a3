"""Build a report directory from run directories (or from an already collected table).

    python -m activation_hash.analysis report outputs/multirun --out reports/paper
    python -m activation_hash.analysis report --table table.csv --out reports/paper --set phase.rule.eps_r=0.02

Writes `table.csv`, `claims.csv` (every claim of conf/report/claims.yaml with its verdict on this
table, see activation_hash/analysis/claims.py); for each figure recipe that applies, `NAME.png` and `NAME.csv` (the numbers
drawn); for each table recipe `NAME.md`; for each phase chart `NAME.png` and `NAME.csv` (the
regime of every run and capture); and `report.md`, which embeds them, states the settings found
(studies, runs, seeds, grids, epochs, profile, git revisions) and the phase rule, and lists what
was skipped and why. Each file goes to a temporary name first and is renamed into place; report.md
is written last. Recipes come from conf/report/default.yaml, merged with `--config` and `--set`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

import activation_hash
from activation_hash.analysis.collect import collect_runs, load_table, save_table, write_atomic
from activation_hash.analysis.binary_encoding_figures import latent_histograms
from activation_hash.analysis.claims import claims_section, evaluate_all, load_claims
from activation_hash.analysis.dlgn_figures import dlgn_section
from activation_hash.analysis.figures import Recipe, label, render
from activation_hash.analysis.knn_ties import knn_ties_section
from activation_hash.analysis.retrieval_figures import retrieval_section
from activation_hash.analysis.phase import REGIMES, PhaseChart, PhaseRule, classify, plot_phase
from activation_hash.analysis.select import (Skip, display, matches, natural_order, seed_columns, setting_columns,
                                             varying)

log = logging.getLogger(__name__)

REPORT_CONF = Path(activation_hash.__file__).resolve().parent / "conf" / "report"


def load_config(config: str | Path | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """conf/report/default.yaml, merged with `config` (a file, or a name in conf/report/) and
    `overrides` (dotted KEY=VALUE). Lists such as `figures` are replaced, not appended."""
    cfg = OmegaConf.load(REPORT_CONF / "default.yaml")
    if config is not None:
        path = Path(config)
        if not path.is_file():
            path = REPORT_CONF / f"{config}.yaml"
        if not path.is_file():
            names = sorted(p.stem for p in REPORT_CONF.glob("*.yaml"))
            raise FileNotFoundError(f"report config {config!r}: no such file, nor one of {names}")
        cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))


def parse_config(cfg: DictConfig) -> tuple[list[Recipe], PhaseRule, list[PhaseChart]]:
    plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)
    recipes = [Recipe.from_dict(spec) for spec in plain.get("figures") or []]
    phase = plain.get("phase") or {}
    rule = PhaseRule(**(phase.get("rule") or {}))
    charts = [PhaseChart.from_dict(spec) for spec in phase.get("charts") or []]
    names = [r.name for r in recipes] + [c.name for c in charts]
    if duplicates := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"report config: names used twice: {duplicates}")
    if bad := [n for n in names if not n.replace("_", "").replace("-", "").isalnum()]:
        raise ValueError(f"report config: names must be letters, digits, - and _ (they become file names): {bad}")
    return recipes, rule, charts


def build_report(out_dir: str | Path, runs: Sequence[str | Path] = (), table_path: str | Path | None = None,
                 cfg: DictConfig | None = None) -> Path:
    """Collect `runs` (or read `table_path`), draw everything that applies, return report.md's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = cfg if cfg is not None else load_config()
    recipes, rule, charts = parse_config(cfg)
    labels: dict[str, str] = OmegaConf.to_container(cfg.get("labels") or {}, resolve=True)
    ignore = list(cfg.get("ignore_settings") or [])
    dpi = int(cfg.get("dpi", 130))

    skipped_dirs: list[tuple[str, str]] = []
    if table_path is None:
        collected = collect_runs(runs)
        skipped_dirs = collected.attrs.get("skipped", [])
        if collected.empty:
            raise ValueError(f"no run directories found under {', '.join(map(str, runs))}")
        save_table(collected, out / "table.csv")
    else:
        save_table(load_table(table_path), out / "table.csv")
    # everything below reads the table as written, exactly as a later `--table` run would
    table = load_table(out / "table.csv")
    finished = matches(table["finished"], True)
    plotted = table if cfg.get("include_unfinished", False) else table[finished]
    plotted = _shown(plotted, OmegaConf.to_container(cfg.get("value_labels") or {}, resolve=True))

    lines = [f"# Activation-hash report\n",
             f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %z')} from "
             + (f"`{table_path}`" if table_path else ", ".join(f"`{p}`" for p in runs))
             + f"; the collected table is [table.csv](table.csv) ({len(table)} rows, one per run, capture and layer selection).\n"]
    lines += _settings(table, plotted, ignore, skipped_dirs, bool(cfg.get("include_unfinished", False)))

    skipped: list[tuple[str, str]] = []
    figure_lines: list[str] = []
    table_lines: list[str] = []
    for recipe in recipes:
        try:
            result = render(plotted, recipe, labels, ignore)
        except Skip as why:
            skipped.append((recipe.name, str(why)))
            continue
        title = recipe.title or recipe.name
        if result.figure is not None:
            _write_png(result.figure, out / f"{recipe.name}.png", dpi)
            write_atomic(out / f"{recipe.name}.csv", result.data.to_csv(index=False))
            figure_lines += [f"### {title}\n", f"![{title}]({recipe.name}.png)\n"]
            figure_lines += [f"*{recipe.caption.strip()}*\n"] if recipe.caption else []
            figure_lines += _notes(result.notes) + [f"Numbers drawn: [{recipe.name}.csv]({recipe.name}.csv)\n"]
        else:
            write_atomic(out / f"{recipe.name}.md", f"# {title}\n\n{result.markdown}")
            table_lines += [f"### {title}\n"] + ([f"*{recipe.caption.strip()}*\n"] if recipe.caption else [])
            table_lines += [result.markdown] + _notes(result.notes)
    lines += ["## Figures\n"] + (figure_lines or ["No figure recipe applies to this table.\n"])
    lines += ["## Tables\n"] + (table_lines or ["No table recipe applies to this table.\n"])
    if not plotted.empty:
        lines += knn_ties_section(plotted, ignore)
    retrieval_cfg = OmegaConf.to_container(cfg.retrieval, resolve=True) if "retrieval" in cfg else None
    lines += retrieval_section(plotted, retrieval_cfg, out, _write_png, dpi, skipped)
    lines += _phase_section(plotted, rule, charts, labels, ignore, out, dpi, skipped)
    lines += latent_histograms(plotted, out, dpi, _write_png)  # binary-encoding study only
    dlgn_lines = dlgn_section(plotted, out, dpi, _write_png)  # tables with DLGN runs only
    lines += dlgn_lines
    lines += _claims(table, cfg, out)

    lines.append("## Skipped\n")
    lines += [f"- `{name}`: {why}" for name, why in skipped] or ["Nothing was skipped."]
    covered = {s for r in recipes for s in ([r.study] if isinstance(r.study, str) else r.study or [])}
    covered |= {retrieval_cfg.get("study", "retrieval")} if retrieval_cfg else set()
    covered |= {"dlgn_vs_relu"} if dlgn_lines else set()
    if "study" in table.columns:
        uncovered = [s for s in natural_order(table["study"].dropna().unique()) if s not in covered]
        if uncovered:
            lines.append(f"\nStudies in the table that no figure recipe names: {', '.join(map(str, uncovered))}.")
    return write_atomic(out / "report.md", "\n".join(lines) + "\n")


def _claims(table: pd.DataFrame, cfg: DictConfig, out: Path) -> list[str]:
    """claims.csv and the Claims section: every registered claim decided on the table as written
    (`claims.file`: another registry; `claims.enabled: false` leaves both out)."""
    spec = OmegaConf.to_container(cfg.claims, resolve=True) if "claims" in cfg else {}
    if spec.get("enabled") is False:
        return []
    frame = evaluate_all(table, load_claims(spec.get("file")))
    write_atomic(out / "claims.csv", frame.to_csv(index=False))
    return claims_section(frame, out)


def _shown(table: pd.DataFrame, value_labels: dict[str, dict[str, str]]) -> pd.DataFrame:
    """The table with values renamed for display (`value_labels`: column -> {value: text})."""
    renamed = {c: table[c].map(lambda v, m=mapping: m.get(v, v) if isinstance(v, str) else v)
               for c, mapping in value_labels.items() if c in table.columns}
    return table.assign(**renamed) if renamed else table


def _settings(table: pd.DataFrame, plotted: pd.DataFrame, ignore: Sequence[str],
              skipped_dirs: list[tuple[str, str]], include_unfinished: bool) -> list[str]:
    runs = table.drop_duplicates("run_dir")
    n_finished = int(matches(runs["finished"], True).sum())
    lines = ["## Settings\n",
             f"- runs: {len(runs)} ({n_finished} finished, {len(runs) - n_finished} unfinished"
             + ("; unfinished runs are drawn too)" if include_unfinished else "; figures use finished runs only)")]
    for column, name in (("seed", "seeds"), ("data.name", "data sets")):
        if column in runs.columns:
            lines.append(f"- {name}: {_values(natural_order(runs[column].unique()))}")
    profiles = [c for c in table.columns if c == "profile" or c.startswith("profile.")]
    for column in profiles:
        lines.append(f"- {column}: {_values(natural_order(runs[column].unique()))}")
    revisions = runs["git_revision"].astype(object).fillna("unknown").value_counts()
    lines.append("- git revisions: " + ", ".join(f"`{rev}` ({n} runs)" for rev, n in revisions.items()))
    lines.append("- epochs captured: " + _values(natural_order(table["epoch"].dropna().astype(int).unique())))
    if "study" in table.columns and table["study"].notna().any():
        lines += ["\n| study | runs (finished) | seeds | epochs captured | grid (settings that vary) |",
                  "| --- | --- | --- | --- | --- |"]
        settings = setting_columns(table, ignore)
        for study in natural_order(table["study"].unique()):
            rows = table[matches(table["study"], study)]
            study_runs = rows.drop_duplicates("run_dir")
            seeds_alike = seed_columns(rows, settings)
            grid = varying(rows, [c for c in settings if c not in seeds_alike and c != "study"])
            seeds = natural_order(study_runs["seed"].unique()) if "seed" in rows.columns else []
            lines.append(f"| {display(study)} | {len(study_runs)} ({int(matches(study_runs['finished'], True).sum())})"
                         f" | {_values(seeds)} | {_values(natural_order(rows['epoch'].dropna().astype(int).unique()))}"
                         f" | {'; '.join(f'`{c}`: {_values(v)}' for c, v in grid.items()) or '(single setting)'} |")
    unfinished = runs.loc[~matches(runs["finished"], True), "run_dir"].tolist()
    if unfinished and not include_unfinished:
        lines.append(f"\nUnfinished runs (no result.json), left out of the figures: "
                     + ", ".join(f"`{d}`" for d in unfinished[:10]) + (" ..." if len(unfinished) > 10 else ""))
    if skipped_dirs:
        lines.append("\nUnreadable run directories, skipped: " + "; ".join(f"`{d}` ({why})" for d, why in skipped_dirs))
    if plotted.empty:
        lines.append("\nNo finished run: nothing to draw.")
    return lines + [""]


def _phase_section(table: pd.DataFrame, rule: PhaseRule, charts: Sequence[PhaseChart], labels: dict[str, str],
                   ignore: Sequence[str], out: Path, dpi: int, skipped: list[tuple[str, str]]) -> list[str]:
    lines = ["## Activation hash phase chart\n",
             "The paper leaves the thresholds between the regimes open. Here R is the redundancy "
             f"(`{rule.redundancy}`) and A the accuracy (`{rule.accuracy}`) of a grid point (mean over "
             "seeds) or of one run; P, the plateau, is the "
             + ("maximum" if rule.plateau_quantile == 1 else f"{rule.plateau_quantile:g}-quantile")
             + " of the grid points' mean accuracy within each chart.\n",
             f"- sufficiently-expressive: R ≤ ε_r = {rule.eps_r:g} and A ≥ P − ε_a, ε_a = {rule.eps_a:g}",
             f"- under-expressive: R > ρ_u = {rule.rho_u:g} or A < P − δ_u, δ_u = {rule.delta_u:g}",
             "- critically-expressive: otherwise\n"]
    drawn = 0
    for chart in charts:
        try:
            phase = classify(table, chart, rule, ignore)
        except Skip as why:
            skipped.append((chart.name, str(why)))
            continue
        drawn += 1
        _write_png(plot_phase(phase, chart, labels), out / f"{chart.name}.png", dpi)
        write_atomic(out / f"{chart.name}.csv", phase.rows.to_csv(index=False))
        counts = phase.cells["regime"].value_counts()
        spread = phase.cells["accuracy_std"].median()
        title = chart.title or chart.name
        lines += [f"### {title}\n", f"![{title}]({chart.name}.png)\n",
                  f"{label(chart.x, labels)} × {label(chart.y, labels)}: {len(phase.cells)} grid points, "
                  f"plateau P = {phase.plateau:.3f}; grid points per regime: "
                  + ", ".join(f"{r} {int(counts.get(r, 0))}" for r in REGIMES)
                  + (f"; median seed-to-seed std of A = {spread:.3f} (ε_a = {phase.rule.eps_a:g})"
                     if pd.notna(spread) else "")
                  + f". Regime of every run and capture: [{chart.name}.csv]({chart.name}.csv)\n"]
        if phase.rule != rule:
            lines.append(f"Thresholds for this chart: {phase.rule.describe()}\n")
        lines += _notes(phase.notes)
    if not drawn:
        lines.append("No phase chart applies to this table (see Skipped).\n")
    return lines


def _notes(notes: Sequence[str]) -> list[str]:
    return [f"- note: {n}" for n in notes] + ([""] if notes else [])


def _values(values: Sequence[Any], limit: int = 12) -> str:
    shown = [display(v) for v in values]
    if len(shown) > limit:
        return ", ".join(shown[:6]) + ", ..., " + ", ".join(shown[-3:]) + f" ({len(shown)} values)"
    return ", ".join(shown)


def _write_png(fig: Figure, path: Path, dpi: int) -> None:
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))
