"""Every JSON the project writes through activation_hash.atomic is strict: NaN and Infinity become
null with a reason, and Python's strict parser (and a strict reader's rejection of NaN) agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from activation_hash.atomic import NULL_REASONS, atomic_write_json, dumps_json, strict


def _strict_load(text: str) -> dict:
    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinity_become_null_with_a_reason(tmp_path: Path) -> None:
    row = {"test/binarity_separation": float("nan"), "test/binary_encoding_note": "no latent layer",
           "test/acc": np.float32(0.5), "deep": {"ratio": np.float64("inf"), "ok": 1}, "list": [1.0, float("-inf")]}
    path = atomic_write_json(tmp_path / "result.json", row)
    data = _strict_load(path.read_text())
    assert data["test/binarity_separation"] is None
    assert data[NULL_REASONS] == {"test/binarity_separation": "no latent layer"}
    assert data["test/acc"] == 0.5
    assert data["deep"] == {"ratio": None, "ok": 1, NULL_REASONS: {"ratio": "undefined (+Infinity)"}}
    assert data["list"] == [1.0, None]


def test_finite_values_are_untouched() -> None:
    row = {"a": 1, "b": 0.25, "c": "x", "d": [1, 2], "e": None, "f": True}
    assert strict(row) == row
    assert json.loads(dumps_json(row)) == row


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), np.float16("nan")])
def test_no_non_finite_token_can_be_written(value: float) -> None:
    data = _strict_load(dumps_json({"x": value, "y": [value]}))  # raises on a NaN/Infinity token
    assert data["x"] is None and data["y"] == [None] and "x" in data[NULL_REASONS]
    assert json.dumps(float(value)) in ("NaN", "Infinity", "-Infinity")  # what plain json.dumps would have written


def _run_tiny(tmp_path: Path, *overrides: str) -> Path:
    from activation_hash.run import run
    from tests.conftest import TINY, compose_config
    cfg = compose_config([*TINY, "logger=none", *overrides], output_dir=tmp_path / "run")
    run(cfg)
    return tmp_path / "run"


def test_a_run_with_undefined_metrics_writes_strict_result_json(tmp_path: Path) -> None:
    """binary-encoding metrics on an MLP (no latent layer): undefined, so null with the family's note."""
    out = _run_tiny(tmp_path, "metrics.which=[redundancy,binary_encoding]", "trainer.max_epochs=1",
                    "codes.epochs=[1]")
    result = _strict_load((out / "result.json").read_text())
    undefined = [k for k, v in result.items() if v is None and k.startswith("test/")]
    assert undefined, "the binary-encoding metrics of a network without a latent are undefined"
    assert set(undefined) <= set(result[NULL_REASONS])


def test_encoding_jsonl_is_strict_too(tmp_path: Path) -> None:
    out = _run_tiny(tmp_path, "metrics.which=[redundancy,binary_encoding]", "trainer.max_epochs=1",
                    "codes.epochs=[1]")
    for line in (out / "encoding.jsonl").read_text().splitlines():
        _strict_load(line)
