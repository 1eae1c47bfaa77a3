"""Epoch conventions: trainer.max_epochs=0 analyses the initial network; dead networks are flagged."""

from __future__ import annotations

import json
from pathlib import Path

from activation_hash.run import run


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_max_epochs_zero_captures_the_initial_network(tiny_cfg) -> None:
    cfg = tiny_cfg("trainer.max_epochs=0", "codes.epochs=[0]")
    result = run(cfg)
    out = Path(cfg.output_dir)
    rows = _rows(out / "encoding.jsonl")
    assert [(r["epoch"], r["split"]) for r in rows] == [(0, "train"), (0, "test")]
    assert result["epochs_trained"] == 0 and 0 <= result["test/knn_acc"] <= 1
    assert json.loads((out / "result.json").read_text())["test/knn_acc"] == rows[1]["test/knn_acc"]


def test_dead_network_is_flagged_and_not_scored(tiny_cfg, capsys) -> None:
    cfg = tiny_cfg("optimizer.lr=1e6", "codes.verbose=true")
    run(cfg)
    rows = _rows(Path(cfg.output_dir) / "encoding.jsonl")
    assert [r["dead_network"] for r in rows if r["epoch"] == 0] == [False, False]
    dead = [r for r in rows if r["n_bits_used"] == 0]
    assert dead, "lr=1e6 kills every unit of this net within two epochs"
    for r in dead:
        split = r["split"]
        assert r["dead_network"] is True
        assert r[f"{split}/redundancy"] is None and r[f"{split}/kmeans_acc"] is None
        assert isinstance(r[f"{split}/net_acc"], float) and r[f"{split}/n"] > 0
    assert dead[-1]["test/knn_acc"] is None
    assert "dead network" in capsys.readouterr().out
