"""Figures are checked on the matplotlib objects: labels, scales, one line per group, plotted points
equal to the seed means of the fabricated runs, error bands when there are several seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import FillBetweenPolyCollection, PolyCollection
from matplotlib.container import BarContainer, ErrorbarContainer

from activation_hash.analysis.collect import collect_runs, load_table, save_table
from activation_hash.analysis.figures import Recipe, render
from activation_hash.analysis.select import Skip
from tests.test_analysis_collect import make_sweep

LABELS = {"model.width": "width", "test/redundancy": "redundancy (test)", "train/redundancy": "redundancy (train)"}


def diameters(settings, epoch):
    rng = np.random.default_rng([settings["seed"], settings["model.width"], epoch])
    values = rng.lognormal(mean=-1 - epoch / 10, sigma=0.5, size=50)
    counts, edges = np.histogram(values, bins=8)
    return {"test/diameters": values.round(5).tolist(), "test/diameter_hist_counts": counts.tolist(),
            "test/diameter_hist_edges": edges.tolist()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table as the figures read it, the fabricated captures it came from)."""
    root = tmp_path_factory.mktemp("runs")
    made = [make_sweep(root / "ms", {"model.width": [5, 20, 80], "seed": [0, 1, 2]}, study="model_size",
                       epochs=(0, 10)),
            make_sweep(root / "tt", {"model.width": [10, 40], "seed": [0, 1]}, study="training_time",
                       epochs=(0, 1, 3, 10)),
            make_sweep(root / "single", {"model.width": [5, 20]}, study="single_seed", epochs=(0, 4)),
            make_sweep(root / "lw", {"codes.layers": [1, 2, "..2"], "seed": [0, 1]}, study="layerwise", epochs=(0, 2)),
            make_sweep(root / "mixed", {"model.width": [5, 20], "data.train_size": [100, 1000]}, study="mixed",
                       epochs=(0, 2)),
            make_sweep(root / "diam", {"model.width": [50], "seed": [0, 1]}, study="diameter", epochs=(0, 10),
                       extra=diameters)]
    for arm, settings in {"none": {}, "bn": {"model.batch_norm": True},
                          "clip": {"trainer.gradient_clip_val": 1.0}}.items():
        made.append(make_sweep(root / "reg" / arm, {"model.width": [10, 40, 100], "seed": [0, 1]},
                               study="regularization", epochs=(0, 5), settings=settings))
    save_table(collect_runs([root]), root / "table.csv")
    return load_table(root / "table.csv"), pd.concat(made, ignore_index=True)


def seed_stats(made: pd.DataFrame, study: str, metric: str, by: list[str], epoch: int | None = None) -> pd.DataFrame:
    rows = made[made["study"] == study]
    if epoch is not None:
        rows = rows[rows["epoch"] == epoch]
    return rows.groupby(by)[metric].agg(["mean", "std", "count"]).reset_index()


def test_line_points_are_seed_means_with_a_std_band(runs) -> None:
    table, made = runs
    recipe = Recipe.from_dict({"name": "r", "study": "model_size", "x": "model.width", "y": "test/redundancy",
                               "title": "Redundancy vs width"})
    out = render(table, recipe, LABELS)
    (ax,) = out.figure.axes
    (line,) = ax.get_lines()
    expected = seed_stats(made, "model_size", "test/redundancy", ["model.width"], epoch=10)  # at: last capture
    assert list(line.get_xdata()) == [5, 20, 80]
    assert np.allclose(line.get_ydata(), expected["mean"])
    assert np.allclose(out.data["mean"], expected["mean"]) and list(out.data["n"]) == [3, 3, 3]
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.max() == pytest.approx((expected["mean"] + expected["std"]).max())
    assert ys.min() == pytest.approx((expected["mean"] - expected["std"]).min())
    assert ax.get_xlabel() == "width" and ax.get_ylabel() == "redundancy (test)"
    assert out.figure.get_suptitle() == "Redundancy vs width"
    assert ax.get_xscale() == "linear" and out.notes == []


def test_one_line_per_hue_and_metric_on_a_symlog_time_axis(runs) -> None:
    table, made = runs
    recipe = Recipe.from_dict({"name": "t", "study": "training_time", "x": "epoch", "xscale": "symlog",
                               "hue": "model.width", "y": ["train/redundancy", "test/redundancy"]})
    out = render(table, recipe, LABELS)
    (ax,) = out.figure.axes
    lines = ax.get_lines()
    assert len(lines) == 2 * 2 and ax.get_xscale() == "symlog"
    for line in lines:
        assert list(line.get_xdata()) == [0, 1, 3, 10]                      # at: auto = every capture
    expected = seed_stats(made, "training_time", "test/redundancy", ["model.width", "epoch"])
    width_40_test = [ln for ln in lines if ln.get_color() == lines[2].get_color() and ln.get_linestyle() == "--"]
    assert np.allclose(width_40_test[0].get_ydata(), expected[expected["model.width"] == 40]["mean"])
    assert len({ln.get_color() for ln in lines}) == 2 and len({ln.get_linestyle() for ln in lines}) == 2
    legend = [t.get_text() for t in out.figure.legends[0].get_texts()]
    assert legend == ["width 10", "width 40", "redundancy (train)", "redundancy (test)", "band: ±1 std over 2 seeds"]
    assert len([c for c in ax.collections if isinstance(c, FillBetweenPolyCollection)]) == 4


