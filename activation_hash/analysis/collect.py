"""Collect run directories into one tidy table: one row per run, capture epoch and layer selection.

    python -m activation_hash.analysis collect outputs/multirun/2025-01-01 --out table.csv

A run directory holds `config.yaml` and `encoding.jsonl` or `meta.json` (`result.json` appears
when the run finished); a sweep directory holds runs, possibly nested. Each row carries every
config value as a column with a dotted name (`data.train_size`, `model.width`; lists as JSON
text), the train and test metrics of that capture merged (`train/*`, `test/*`), the capture's
`epoch`, `selection` (the capture's layer selection, codes.selections: `all` unless a study names
others), `step`, `reason`, `n_bits`, ..., and `run_dir`, `finished`, `git_revision`,
`epochs_trained`, `train_seconds`, and `model_name` (the model's config option, e.g. `tiny/vgg19`,
from meta.json; else the class name). A run without any capture yet gives one row with an empty epoch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from activation_hash.atomic import atomic_write as write_atomic

log = logging.getLogger(__name__)

RUN_MARKERS = ("encoding.jsonl", "meta.json", "result.json")
LEADING = ["run_dir", "finished", "git_revision", "study", "seed"]
CAPTURE = ["epoch", "selection", "step", "reason", "n_bits", "n_bits_used", "capture_seconds"]


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories at or below `paths`, in sorted order (Hydra's own `.hydra/` copies skipped)."""
    found: set[Path] = set()
    for root in map(Path, paths):
        if not root.exists():
            log.warning("%s does not exist; skipped", root)
            continue
        for config in [root / "config.yaml", *root.rglob("*/config.yaml")]:
            run = config.parent
            if config.is_file() and ".hydra" not in run.parts and any((run / m).exists() for m in RUN_MARKERS):
                found.add(run)
    return sorted(found)


def collect_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The table of every run under `paths`. Unreadable runs are skipped with a warning naming
    them; the skipped directories and reasons are in `table.attrs["skipped"]`."""
    rows: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    for run in find_run_dirs(paths):
        try:
            rows.extend(read_run(run))
        except (OSError, ValueError, TypeError, yaml.YAMLError) as err:
            log.warning("skipped %s: %s", run, err)
            skipped.append((str(run), str(err)))
    table = pd.DataFrame(rows)
    if not table.empty:
        first = [c for c in LEADING + CAPTURE if c in table.columns]
        metrics = sorted(c for c in table.columns if "/" in c)
        config = [c for c in table.columns if c not in first and c not in metrics]
        table = table[first + config + metrics]
    table.attrs["skipped"] = skipped
    return table


def read_run(run: Path) -> list[dict[str, Any]]:
    """The rows of one run directory (raises on an unreadable config or JSONL line)."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    if not isinstance(config, dict):
        raise ValueError("config.yaml is not a mapping")
    meta = _read_json(run / "meta.json") if (run / "meta.json").exists() else {}
    result = _read_json(run / "result.json") if (run / "result.json").exists() else None
    common = {"run_dir": str(run), "finished": result is not None, "git_revision": meta.get("git_revision"),
              **flatten(config)}
    common["model_name"] = _model_name(meta, config)
    if result is not None:
        common.update(epochs_trained=result.get("epochs_trained"), train_seconds=result.get("train_seconds"))
    layers = (config.get("codes") or {}).get("layers", "all") if isinstance(config.get("codes"), Mapping) else "all"
    # rows written before codes.selections have no `selection`: their code is the codes.layers selection
    captures = _read_captures(run / "encoding.jsonl", "all" if layers in (None, "all") else str(layers))
    if not captures:
        return [common]
    return [{**common, **capture} for capture in captures]


def _model_name(meta: Mapping[str, Any], config: Mapping[str, Any]) -> str | None:
    """The model's config option (`vgg19`, `tiny/resnet20`, `mlp`) from meta.json, else its class."""
    choice = (meta.get("config_choices") or {}).get("model")
    if choice:
        return str(choice)
    target = (config.get("model") or {}).get("_target_") if isinstance(config.get("model"), Mapping) else None
    return str(target).rsplit(".", 1)[-1] if target else None


def _read_captures(path: Path, unnamed: str = "all") -> list[dict[str, Any]]:
    """One dict per epoch and layer selection: the train and test rows of that capture merged, split
    dropped; `selection` names the selection (codes.selections; a row written without one, before
    selections existed, gets `unnamed`: its run's codes.layers, `all` by default)."""
    if not path.exists():
        return []
    by_epoch: dict[tuple[int, str], dict[str, Any]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path.name} line {number}: {err}") from None
        if not isinstance(row, dict) or "epoch" not in row:
            raise ValueError(f"{path.name} line {number}: not a capture record (no epoch)")
        row.pop("split", None)
        row["selection"] = str(row.get("selection", unnamed))
        by_epoch.setdefault((int(row["epoch"]), row["selection"]), {}).update(flatten(row))
    return [by_epoch[k] for k in sorted(by_epoch, key=lambda k: k[0])]  # by epoch, selections in file order


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path.name}: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys; lists to JSON text so every cell is a scalar."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value, default=str)
        else:
            flat[name] = value
    return flat


def save_table(table: pd.DataFrame, path: str | Path) -> Path:
    return write_atomic(path, table.to_csv(index=False))


def load_table(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, low_memory=False)
