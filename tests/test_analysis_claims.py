"""Claims decided on synthetic tables whose verdicts are known by construction."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from activation_hash.analysis.claims import (COLUMNS, VERDICTS, Claim, counts, decide, evaluate, evaluate_all,
                                             load_claims, measure, spearman)
from activation_hash.analysis.report import build_report, load_config, parse_config

WIDTHS = (3, 10, 40, 100)


def table(redundancy, seeds=(0, 1, 2), widths=WIDTHS, study="model_size", epochs=(0, 10), extra=None) -> pd.DataFrame:
    """One row per (seed, width, epoch); `redundancy(width, seed, epoch)` gives test/redundancy."""
    rows = []
    for seed in seeds:
        for w in widths:
            for e in epochs:
                rows.append({"run_dir": f"runs/{study}/w{w}_s{seed}", "finished": True, "study": study, "seed": seed,
                             "epoch": e, "model.width": w, "data.name": "mnist",
                             "test/redundancy": redundancy(w, seed, e), **(extra(w, seed, e) if extra else {})})
    return pd.DataFrame(rows)


def claim(check, study="model_size", **kw) -> Claim:
    return Claim(id="c", paper="002", source="Fig. 2a", statement="s", study=study, check=check, **kw)


FALLS = {"kind": "spearman", "x": "model.width", "y": "test/redundancy", "op": "<", "threshold": -0.8}


def test_a_falling_trend_holds_and_a_rising_one_fails() -> None:
    falling = table(lambda w, s, e: 1 / w + 0.001 * s)
    rising = table(lambda w, s, e: w / 100 + 0.001 * s)
    v = evaluate(claim(FALLS), falling)
    assert v.verdict == "holds" and v.measured == pytest.approx(-1.0) and v.n_seeds == 3
    assert v.spread == pytest.approx(0.0) and len(v.runs) == 12
    assert evaluate(claim(FALLS), rising).verdict == "fails"


def test_a_threshold_within_the_seed_spread_is_inconclusive() -> None:
    # seed means 0.7, 0.8, 0.9 around the threshold 0.8 at width 3
    t = table(lambda w, s, e: 0.7 + 0.1 * s)
    check = {"kind": "mean", "y": "test/redundancy", "where": {"model.width": 3}, "op": ">", "threshold": 0.78}
    v = evaluate(claim(check), t)
    assert v.verdict == "inconclusive" and v.measured == pytest.approx(0.8) and v.spread == pytest.approx(0.1)
    assert evaluate(claim({**check, "threshold": 0.5}), t).verdict == "holds"
    assert evaluate(claim({**check, "threshold": 0.95}), t).verdict == "fails"


def test_every_verdict_is_reachable() -> None:
    t = table(lambda w, s, e: 1 / w + 0.01 * s)
    flat = table(lambda w, s, e: 0.0)
    found = {evaluate(claim(FALLS), t).verdict, evaluate(claim(FALLS, study="diameter"), t).verdict,
             evaluate(claim(FALLS), flat).verdict,
             evaluate(claim({**FALLS, "op": ">", "threshold": 0.8}), t).verdict}
    assert found == set(VERDICTS)


def test_a_missing_study_metric_or_setting_is_not_run_with_the_command() -> None:
    t = table(lambda w, s, e: 0.5)
    missing_study = evaluate(claim(FALLS, study="random_data"), t)
    assert missing_study.verdict == "not run" and "random_data" in missing_study.reason
    assert missing_study.row()["command"] == "python -m activation_hash +experiment=random_data profile=cpu -m"
    assert evaluate(claim({**FALLS, "y": "test/knn_acc"}), t).verdict == "not run"
    assert evaluate(claim({**FALLS, "where": {"data.name": "cifar10"}}), t).verdict == "not run"
    cifar = claim(FALLS, data="cifar10")
    assert cifar.run_command() == "python -m activation_hash +experiment=model_size_cifar10 profile=paper -m"
    unfinished = t.assign(finished=False)
    assert evaluate(claim(FALLS), unfinished).verdict == "not run"


def test_one_seed_leaves_the_spread_undefined() -> None:
    t = table(lambda w, s, e: 1 / w, seeds=(0,))
    v = evaluate(claim(FALLS), t)
    assert v.verdict == "holds" and math.isnan(v.spread) and v.n_seeds == 1 and "spread undefined" in v.reason
    assert v.row()["spread"] is None
    # a comparison of two arms "by more than the seed spread" cannot be decided on one seed
    diff = {"kind": "diff", "op": ">", "threshold": 0.0,
            "a": {"kind": "mean", "y": "test/redundancy", "where": {"model.width": 3}},
            "b": {"kind": "mean", "y": "test/redundancy", "where": {"model.width": 100}}}
    assert evaluate(claim(diff), t).verdict == "inconclusive"
    assert evaluate(claim(diff), table(lambda w, s, e: 1 / w + 0.001 * s)).verdict == "holds"


def test_spearman_matches_scipy_and_is_undefined_on_constants() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 6, 9), rng.normal(size=9)
        assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert math.isnan(spearman(np.arange(5), np.zeros(5)))


def test_spearman_uses_seed_means_and_the_spread_of_per_seed_rhos() -> None:
    rng = np.random.default_rng(1)
    noise = {(w, s): rng.normal(scale=0.3) for w in WIDTHS for s in range(3)}
    t = table(lambda w, s, e: -np.log(w) + noise[w, s])
    m = measure(t[t["epoch"] == 10], "model_size", FALLS)
    means = t[t["epoch"] == 10].groupby("model.width")["test/redundancy"].mean()
    assert m.value == pytest.approx(spearmanr(means.index, means.to_numpy()).statistic)
    per_seed = [spearmanr(g["model.width"], g["test/redundancy"]).statistic
                for _, g in t[t["epoch"] == 10].groupby("seed")]
    assert m.spread == pytest.approx(np.std(per_seed, ddof=1))


def test_change_and_paired_diff_against_hand_computed_values() -> None:
    # diameter: real shrinks by 40%, random by 10% -> Hypothesis 1's "far regions change less" holds
    t = table(lambda w, s, e: 1.0, study="diameter",
              extra=lambda w, s, e: {"test/diameter_mean": 1.0 - 0.04 * e - 0.001 * s,
                                     "test/random_diameter_mean": 1.0 - 0.01 * e})
    change = {"kind": "change", "y": "test/diameter_mean", "relative": True, "op": "<", "threshold": 0.0}
    m = measure(t, "diameter", change)
    assert m.value == pytest.approx(np.mean([-0.4 / (1 - 0.001 * s) for s in range(3)]))
    hyp = {"kind": "diff", "op": ">", "threshold": 0.0,
           "a": {**change, "abs": True}, "b": {**change, "y": "test/random_diameter_mean", "abs": True}}
    v = evaluate(claim(hyp, study="diameter"), t)
    assert v.verdict == "holds" and v.measured == pytest.approx(m.value * -1 - 0.1, abs=1e-9)
    # the opposite data (random changes more) fails
    t2 = t.assign(**{"test/random_diameter_mean": 1.0 - 0.09 * t["epoch"]})
    assert evaluate(claim(hyp, study="diameter"), t2).verdict == "fails"


def test_a_diff_pairs_on_seed_and_settings() -> None:
    rows = []
    for seed in range(3):
        for w in (10, 40):
            for arm, shift in (("dlgn", 0.05), ("dlgn_frozen", 0.0)):
                rows.append({"run_dir": f"{arm}{w}{seed}", "finished": True, "study": "dlgn_vs_relu", "seed": seed,
                             "epoch": 4, "model.width": w, "model_name": arm,
                             "test/net_acc": 0.5 + w / 100 + shift + 0.001 * seed})
    t = pd.DataFrame(rows)
    check = {"kind": "diff", "op": ">", "threshold": 0.0, "pair_on": ["model.width"],
             "a": {"kind": "mean", "y": "test/net_acc", "where": {"model_name": "dlgn"}},
             "b": {"kind": "mean", "y": "test/net_acc", "where": {"model_name": "dlgn_frozen"}}}
    v = evaluate(claim(check, study="dlgn_vs_relu"), t)
    assert v.verdict == "holds" and v.measured == pytest.approx(0.05) and v.spread == pytest.approx(0.0, abs=1e-12)


def test_last_layer_columns_resolve_to_the_deepest_layer_present() -> None:
    t = table(lambda w, s, e: 0.0, study="dlgn_vs_relu",
              extra=lambda w, s, e: {"test/gate_cluster_score_l1": 0.3, "test/gate_cluster_score_l2": 0.4 + 0.01 * e,
                                     "test/gate_cluster_score_l3": None})
    check = {"kind": "change", "y": "test/gate_cluster_score_l{last}", "op": ">", "threshold": 0.0}
    assert measure(t, "dlgn_vs_relu", check).value == pytest.approx(0.1)


def test_decide_rules() -> None:
    assert decide(0.5, 0.1, "<", 0.8)[0] == "holds"
    assert decide(0.5, 0.4, "<", 0.8)[0] == "inconclusive"
    assert decide(0.9, math.nan, "<", 0.8)[0] == "fails"
    assert decide(math.nan, 0.1, "<", 0.8)[0] == "inconclusive"
    assert decide(0.5, math.nan, "<", 0.8, n_seeds=1, min_seeds=2)[0] == "inconclusive"


def test_the_registry_has_every_paper_and_its_entries_are_complete() -> None:
    claims = load_claims()
    assert len(claims) >= 25
    assert {c.paper for c in claims} == {"002", "003", "004"}
    figures = {r.name for r in parse_config(load_config())[0]}
    for c in claims:
        assert c.source and c.statement and c.study
        assert c.figure is None or c.figure in figures, c.id


def test_the_registry_rejects_bad_entries(tmp_path: Path) -> None:
    path = tmp_path / "claims.yaml"
    path.write_text("- {id: a, paper: '002', source: s, statement: t, study: x, check: {kind: mean, y: m, op: '<=', threshold: 1}}\n")
    with pytest.raises(ValueError, match="op"):
        load_claims(path)
    path.write_text("- {id: a, paper: '002', source: s, statement: t, study: x, check: {kind: median, y: m, op: '<', threshold: 1}}\n"
                    "- {id: a, paper: '002', source: s, statement: t, study: x, check: {kind: mean, y: m, op: '<', threshold: 1}}\n")
    with pytest.raises(ValueError, match="twice"):
        load_claims(path)


def test_an_empty_table_gives_not_run_for_every_claim() -> None:
    frame = evaluate_all(pd.DataFrame({"run_dir": [], "epoch": []}))
    assert list(frame.columns) == COLUMNS and (frame["verdict"] == "not run").all()
    assert frame["command"].str.startswith("python -m activation_hash +experiment=").all()
    assert counts(frame)["not run"] == len(load_claims())


def test_the_report_writes_claims_csv_and_links_a_failed_claims_figure(tmp_path: Path) -> None:
    # redundancy rising with width: the width claims on redundancy fail, and fig2a is drawn
    t = table(lambda w, s, e: w / 100 + 0.01 * s, extra=lambda w, s, e: {"train/redundancy": w / 100})
    t["git_revision"] = "abc"
    t.to_csv(tmp_path / "t.csv", index=False)
    report = build_report(tmp_path / "out", table_path=tmp_path / "t.csv")
    frame = pd.read_csv(tmp_path / "out" / "claims.csv")
    by_id = frame.set_index("id")["verdict"]
    assert by_id["width_test_redundancy_falls"] == "fails" and by_id["width_train_redundancy_falls"] == "fails"
    assert by_id["random_inputs_redundancy_above_08"] == "not run"
    text = report.read_text().split("## Claims")[1]
    assert "[figure](fig2a_model_size_mnist.png)" in text and (tmp_path / "out" / "fig2a_model_size_mnist.png").is_file()
    assert "Failing claims:" in text and "`width_test_redundancy_falls`" in text


def test_the_claims_command_prints_the_record_and_writes_claims_csv(tmp_path: Path, capsys) -> None:
    from activation_hash.analysis.__main__ import main
    table(lambda w, s, e: 1 / w + 0.001 * s).to_csv(tmp_path / "t.csv", index=False)
    assert main(["claims", "--table", str(tmp_path / "t.csv"), "--out", str(tmp_path / "c.csv")]) == 0
    text = capsys.readouterr().out
    assert "| width_test_redundancy_falls | 002 |" in text and "| holds | -1.000 ± 0.000 (3) | 12 runs |" in text
    assert "`python -m activation_hash +experiment=random_data profile=cpu -m`" in text
    assert len(pd.read_csv(tmp_path / "c.csv")) == len(load_claims())


def test_a_setting_named_none_selects_the_rows_written_none_null_or_empty() -> None:
    """`where: {data.random_inputs: none}` (YAML's string "none") selects rows whose column reads
    "none", "null" or is empty: the random_data claim once found no such rows in a real table."""
    from activation_hash.analysis.select import matches
    column = pd.Series(["eval", "none", None, "null", float("nan"), "eval"])
    assert matches(column, "none").tolist() == [False, True, True, True, True, False]
    assert matches(column, None).tolist() == [False, True, True, True, True, False]
    assert matches(column, "eval").tolist() == [True, False, False, False, False, True]
    assert matches(column, ["eval", "none"]).all()
