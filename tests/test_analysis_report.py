"""The report command end to end on fabricated sweeps, with the default recipes of conf/report/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from activation_hash.analysis.__main__ import main
from activation_hash.analysis.report import REPORT_CONF, build_report, load_config, parse_config
from tests.test_analysis_collect import make_run, make_sweep


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("outputs")
    make_sweep(root / "studies" / "model_size", {"model.width": [5, 20, 80], "seed": [0, 1]}, study="model_size",
               epochs=(0, 10))
    make_sweep(root / "studies" / "training_time", {"model.width": [10, 40], "seed": [0, 1]},
               study="training_time", epochs=(0, 1, 3, 10))
    for arm, settings in {"none": {}, "batch_norm": {"model.batch_norm": True}}.items():
        make_sweep(root / "studies" / "regularization" / arm, {"model.width": [10, 40], "seed": [0, 1]},
                   study="regularization", epochs=(0, 5), settings=settings)
    make_run(root / "runs" / "interrupted", study="model_size", finished=False)
    return root


def test_default_config_parses() -> None:
    recipes, rule, charts = parse_config(load_config())
    names = {r.name for r in recipes}
    assert {"fig2a_model_size_mnist", "fig3a_training_time_mnist", "fig6_regularization", "table1_cnn_mnist"} <= names
    assert rule.accuracy == "test/knn_acc" and rule.eps_r == 0.01 and len(charts) >= 2
    assert (REPORT_CONF / "default.yaml").is_file()


def test_report_embeds_every_figure_and_lists_what_was_skipped(sweeps: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["report", str(sweeps), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert {"fig2a_model_size_mnist.png", "fig3a_training_time_mnist.png", "fig6_regularization.png",
            "phase_width_epoch_mnist.png"} <= set(images)
    assert all((out / image).is_file() and (out / image).stat().st_size > 1000 for image in images)
    assert all((out / image).with_suffix(".csv").is_file() for image in images)
    assert (out / "table.csv").is_file()
    assert not list(out.glob(".*.tmp"))
    skipped = text.split("## Skipped")[1]
    assert "`fig4a_sample_size_mnist`: no rows with study = sample_size" in skipped
    assert "`table1_cnn_mnist`" in skipped and "`fig2d_diameter_hist_epochs`" in skipped
    settings = text.split("## Settings")[1].split("## Figures")[0]
    assert "runs: 19 (18 finished, 1 unfinished" in settings
    assert "seeds: 0, 1" in settings and "`abc123` (19 runs)" in settings and "profile.name: smoke" in settings
    assert "| training_time | 4 (4) | 0, 1 | 0, 1, 3, 10 | `model.width`: 10, 40 |" in settings
    assert "interrupted" in settings
    phase = text.split("## Activation hash phase chart")[1]
    assert "ε_r = 0.01" in phase and "ρ_u = 0.1" in phase and "δ_u = 0.1" in phase and "plateau P =" in phase


def test_report_from_a_table_with_overrides(sweeps: Path, tmp_path: Path) -> None:
    assert main(["collect", str(sweeps), "--out", str(tmp_path / "table.csv")]) == 0
    out = tmp_path / "again"
    assert main(["report", "--table", str(tmp_path / "table.csv"), "--out", str(out),
                 "--set", "phase.rule.eps_r=0.05", "--set", "include_unfinished=true"]) == 0
    text = (out / "report.md").read_text()
    assert "ε_r = 0.05" in text and "unfinished runs are drawn too" in text


def test_bad_settings_fail_with_a_message(sweeps: Path, tmp_path: Path, capsys) -> None:
    """Bad arguments are refused before anything is written: exit 2 and one `error:` line."""
    bad = [(["report", str(sweeps), "--out", str(tmp_path / "r"), "--set", "phase.rule.eps_r=0.5"], "eps_r < rho_u"),
           (["report", str(sweeps), "--out", str(tmp_path / "r"), "--config", "no_such_config"], "no_such_config"),
           (["report", "--out", str(tmp_path / "r")], "--table"),
           (["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r")], "no such directory"),
           (["report", str(sweeps), "--out", str(tmp_path / "r"), "--set", "phase.rule.eps_x=0.1"],
            "no such report setting; did you mean phase.rule.eps_r?")]  # nested keys are offered
    for argv, words in bad:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_a_partial_config_is_merged_over_the_default(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("phase: {rule: {accuracy: test/logreg_acc}}\nfigures: []\n")
    recipes, rule, charts = parse_config(load_config(tmp_path / "mine.yaml"))
    assert recipes == [] and rule.accuracy == "test/logreg_acc" and rule.eps_a == 0.02 and charts


def test_cnn_table_lists_only_models_that_ran(tmp_path: Path) -> None:
    """Models differ in which settings they have (VGG: depth, ResNet: base_width): the table
    must hold one row per model that ran, not every combination of those settings."""
    root = tmp_path / "cnn"
    make_run(root / "vgg", study="cnn", epochs=(0, 2),
             settings={"model._target_": "activation_hash.models.vgg.VGG", "model.depth": 19})
    make_run(root / "resnet", study="cnn", epochs=(0, 2),
             settings={"model._target_": "activation_hash.models.resnet.ResNet", "model.base_width": 8})
    assert main(["report", str(root), "--out", str(tmp_path / "report")]) in (0, None)
    table = (tmp_path / "report" / "table1_cnn_mnist.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 2 and all(line.rstrip().endswith("| 1 |") for line in rows)
    assert [line.split(" | ")[0] for line in rows] == ["| ResNet", "| VGG"]   # no Hydra choice: the class


def test_cnn_tables_name_models_as_the_paper_does(tmp_path: Path) -> None:
    root = tmp_path / "cnn"
    for choice in ("vgg19", "tiny/resnet20", "densenet"):
        make_run(root / choice.replace("/", "_"), study="cnn", epochs=(0, 2), meta={"config_choices": {"model": choice}},
                 settings={"model._target_": f"activation_hash.models.{choice}"})
    assert main(["report", str(root), "--out", str(tmp_path / "report")]) in (0, None)
    table = (tmp_path / "report" / "table1_cnn_mnist.md").read_text()
    names = [line.split(" | ")[0][2:] for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert sorted(names) == ["DenseNet", "ResNet-20 (tiny)", "VGG-19"]


def test_the_knn_section_defines_the_metric_and_lists_tie_dominated_grid_points(tmp_path: Path) -> None:
    """Narrow nets tie on most test points: the section lists them (seed means) and not the wide ones."""
    def ties(settings, epoch):
        affected = 0.9 if settings["model.width"] == 5 else 0.1 + 0.1 * settings["seed"]
        return {"test/knn_tie_affected": affected, "test/knn_acc_index": 0.6 + 0.01 * settings["seed"],
                "test/knn_boundary_ties": 400, "test/knn_vote_ties": 10}
    make_sweep(tmp_path / "ms", {"model.width": [5, 50], "seed": [0, 1]}, study="model_size", epochs=(0, 3),
               extra=ties)
    report = build_report(tmp_path / "report", [tmp_path / "ms"]).read_text()
    section = report[report.index("## K-NN accuracy and ties"):]
    section = section[:section.index("\n## ", 5)]
    assert "expected accuracy under uniformly random tie-breaking" in section
    assert "| model_size | 4 | 0.55 | 0.90 | 50% |" in section          # median of 0.9, 0.9, 0.1, 0.2
    listed = [line for line in section.splitlines() if line.startswith("| model_size | `model.width`")]
    assert len(listed) == 1 and listed[0].startswith("| model_size | `model.width` 5 | 0.90 |")
