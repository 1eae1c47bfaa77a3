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
