"""The report's retrieval section on a fabricated collected table."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from activation_hash.analysis.report import build_report


def _table(tmp_path: Path) -> Path:
    rows = []
    rng = np.random.default_rng(0)
    for width in (40, 100):
        for seed in (0, 1):
            for epoch in (0, 1, 3):
                row = {"run_dir": f"runs/w{width}s{seed}", "finished": True, "git_revision": "abc", "study": "retrieval",
                       "data.name": "mnist", "model.width": width, "seed": seed, "epoch": epoch,
                       "test/map": 0.2 + 0.1 * epoch, "test/retrieval_db_size": 69000}
                for method in ("neural_all", "lsh_pixels", "itq_pixels"):
                    for bits in (16, 32, 64):
                        row[f"test/map/{method}/{bits}"] = rng.uniform(0.1, 0.6)
                        row[f"test/pr_curve/{method}/{bits}/precision"] = json.dumps(list(np.linspace(1, 0.1, bits + 1)))
                        row[f"test/pr_curve/{method}/{bits}/recall"] = json.dumps(list(np.linspace(0, 1, bits + 1)))
                rows.append(row)
    path = tmp_path / "table.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_retrieval_section_draws_figures_and_the_published_table(tmp_path: Path) -> None:
    table = _table(tmp_path)
    report = build_report(tmp_path / "out", table_path=table).read_text()
    assert "## Retrieval" in report
    for name in ("retrieval_mnist_map_vs_bits", "retrieval_mnist_map_vs_epoch", "retrieval_mnist_pr"):
        assert (tmp_path / "out" / f"{name}.png").is_file(), name
        assert f"({name}.png)" in report
    drawn = pd.read_csv(tmp_path / "out" / "retrieval_mnist_map_vs_bits.csv")
    assert set(drawn["method"]) == {"neural_all", "lsh_pixels", "itq_pixels"}
    # each point is the mean over the two seeds of the runs' last capture
    src = pd.read_csv(table)
    last = src[(src.epoch == 3) & (src["model.width"] == 40)]["test/map/lsh_pixels/32"].mean()
    got = drawn[(drawn.method == "lsh_pixels") & (drawn.bits == 32) & (drawn["model.width"] == 40)]["map"].item()
    assert got == last
    md = (tmp_path / "out" / "retrieval_mnist_table.md").read_text()
    assert "| LSH (published) | as reported in the CNNH paper's tables" in md and "0.235" in md
    assert "DPSH" not in md  # a CIFAR-10 reference is not shown beside MNIST
    assert "Studies in the table that no figure recipe names" not in report


def test_retrieval_section_is_skipped_without_rows(tmp_path: Path) -> None:
    pd.DataFrame([{"run_dir": "r", "finished": True, "git_revision": "abc", "study": "model_size", "epoch": 1,
                   "model.width": 3, "test/redundancy": 0.1}]).to_csv(tmp_path / "t.csv", index=False)
    report = build_report(tmp_path / "out", table_path=tmp_path / "t.csv").read_text()
    assert "## Retrieval" not in report and "`retrieval`: no rows of study 'retrieval'" in report


def test_retrieval_figures_keep_legends_off_the_data_and_titles_apart(tmp_path: Path) -> None:
    """Each figure has one legend outside its axes (none drawn over the data) and a constrained
    layout, so the suptitle and the axes' titles do not overlap."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    from activation_hash.analysis.retrieval_figures import map_vs_bits, map_vs_epoch, pr_curves
    rows = pd.read_csv(_table(tmp_path))
    figures = [map_vs_bits(rows, "MNIST")[0], map_vs_epoch(rows, "MNIST")[0], pr_curves(rows, 32, "MNIST")[0]]
    for fig in figures:
        assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
        assert [ax.get_legend() for ax in fig.axes] == [None] * len(fig.axes) and len(fig.legends) == 1
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        legend = fig.legends[0].get_window_extent(renderer)
        for ax in fig.axes:
            assert not legend.overlaps(ax.get_window_extent(renderer)), "legend over an axes"