def test_log_axis_leaves_out_epoch_zero_and_says_so(runs) -> None:
    table, _ = runs
    out = render(table, Recipe.from_dict({"name": "l", "study": "training_time", "x": "epoch", "xscale": "log",
                                          "y": "test/redundancy", "hue": "model.width"}))
    ax = out.figure.axes[0]
    assert ax.get_xscale() == "log"
    assert all(list(line.get_xdata()) == [1, 3, 10] for line in ax.get_lines())
    assert any("left out epoch = 0" in note for note in out.notes)


def test_panels_one_axes_per_metric(runs) -> None:
    table, _ = runs
    recipe = Recipe.from_dict({"name": "p", "study": "model_size", "x": "model.width", "hue": "seed",
                               "y": ["test/kmeans_acc", "test/knn_acc", "test/logreg_acc"], "y_layout": "panels"})
    out = render(table, recipe, {"test/knn_acc": "K-NN acc."})
    assert [ax.get_title() for ax in out.figure.axes] == ["test/kmeans_acc", "K-NN acc.", "test/logreg_acc"]
    assert all(len(ax.get_lines()) == 3 for ax in out.figure.axes)          # three seeds as hue
    assert not any(isinstance(c, PolyCollection) for ax in out.figure.axes for c in ax.collections)  # one run each


def test_a_single_seed_has_no_band_and_error_bars_on_request(runs) -> None:
    table, _ = runs
    single = render(table, Recipe.from_dict({"name": "s", "study": "single_seed", "x": "model.width",
                                             "y": "test/knn_acc"}))
    assert not single.figure.axes[0].collections and list(single.data["n"]) == [1, 1]
    bars = render(table, Recipe.from_dict({"name": "b", "study": "model_size", "x": "model.width",
                                           "y": "test/knn_acc", "errorbars": "bar"}))
    assert any(isinstance(c, ErrorbarContainer) for c in bars.figure.axes[0].containers)


def test_bars_over_layer_selections_in_the_given_order(runs) -> None:
    """Runs written before codes.selections (one run per codes.layers, rows without `selection`):
    the table's `selection` is their codes.layers, so the figure reads one field for both."""
    table, made = runs
    recipe = Recipe.from_dict({"name": "lw", "kind": "bar", "study": "layerwise", "x": "selection",
                               "y": ["train/redundancy", "test/redundancy"], "order": {"selection": ["..2", 1, 2]}})
    out = render(table, recipe, LABELS)
    ax = out.figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["..2", "1", "2"]
    containers = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(containers) == 2 and all(len(c) == 3 for c in containers)
    heights = [bar.get_height() for bar in containers[1]]                  # test redundancy
    expected = seed_stats(made, "layerwise", "test/redundancy", ["codes.layers"], epoch=2)
    expected = expected.set_index(expected["codes.layers"].astype(str))["mean"]
    assert np.allclose(heights, [expected["..2"], expected["1"], expected["2"]])
    assert any(isinstance(c, ErrorbarContainer) for c in ax.containers)


def test_pairs_match_each_model_with_and_without_the_regularizer(runs) -> None:
    table, made = runs
    recipe = Recipe.from_dict({
        "name": "reg", "kind": "pairs", "study": "regularization", "y": ["test/redundancy", "test/logreg_acc"],
        "y_layout": "panels", "pairs": [
            {"factor": "model.batch_norm", "without": False, "with": True, "label": "batch norm"},
            {"factor": "trainer.gradient_clip_val", "without": None, "with": 1.0, "label": "gradient clipping"},
            {"factor": "optimizer.weight_decay", "without": 0.0, "with": 0.01, "label": "weight decay"}]})
    out = render(table, recipe, LABELS)
    axes = out.figure.axes
    assert len(axes) == 2 * 2                                               # no weight-decay runs: left out
    assert any("weight decay" in note for note in out.notes)
    reg = made[(made["study"] == "regularization") & (made["epoch"] == 5)]
    base = reg[~reg["model.batch_norm"] & reg["trainer.gradient_clip_val"].isna()].set_index(["model.width", "seed"])
    bn = reg[reg["model.batch_norm"]].set_index(["model.width", "seed"])
    (points,) = axes[0].collections
    xy = points.get_offsets()
    assert len(xy) == 3 * 2                                                 # widths x seeds
    pairs = {(round(x, 9), round(y, 9)) for x, y in xy}
    assert pairs == {(round(base.loc[k, "test/redundancy"], 9), round(bn.loc[k, "test/redundancy"], 9))
                     for k in base.index}
    diagonal = axes[0].get_lines()[0]
    assert np.allclose(diagonal.get_xdata(), diagonal.get_ydata())
    assert axes[0].get_xlabel() == "without batch norm" and "with batch norm" in axes[0].get_ylabel()


