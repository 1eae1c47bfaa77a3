"""From run directories to the paper's figures: collect a table, draw recipes, chart the phases.

    python -m activation_hash.analysis report outputs/multirun --out reports/paper

collect.py  run dirs -> one tidy table (a row per run and capture epoch)
select.py   filter, pick captures, match and average rows of that table
figures.py  recipes (conf/report/*.yaml) -> matplotlib figures and Markdown tables
phase.py    the activation hash phase chart and its regime rule
report.py   all of it into a report directory with report.md
"""

from activation_hash.analysis.collect import collect_runs, load_table, save_table
from activation_hash.analysis.figures import Recipe, Rendered, render
from activation_hash.analysis.phase import PhaseChart, PhaseRule, classify, plot_phase
from activation_hash.analysis.report import build_report, load_config
from activation_hash.analysis.select import Skip

__all__ = ["PhaseChart", "PhaseRule", "Recipe", "Rendered", "Skip", "build_report", "classify", "collect_runs",
           "load_config", "load_table", "plot_phase", "render", "save_table"]
