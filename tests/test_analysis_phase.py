"""The phase rule on hand-picked values, and classify/plot_phase on a fabricated width x sample-size grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from activation_hash.analysis.collect import collect_runs
from activation_hash.analysis.phase import REGIMES, PhaseChart, PhaseRule, classify, plot_phase, regimes
from activation_hash.analysis.select import Skip
from tests.test_analysis_collect import make_sweep

UNDER, CRITICAL, SUFFICIENT = REGIMES


def test_rule_at_and_around_the_thresholds() -> None:
    rule = PhaseRule(eps_r=0.01, eps_a=0.02, rho_u=0.1, delta_u=0.1)
    plateau = 0.9
    cases = [  # (R, A, regime)
        (0.0, 0.9, SUFFICIENT), (0.01, 0.88, SUFFICIENT),             # both limits inclusive
        (0.011, 0.9, CRITICAL), (0.0, 0.879, CRITICAL),               # just outside sufficient
        (0.1, 0.8, CRITICAL),                                          # at both under limits: not under
        (0.1001, 0.9, UNDER), (0.0, 0.799, UNDER), (0.5, 0.2, UNDER)]
    r, a, want = zip(*cases)
    assert list(regimes(r, a, plateau, rule)) == list(want)


def test_rule_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="eps_r < rho_u"):
        PhaseRule(eps_r=0.2, rho_u=0.1)
    with pytest.raises(ValueError, match="eps_a < delta_u"):
        PhaseRule(eps_a=0.1, delta_u=0.05)
    with pytest.raises(ValueError, match="plateau_quantile"):
        PhaseRule(plateau_quantile=0)


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("phase")
    make_sweep(root, {"model.width": [5, 40, 200], "data.train_size": [10, 1000, 60000], "seed": [0, 1]},
               study="sample_size", epochs=(0, 20))
    return collect_runs([root])


CHART = PhaseChart(name="ph", study="sample_size", x="model.width", y="data.train_size", title="Phase")


def test_classify_uses_the_best_seed_mean_as_plateau(table: pd.DataFrame) -> None:
    rule = PhaseRule()
    phase = classify(table, CHART, rule)
    last = table[table["epoch"] == 20]
    means = last.groupby(["model.width", "data.train_size"])[["test/redundancy", "test/knn_acc"]].mean()
    assert phase.plateau == pytest.approx(means["test/knn_acc"].max())
    assert len(phase.cells) == 9 and len(phase.rows) == 18 and set(phase.cells["runs"]) == {2}
    expected = regimes(means["test/redundancy"], means["test/knn_acc"], phase.plateau, rule)
    cells = phase.cells.set_index(["model.width", "data.train_size"]).loc[means.index]
    assert list(cells["regime"]) == list(expected)
    # the fabricated trends span the regimes: tiny nets on 10 samples under, big ones on all data sufficient
    assert cells.loc[(5, 10), "regime"] == UNDER and cells.loc[(200, 60000), "regime"] == SUFFICIENT
    row_regimes = regimes(phase.rows["test/redundancy"], phase.rows["test/knn_acc"], phase.plateau, rule)
    assert list(phase.rows["regime"]) == list(row_regimes)


def test_chart_thresholds_override_the_defaults(table: pd.DataFrame) -> None:
    loose = PhaseChart(name="ph", study="sample_size", x="model.width", y="data.train_size",
                       rule={"eps_r": 0.5, "rho_u": 0.9, "eps_a": 0.5, "delta_u": 0.6})
    phase = classify(table, loose, PhaseRule())
    assert phase.rule.eps_r == 0.5 and (phase.cells["regime"] == SUFFICIENT).sum() > 5


def test_plot_shows_each_grid_point_in_its_regime_colour(table: pd.DataFrame) -> None:
    phase = classify(table, CHART, PhaseRule())
    fig = plot_phase(phase, CHART, {"model.width": "width", "data.train_size": "sample size"})
    (ax,) = fig.axes
    (mesh,) = ax.collections
    values = np.ma.masked_invalid(mesh.get_array())
    assert values.count() == 9
    assert sorted(values.compressed().astype(int)) == sorted(REGIMES.index(r) for r in phase.cells["regime"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5", "40", "200"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["10", "1000", "60000"]
    assert ax.get_xlabel() == "width" and ax.get_ylabel() == "sample size"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(REGIMES)
    assert "R ≤ 0.01" in ax.get_title() and "P − 0.02" in ax.get_title() and "R > 0.1" in ax.get_title()
    assert len(ax.texts) == 9                                                # R and A written in each cell


def test_a_chart_needs_two_varying_factors(table: pd.DataFrame) -> None:
    with pytest.raises(Skip, match="single value"):
        classify(table, PhaseChart(name="e", study="sample_size", x="model.width", y="epoch", at="last"), PhaseRule())
    with pytest.raises(Skip, match="study = training_time"):
        classify(table, PhaseChart(name="t", study="training_time", x="model.width", y="epoch"), PhaseRule())