def test_histograms_from_values_files_and_binned_counts(runs, tmp_path: Path) -> None:
    table, _ = runs
    out = render(table, Recipe.from_dict({"name": "h", "kind": "hist", "study": "diameter", "values": "test/diameters",
                                          "hue": "epoch", "at": [0, 10], "density": False, "xscale": "log"}))
    ax = out.figure.axes[0]
    assert ax.get_xscale() == "log" and list(out.data["runs"]) == [2, 2]
    assert len(ax.patches) == 2                                             # one filled histogram per epoch
    assert list(out.data["count"]) == [100, 100]                            # 2 runs x 50 values per epoch
    assert [t.get_text() for t in out.figure.legends[0].get_texts()] == ["epoch 0", "epoch 10"]

    binned = render(table, Recipe.from_dict({"name": "hb", "kind": "hist", "study": "diameter", "at": 10,
                                             "counts": "test/diameter_hist_counts",
                                             "edges": "test/diameter_hist_edges", "density": False}))
    assert list(binned.data["count"]) == [100]

    stored = table[table["study"] == "diameter"].copy()
    for i, run_dir in enumerate(stored["run_dir"]):
        np.save(Path(run_dir) / "d.npy", np.arange(1, 6) * (i + 1.0))
    stored["test/diameter_file"] = "d.npy"
    from_files = render(stored, Recipe.from_dict({"name": "hf", "kind": "hist", "values": "test/diameter_file",
                                                  "at": "last", "density": False}))
    assert list(from_files.data["count"]) == [10]
    with pytest.raises(Skip, match="not in the table"):
        render(table, Recipe.from_dict({"name": "x", "kind": "hist", "values": "test/nothing"}))


def test_table_rows_are_the_varying_settings_with_mean_and_std(runs) -> None:
    table, made = runs
    out = render(table, Recipe.from_dict({"name": "t1", "kind": "table", "study": "model_size",
                                          "y": ["test/net_acc", "test/knn_acc"]}), {"test/knn_acc": "K-NN"})
    expected = seed_stats(made, "model_size", "test/knn_acc", ["model.width"], epoch=10)
    lines = out.markdown.strip().splitlines()
    assert lines[0] == "| width | test/net_acc | K-NN | runs |"
    assert len(lines) == 2 + 3
    first = lines[2].split(" | ")
    assert first[2] == f"{expected['mean'][0]:.3f} ± {expected['std'][0]:.3f}" and lines[2].endswith("| 3 |")


def test_a_setting_that_varies_within_a_series_gets_its_own_panel(runs) -> None:
    """Points average over seeds only: data.train_size varies within the width series, so each
    sample size is a panel whose points are that size's runs alone."""
    table, made = runs
    out = render(table, Recipe.from_dict({"name": "m", "study": "mixed", "x": "model.width", "y": "test/knn_acc"}),
                 {"data.train_size": "sample size"})
    assert [ax.get_title() for ax in out.figure.axes] == ["sample size 100", "sample size 1000"]
    rows = made[(made["study"] == "mixed") & (made["epoch"] == 2)]
    for ax, size in zip(out.figure.axes, (100, 1000)):
        (line,) = ax.get_lines()
        expected = rows[rows["data.train_size"] == size].sort_values("model.width")["test/knn_acc"]
        assert np.allclose(line.get_ydata(), expected) and ax.get_ylabel() == "test/knn_acc"
    assert any("`data.train_size`" in note and "panel" in note for note in out.notes)
    assert not any("seed" in note for note in out.notes)


def test_too_many_mixed_settings_skip_the_figure_and_say_why(runs) -> None:
    table, _ = runs
    with pytest.raises(Skip, match=r"differ in `study` \(.*combinations, more than 6 panels"):
        # no study named: every study's runs of one width would be averaged into one point
        render(table, Recipe.from_dict({"name": "m", "x": "model.width", "y": "test/knn_acc"}))
    table2 = table.copy()
    with pytest.raises(Skip, match="pooling them would mix settings"):
        render(table2, Recipe.from_dict({"name": "h", "kind": "hist", "study": "mixed", "at": "all",
                                         "counts": "test/knn_acc", "edges": "test/knn_acc"}))


