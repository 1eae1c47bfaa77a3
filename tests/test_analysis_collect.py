"""Collecting run directories into the table, on fabricated runs that follow the run-dir contract
(config.yaml, encoding.jsonl, meta.json, result.json last). `make_run` / `make_sweep` are used by
the other analysis tests too."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from activation_hash.analysis.__main__ import main
from activation_hash.analysis.collect import collect_runs, find_run_dirs, load_table, save_table

TRAIN_METRICS = ("redundancy", "kmeans_acc", "kmeans_hungarian_acc", "net_acc", "net_loss")
TEST_METRICS = ("redundancy", "kmeans_acc", "kmeans_hungarian_acc", "knn_acc", "logreg_acc", "net_acc", "net_loss")


def fake_metrics(settings: Mapping[str, Any], epoch: int) -> dict[str, float]:
    """Plausible trends: redundancy falls and accuracy rises with width, training and samples."""
    width, samples = settings["model.width"], settings["data.train_size"] or 60000
    rng = np.random.default_rng([settings["seed"], int(width), epoch, int(samples)])
    quality = ((1 - np.exp(-width / 15)) * (0.4 + 0.6 * (1 - np.exp(-(epoch + 0.5) / 4)))
               * (0.5 + 0.5 * (1 - np.exp(-samples / 1000))) * (1 - 0.5 * settings["data.label_noise"]))
    if settings["model.batch_norm"]:
        quality = quality * 0.97
    out = {}
    for split in ("train", "test"):
        noise = rng.normal(0, 0.01, size=4)
        out[f"{split}/redundancy"] = float(np.clip((1 - quality) ** 3 * (1 + 5 * noise[0]), 0, 1))
        out[f"{split}/kmeans_acc"] = float(np.clip(0.2 + 0.5 * quality + noise[1], 0, 1))
        out[f"{split}/kmeans_hungarian_acc"] = out[f"{split}/kmeans_acc"] - 0.02
        out[f"{split}/net_acc"] = float(np.clip(0.1 + 0.88 * quality + noise[2], 0, 1))
        out[f"{split}/net_loss"] = float(2.3 * (1 - quality) + 0.05)
        out[f"{split}/n"] = int(min(samples, 1000)) if split == "train" else 500
    out["test/knn_acc"] = float(np.clip(0.1 + 0.85 * quality + rng.normal(0, 0.01), 0, 1))
    out["test/logreg_acc"] = float(np.clip(0.1 + 0.82 * quality + rng.normal(0, 0.01), 0, 1))
    out["test/knn_vote_ties"] = 0
    out["test/knn_boundary_ties"] = 0
    return out


def _set(config: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        config = config.setdefault(key, {})
    config[leaf] = value


def make_run(run: Path, *, seed: int = 0, study: str | None = "model_size", epochs: Sequence[int] = (0, 5, 10),
             finished: bool = True, settings: Mapping[str, Any] | None = None,
             extra: Any = None, meta: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Write one run directory; returns its captures as flat dicts (settings + epoch + metrics).

    `settings` are dotted config keys over the defaults below; `extra(settings, epoch)` may add
    more metrics to the test row (e.g. diameter histograms)."""
    config: dict[str, Any] = {
        "seed": seed, "study": study, "tags": [], "output_dir": str(run), "output_root": "outputs",
        "skip_finished": True, "profile": {"name": "smoke"},
        "data": {"_target_": "activation_hash.data.InMemoryDataModule", "name": "mnist", "root": "data",
                 "train_size": 1000, "test_size": 500, "label_noise": 0.0, "random_inputs": "none",
                 "val_fraction": 0.2, "batch_size": 128, "seed": seed},
        "model": {"_target_": "activation_hash.models.mlp.MLP", "_partial_": True, "depth": 1, "width": 50,
                  "split_width": False, "widths": None, "batch_norm": False},
        "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.001, "betas": [0.9, 0.999],
                      "weight_decay": 0.0},
        "scheduler": None,
        "trainer": {"_target_": "pytorch_lightning.Trainer", "max_epochs": max(epochs), "gradient_clip_val": None,
                    "accelerator": "cpu", "devices": 1},
        "codes": {"epochs": list(epochs), "layers": "all", "save": False},
        "metrics": {"which": ["redundancy", "kmeans", "knn", "logreg"], "knn_k": 9},
        "logger": {"csv": {"_target_": "pytorch_lightning.loggers.CSVLogger", "save_dir": str(run)}},
    }
    for key, value in (settings or {}).items():
        _set(config, key, value)
    flat_settings = {"seed": seed, "model.width": config["model"]["width"],
                     "data.train_size": config["data"]["train_size"],
                     "data.label_noise": config["data"]["label_noise"],
                     "model.batch_norm": config["model"]["batch_norm"], **(settings or {})}
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run / ".hydra").mkdir(exist_ok=True)
    (run / ".hydra" / "config.yaml").write_text("seed: ${oc.env:NOPE}\n")  # Hydra's unresolved copy
    (run / "meta.json").write_text(json.dumps({"git_revision": "abc123", "host": "test", **(meta or {})}))
    records, lines = [], []
    for epoch in epochs:
        metrics = fake_metrics(flat_settings, epoch)
        if extra is not None:
            metrics.update(extra(flat_settings, epoch))
        common = {"epoch": epoch, "step": epoch * 10, "reason": "scheduled", "n_bits": 64, "n_bits_used": 60,
                  "capture_seconds": 0.1}
        for split in ("train", "test"):
            row = {**common, "split": split, **{k: v for k, v in metrics.items() if k.startswith(f"{split}/")}}
            lines.append(json.dumps(row, sort_keys=True))
        records.append({"run_dir": str(run), "study": study, **flat_settings, "epoch": epoch, **metrics})
    (run / "encoding.jsonl").write_text("".join(line + "\n" for line in lines))
    if finished:
        (run / "result.json").write_text(json.dumps({"epochs_trained": max(epochs), "train_seconds": 1.5}))
    return records


