"""codes.selections: every named layer selection of a capture scored from the same captured codes
(the layer-wise study trains one network per seed). Oracles: bit columns sliced by brute force,
and runs of the same seed that capture only that selection (codes.layers)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from activation_hash.codes.collect import SplitCodes
from activation_hash.codes.select import parse_selections, select, selection_specs
from activation_hash.run import run
from activation_hash.schema import ConfigError, validate
from tests.conftest import TINY, compose_config

DEEP = [*TINY, "model.depth=3", "model.width=9", "codes.epochs=[0,2]", "metrics.which=[redundancy,knn,logreg]"]
KEYS = ("test/redundancy", "train/redundancy", "test/knn_acc", "test/logreg_acc", "n_bits", "n_bits_used")


def test_select_takes_the_layers_bit_columns() -> None:
    rng = np.random.default_rng(0)
    units = [5, 9, 3, 8]                                   # code widths that cross byte boundaries
    bits = rng.integers(0, 2, size=(40, sum(units)), dtype=np.uint8)
    split = SplitCodes(np.packbits(bits, axis=1), np.arange(40), sum(units), 0.0, 1.0,
                       layer_names=["a", "b", "c", "d"], layer_units=units)
    starts = np.cumsum([0, *units])
    for layers in ([0], [1], [3], [1, 2], [0, 2, 3], [0, 1, 2, 3]):
        got = select(split, layers)
        expected = np.concatenate([bits[:, starts[i]:starts[i + 1]] for i in layers], axis=1)
        assert got.n_bits == expected.shape[1] and got.layer_units == [units[i] for i in layers]
        assert np.array_equal(got.codes, np.packbits(expected, axis=1)), layers
        assert got.layer_names == [split.layer_names[i] for i in layers]
    assert select(split, [0, 1, 2, 3]) is split            # the whole code is not copied
    chosen = parse_selections({"all": "all", "2": 2, "..2": "..2", "3..": "3..", "n": "name:c"}, split.layer_names)
    assert chosen == {"all": [0, 1, 2, 3], "2": [1], "..2": [0, 1], "3..": [2, 3], "n": [2]}


def test_selections_default_to_all_and_keep_their_order() -> None:
    assert selection_specs(compose_config([]).codes) == {"all": "all"}
    cfg = compose_config(["codes.selections={b:2,a:all}"])
    assert selection_specs(cfg.codes) == {"b": 2, "a": "all"}


@pytest.mark.parametrize("value", ["{a:0}", "{a:x}", "{}", "3"])
def test_a_bad_selection_is_refused_naming_the_key(value) -> None:
    with pytest.raises(ConfigError, match="codes.selections"):
        validate(compose_config([f"codes.selections={value}"]))


def test_each_selection_scores_as_a_run_that_captures_only_it(tmp_path) -> None:
    """One network (one seed) scored for three selections = three runs of that seed with codes.layers."""
    cfg = compose_config([*DEEP, "codes.selections={all:all,l2:2,from2:'2..',ends:[1,3]}"], output_dir=tmp_path / "sel")
    result = run(cfg)
    out = Path(cfg.output_dir)
    rows = [json.loads(line) for line in (out / "encoding.jsonl").read_text().splitlines()]
    names = ["all", "l2", "from2", "ends"]
    assert [(r["epoch"], r["selection"], r["split"]) for r in rows] == \
        [(e, n, s) for e in (0, 2) for n in names for s in ("train", "test")]
    for name, layers in {"all": "all", "l2": "2", "from2": "2..", "ends": "[1,3]"}.items():
        alone = run(compose_config([*DEEP, f"codes.layers={layers}"], output_dir=tmp_path / name))
        mine = {r["split"]: r for r in rows if r["selection"] == name and r["epoch"] == 2}
        theirs = [json.loads(line) for line in (Path(alone["run_dir"]) / "encoding.jsonl").read_text().splitlines()]
        theirs = {r["split"]: r for r in theirs if r["epoch"] == 2}
        for split in ("train", "test"):
            for key in KEYS:
                if key in theirs[split]:
                    assert mine[split][key] == pytest.approx(theirs[split][key]), (name, split, key)
        assert result["selections"][name]["test/knn_acc"] == pytest.approx(alone["test/knn_acc"])
    assert result["test/knn_acc"] == result["selections"]["all"]["test/knn_acc"]   # the primary selection
    assert [r["n_bits"] for r in rows if r["epoch"] == 2 and r["split"] == "test"] == [27, 9, 18, 18]
    with open(out / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert {"test/knn_acc", "l2/test/knn_acc", "from2/test/redundancy", "ends/test/logreg_acc"} <= set(header)


def test_collect_gives_a_row_per_selection_and_reads_old_rows(tmp_path) -> None:
    from activation_hash.analysis.collect import collect_runs
    from tests.test_analysis_collect import make_run
    make_run(tmp_path / "old_all", epochs=(0, 2))
    make_run(tmp_path / "old_l3", epochs=(0, 2), settings={"codes.layers": 3})
    new = tmp_path / "new"
    make_run(new, epochs=(0, 2))
    rows = [json.loads(line) for line in (new / "encoding.jsonl").read_text().splitlines()]
    lines = [{**r, "selection": name, "test/redundancy": r.get("test/redundancy", 0) + i}
             for r in rows for i, name in enumerate(["all", "..2"])]
    (new / "encoding.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    table = collect_runs([tmp_path])
    got = {(Path(d).name, e, s) for d, e, s in zip(table["run_dir"], table["epoch"], table["selection"])}
    assert got == {(run, e, s) for run, s in [("old_all", "all"), ("old_l3", "3"), ("new", "all"), ("new", "..2")]
                   for e in (0, 2)}
    new_rows = table[table["run_dir"] == str(new)].set_index(["epoch", "selection"])
    assert new_rows.loc[(2, "..2"), "test/redundancy"] == pytest.approx(new_rows.loc[(2, "all"), "test/redundancy"] + 1)
    assert new_rows.loc[(2, "..2"), "test/knn_acc"] == new_rows.loc[(2, "all"), "test/knn_acc"]  # train+test merged


def test_a_selection_outside_the_captured_layers_fails_before_training(tmp_path) -> None:
    cfg = compose_config([*DEEP, "codes.layers=..2", "codes.selections={ok:2,bad:3}"], output_dir=tmp_path / "run")
    with pytest.raises(ValueError, match=r"codes.selections.bad=3 names layer\(s\) \[3\] outside 1..2"):
        run(cfg)
    assert not (tmp_path / "run" / "encoding.jsonl").exists()