def test_tables_split_rows_by_settings_that_vary_between_runs(runs) -> None:
    table, made = runs
    out = render(table, Recipe.from_dict({"name": "t", "kind": "table", "study": "mixed", "rows": ["model.width"],
                                          "y": ["test/knn_acc"]}))
    body = out.markdown.strip().splitlines()[2:]
    assert len(body) == 4 and any("rows also split by `data.train_size`" in n for n in out.notes)


def test_the_band_is_labelled_with_its_seed_count(runs) -> None:
    table, _ = runs
    out = render(table, Recipe.from_dict({"name": "r", "study": "model_size", "x": "model.width",
                                          "y": "test/redundancy"}))
    texts = [t.get_text() for t in out.figure.legends[0].get_texts()]
    assert "band: ±1 std over 3 seeds" in texts
    bars = render(table, Recipe.from_dict({"name": "r", "study": "model_size", "x": "model.width",
                                           "y": "test/redundancy", "errorbars": "bar"}))
    assert "error bars: ±1 std over 3 seeds" in [t.get_text() for t in bars.figure.legends[0].get_texts()]
    single = render(table, Recipe.from_dict({"name": "s", "study": "single_seed", "x": "model.width",
                                             "y": "test/redundancy"}))
    assert not single.figure.legends   # one seed: no band, nothing to label


def test_log_time_axes_have_plain_number_ticks_and_every_panel_a_ylabel(runs) -> None:
    table, _ = runs
    out = render(table, Recipe.from_dict({"name": "t", "study": "training_time", "x": "epoch", "xscale": "symlog",
                                          "hue": "model.width", "y": ["test/knn_acc", "test/redundancy"],
                                          "y_layout": "panels"}), LABELS)
    out.figure.canvas.draw()
    for ax in out.figure.axes:
        assert ax.get_ylabel()
        ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert {"0", "1", "2", "5", "10"} <= set(ticks), ticks
        assert not any("^" in t for t in ticks)
    log = render(table, Recipe.from_dict({"name": "l", "study": "model_size", "x": "model.width", "xscale": "log",
                                          "y": "test/redundancy"}))
    log.figure.canvas.draw()
    (ax,) = log.figure.axes
    assert {"5", "10", "20", "50"} <= {t.get_text() for t in ax.get_xticklabels()}


def test_recipes_that_do_not_apply_are_skipped(runs) -> None:
    table, _ = runs
    with pytest.raises(Skip, match="study = cnn"):
        render(table, Recipe.from_dict({"name": "a", "study": "cnn", "x": "model.width", "y": "test/knn_acc"}))
    with pytest.raises(Skip, match="`model.arch`"):
        render(table, Recipe.from_dict({"name": "b", "x": "model.arch", "y": "test/knn_acc"}))
    with pytest.raises(Skip, match="none of"):
        render(table, Recipe.from_dict({"name": "c", "x": "model.width", "y": "test/diameter_mean"}))
    with pytest.raises(Skip, match="no captures at epoch 999"):
        render(table, Recipe.from_dict({"name": "d", "x": "model.width", "y": "test/knn_acc", "at": 999}))


def test_recipe_typos_are_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['hues'\]"):
        Recipe.from_dict({"name": "a", "x": "model.width", "y": "test/knn_acc", "hues": "seed"})
    with pytest.raises(ValueError, match="kind"):
        Recipe.from_dict({"name": "a", "kind": "pie", "y": "test/knn_acc"})
    with pytest.raises(ValueError, match="needs x and y"):
        Recipe.from_dict({"name": "a", "y": "test/knn_acc"})
    with pytest.raises(ValueError, match="xscale"):
        Recipe.from_dict({"name": "a", "x": "epoch", "y": "test/knn_acc", "xscale": "ln"})


def test_the_figure_renders_to_a_readable_png(runs, tmp_path: Path) -> None:
    table, _ = runs
    out = render(table, Recipe.from_dict({"name": "t", "study": "training_time", "x": "epoch", "xscale": "symlog",
                                          "hue": "model.width", "y": ["train/redundancy", "test/redundancy"]}), LABELS)
    out.figure.savefig(tmp_path / "t.png", dpi=80)
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the legend sits below the axes, not on them
    renderer = out.figure.canvas.get_renderer()
    legend_box = out.figure.legends[0].get_window_extent(renderer)
    axes_box = out.figure.axes[0].get_tightbbox(renderer)
    assert legend_box.y1 <= axes_box.y0 + 1
    assert json.dumps(out.data.to_dict(orient="list"))  # the numbers drawn are plain data