def make_sweep(root: Path, grid: Mapping[str, Sequence[Any]], **kwargs: Any) -> pd.DataFrame:
    """A Hydra-like multirun directory, one job per grid point (`seed` may be a grid key)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "multirun.yaml").write_text("hydra: {mode: MULTIRUN}\n")
    records = []
    common = kwargs.pop("settings", {})
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values))
        seed = point.pop("seed", 0)
        name = ",".join(f"{k}={v}" for k, v in {**point, "seed": seed}.items())
        records += make_run(root / name, seed=seed, settings={**common, **point}, **kwargs)
    return pd.DataFrame(records)


def test_collects_one_row_per_run_and_capture_with_train_and_test_merged(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "multirun" / "2025-01-01", {"model.width": [10, 40], "seed": [0, 1]},
                       epochs=(0, 3))
    single = make_run(tmp_path / "runs" / "one", seed=7, epochs=(0, 1, 2), finished=False)
    table = collect_runs([tmp_path / "multirun", tmp_path / "runs" / "one"])

    assert len(table) == len(sweep) + len(single) == 4 * 2 + 3
    assert table["run_dir"].nunique() == 5
    assert {"data.train_size", "model.width", "optimizer.lr", "trainer.max_epochs", "profile.name"} <= set(table)
    assert table["optimizer.betas"].iloc[0] == "[0.9, 0.999]"          # lists as JSON text
    assert "split" not in table and "seed" in table
    merged = table.dropna(subset=["train/redundancy", "test/knn_acc", "test/logreg_acc"])
    assert len(merged) == len(table)                                    # one row carries both splits
    assert table.groupby("run_dir")["finished"].first().sum() == 4
    assert set(table["git_revision"]) == {"abc123"}
    row = table[(table["seed"] == 7) & (table["epoch"] == 2)].iloc[0]
    expected = single[2]
    assert row["test/knn_acc"] == pytest.approx(expected["test/knn_acc"])
    assert row["train/redundancy"] == pytest.approx(expected["train/redundancy"])
    assert not row["finished"]


def test_hydra_copies_and_non_runs_are_ignored(tmp_path: Path) -> None:
    make_run(tmp_path / "a")
    (tmp_path / "wandb" / "run-1" / "files").mkdir(parents=True)
    (tmp_path / "wandb" / "run-1" / "files" / "config.yaml").write_text("x: 1\n")
    assert find_run_dirs([tmp_path]) == [tmp_path / "a"]


def test_unreadable_runs_are_skipped_with_a_warning_naming_them(tmp_path: Path, caplog) -> None:
    make_run(tmp_path / "good")
    make_run(tmp_path / "bad_config")
    (tmp_path / "bad_config" / "config.yaml").write_text("seed: [unclosed\n")
    make_run(tmp_path / "bad_jsonl")
    with open(tmp_path / "bad_jsonl" / "encoding.jsonl", "a") as f:
        f.write('{"epoch": 11, "split": "te')
    with caplog.at_level(logging.WARNING):
        table = collect_runs([tmp_path])
    assert set(table["run_dir"]) == {str(tmp_path / "good")}
    assert {Path(d).name for d, _ in table.attrs["skipped"]} == {"bad_config", "bad_jsonl"}
    assert "bad_config" in caplog.text and "bad_jsonl" in caplog.text


def test_a_run_without_captures_is_one_flagged_row(tmp_path: Path) -> None:
    make_run(tmp_path / "done")
    make_run(tmp_path / "crashed", finished=False)
    (tmp_path / "crashed" / "encoding.jsonl").unlink()
    table = collect_runs([tmp_path])
    crashed = table[table["run_dir"] == str(tmp_path / "crashed")]
    assert len(crashed) == 1 and pd.isna(crashed["epoch"].iloc[0]) and not crashed["finished"].iloc[0]


def test_csv_round_trip_and_cli(tmp_path: Path, capsys) -> None:
    make_sweep(tmp_path / "sweep", {"model.width": [10, 20], "seed": [0, 1]})
    out = tmp_path / "table.csv"
    assert main(["collect", str(tmp_path / "sweep"), "--out", str(out)]) == 0
    assert "4 runs, 12 rows" in capsys.readouterr().out
    loaded = load_table(out)
    direct = collect_runs([tmp_path / "sweep"])
    assert list(loaded.columns) == list(direct.columns)
    assert np.allclose(loaded["test/redundancy"], direct["test/redundancy"])
    assert loaded["finished"].dtype == bool and loaded["model.width"].dtype.kind == "i"
    save_table(loaded, tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_text() == out.read_text()
    assert not list(tmp_path.glob(".*.tmp"))
