"""The report's DLGN section, from a small synthetic collected table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from activation_hash.analysis.dlgn_figures import family, last_table, tidy
from activation_hash.analysis.report import build_report

MODELS = [("activation_hash.models.mlp.MLP", None), ("activation_hash.models.dlgn.DLGN", "dlgn"),
          ("activation_hash.models.dlgn.DLGN", "dlgn_sf")]


def _table(tmp_path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for (target, variant), width, seed in ((m, w, s) for m in MODELS for w in (10, 40) for s in (0, 1)):
        run_dir = tmp_path / "runs" / f"{variant or 'mlp'}-{width}-{seed}"
        if variant is not None:
            (run_dir / "halfspaces").mkdir(parents=True)
            (run_dir / "halfspaces" / "epoch=0002.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes([width, seed]))
        for epoch in (0, 1, 2):
            row = {"run_dir": str(run_dir), "finished": True, "git_revision": "abc", "study": "dlgn_vs_relu",
                   "seed": seed, "epoch": epoch, "data.name": "mnist", "model._target_": target,
                   "model.variant": variant, "model.width": width, "model.depth": 2,
                   **{m: float(rng.random()) for m in ("test/redundancy", "test/knn_acc", "test/logreg_acc",
                                                        "test/net_acc")}}
            if variant is not None:
                row.update({f"test/gate_{n}_l{l}": float(rng.random())
                            for n in ("cluster_score", "abs_cos_mean", "abs_cos_p90") for l in (1, 2)})
            rows.append(row)
    return pd.DataFrame(rows)


def test_family_names():
    assert [family(t, v) for t, v in MODELS] == ["ReLU MLP", "DLGN", "DLGN-SF"]
    assert family("activation_hash.models.dlgn.DLGN", "dgn") == "DGN"


def test_section_draws_the_comparison_from_the_table(tmp_path: Path):
    table = _table(tmp_path)
    table.to_csv(tmp_path / "table.csv", index=False)
    report = build_report(tmp_path / "report", table_path=tmp_path / "table.csv")
    out = report.parent
    text = report.read_text()
    assert "## DLGN vs ReLU MLP" in text and "no figure recipe names" not in text
    for name in ("vs_width", "vs_epoch", "gates"):
        assert (out / f"dlgn_vs_relu_mnist_{name}.png").read_bytes()[:4] == b"\x89PNG"
    drawn = pd.read_csv(out / "dlgn_vs_relu_mnist_vs_width.csv")
    last = table[table["epoch"] == 2]
    for (target, variant), width in ((m, w) for m in MODELS for w in (10, 40)):
        runs = last[(last["model._target_"] == target) & (last["model.width"] == width)
                    & (last["model.variant"].isna() if variant is None else last["model.variant"] == variant)]
        got = drawn[(drawn["family"] == family(target, variant)) & (drawn["model.width"] == width)]
        assert len(runs) == 2 and len(got) == 1
        for metric in ("test/redundancy", "test/knn_acc", "test/logreg_acc", "test/net_acc"):
            assert got[f"{metric}_mean"].item() == pytest.approx(runs[metric].mean())
            assert got[f"{metric}_std"].item() == pytest.approx(runs[metric].std(ddof=1))
    gates = pd.read_csv(out / "dlgn_vs_relu_mnist_gates.csv")
    assert set(gates["family"]) == {"DLGN", "DLGN-SF"} and set(gates["model.width"]) == {40}
    dlgn = table[(table["model.variant"] == "dlgn") & (table["model.width"] == 40) & (table["epoch"] == 1)]
    row = gates[(gates["family"] == "DLGN") & (gates["epoch"] == 1)]
    assert row["test/gate_cluster_score_l2"].item() == pytest.approx(dlgn["test/gate_cluster_score_l2"].mean())
    # the largest width's lowest-seed half-space picture of each DLGN family, copied byte for byte
    assert (out / "dlgn_vs_relu_mnist_halfspaces_dlgn_sf.png").read_bytes().endswith(bytes([40, 0]))
    assert "dlgn_vs_relu_mnist_halfspaces_dlgn.png" in text


def test_section_is_absent_without_dlgn_runs(tmp_path: Path):
    table = _table(tmp_path)
    table = table[table["model.variant"].isna()]
    table.to_csv(tmp_path / "table.csv", index=False)
    report = build_report(tmp_path / "report", table_path=tmp_path / "table.csv")
    assert "## DLGN vs ReLU MLP" not in report.read_text()
    assert not list(report.parent.glob("dlgn_*"))


def test_last_table_lists_every_model_and_width(tmp_path: Path):
    md = last_table(tidy(_table(tmp_path)))
    assert md.count("| ReLU MLP |") == md.count("| DLGN |") == md.count("| DLGN-SF |") == 2


def test_baseline_family_names():
    assert family("activation_hash.models.dlgn.DLGN", "dlgn", True) == "DLGN (frozen gates)"
    assert family("activation_hash.models.dlgn.DLGN", "dlgn", False) == "DLGN"
    assert family("activation_hash.models.dlgn.DeepLinear", None) == "deep linear"


def test_gate_excess_subtracts_each_runs_initial_score() -> None:
    from activation_hash.analysis.dlgn_figures import gate_excess, gate_excess_table
    rows = []
    for frozen, seed in ((f, s) for f in (False, True) for s in (0, 1, 2)):
        for epoch in (0, 1, 4):
            grow = 0.0 if frozen else 0.1 * epoch / 4 * (1 + seed)
            rows.append({"run_dir": f"r{frozen}{seed}", "seed": seed, "epoch": epoch, "model.width": 20,
                         "model._target_": "activation_hash.models.dlgn.DLGN", "model.variant": "dlgn",
                         "model.freeze_gates": frozen, "test/gate_cluster_score_l1": 0.3 + 0.01 * seed,
                         "test/gate_cluster_score_l2": 0.46 + 0.01 * seed + grow})
    out = gate_excess(tidy(pd.DataFrame(rows))).set_index(["family", "layer"])
    learned, frozen = out.loc[("DLGN", 2)], out.loc[("DLGN (frozen gates)", 2)]
    assert learned["excess_mean"] == pytest.approx(np.mean([0.1, 0.2, 0.3]))
    assert learned["excess_std"] == pytest.approx(np.std([0.1, 0.2, 0.3], ddof=1))
    assert learned["init_mean"] == pytest.approx(0.47) and learned["runs"] == 3
    assert frozen["excess_mean"] == pytest.approx(0.0) and out.loc[("DLGN", 1), "excess_mean"] == pytest.approx(0.0)
    assert "| 20 | DLGN | 2 | 0.470 | 0.670 | +0.200 ± 0.100 | 3 |" in gate_excess_table(out.reset_index())
