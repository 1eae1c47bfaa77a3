"""End to end on the embedded digits: train, capture, metrics, run-directory contract."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from activation_hash.codes import load_codes
from activation_hash.metrics import encoding_metrics
from activation_hash.run import run
from tests.conftest import TINY


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_writes_the_contract(tiny_cfg) -> None:
    cfg = tiny_cfg("codes.save=true")
    result = run(cfg)
    out = Path(cfg.output_dir)
    for name in ["config.yaml", "meta.json", "encoding.jsonl", "metrics.csv", "result.json"]:
        assert (out / name).is_file(), name
    rows = _rows(out / "encoding.jsonl")
    assert [(r["epoch"], r["split"]) for r in rows] == [(e, s) for e in (0, 1, 2) for s in ("train", "test")]
    test_rows = [r for r in rows if r["split"] == "test"]
    for r in test_rows:
        assert r["n_bits"] == 16 and 0 <= r["test/redundancy"] <= 1
        assert {"test/knn_acc", "test/logreg_acc", "test/kmeans_acc", "test/net_acc"} <= set(r)
    assert all(k.startswith("train/") for r in rows if r["split"] == "train" for k in r if "/" in k)

    # the CSV logger carries the same metric names
    with open(out / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert {"test/redundancy", "test/knn_acc", "train/redundancy", "epoch"} <= set(header)

    # saved codes re-evaluate to the logged metrics
    codes = load_codes(out / "codes" / "epoch=0002.npz")
    assert codes["n_bits"] == 16 and codes["train_codes"].dtype == np.uint8
    assert codes["train_codes"].shape == (300, 2) and codes["test_codes"].shape == (200, 2)
    again = encoding_metrics(codes["train_codes"], codes["train_labels"], codes["test_codes"],
                             codes["test_labels"], codes["n_bits"])
    last = test_rows[-1]
    for key in ["test/redundancy", "test/knn_acc", "test/logreg_acc"]:
        assert again[key] == pytest.approx(last[key]), key
    assert result["test/knn_acc"] == last["test/knn_acc"] and result["epochs_trained"] == 2
    assert json.loads((out / "result.json").read_text())["test/knn_acc"] == last["test/knn_acc"]


def test_same_config_same_metrics(tmp_path, tiny_cfg) -> None:
    from tests.conftest import compose_config
    a = run(compose_config(TINY, output_dir=tmp_path / "a"))
    b = run(compose_config(TINY, output_dir=tmp_path / "b"))
    keys = [k for k in a if k.startswith(("train/", "test/"))]
    assert keys and {k: a[k] for k in keys} == {k: b[k] for k in keys}


def test_training_helps_the_codes(tiny_cfg) -> None:
    result = run(tiny_cfg("trainer.max_epochs=8", "codes.epochs=[0,8]", "model.width=64", "data.train_size=null",
                          "data.test_size=null"))
    rows = _rows(Path(result["run_dir"]) / "encoding.jsonl")
    init, trained = [r for r in rows if r["split"] == "test"]
    # digits is tiny (1,150 training images of 8x8): the network learns, and its codes
    # categorize far above chance (0.1); MNIST-scale numbers are checked in test_mnist_run.
    assert trained["test/net_acc"] > 0.7 and trained["test/net_acc"] > init["test/net_acc"] + 0.5
    assert trained["test/knn_acc"] > 0.5 and trained["test/logreg_acc"] > 0.5


@pytest.mark.parametrize("override, message", [
    ("model.width=0", "model.width=0"),
    ("codes.epochs=[0,50]", "outside 0..trainer.max_epochs=2"),
    ("metrics.knn_k=1000", "metrics.knn_k=1000 is larger than the training set"),
    ("codes.layers=3", "codes.layers=3"),
    ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val=-1"),
])
def test_bad_values_fail_before_training(tiny_cfg, override: str, message: str) -> None:
    cfg = tiny_cfg(override)
    with pytest.raises(Exception) as info:
        run(cfg)
    assert message in str(info.value)
    assert not (Path(cfg.output_dir) / "encoding.jsonl").exists()


def test_nan_loss_stops_with_a_clear_message_and_keeps_captures(tiny_cfg) -> None:
    from activation_hash.models import NonFiniteLossError
    cfg = tiny_cfg("optimizer.lr=1e30", "trainer.max_epochs=4", "codes.epochs=[0,1,2,3,4]", "optimizer=sgd")
    with pytest.raises(NonFiniteLossError, match="training loss became nan") as info:
        run(cfg)
    assert "kept in" in str(info.value)
    rows = _rows(Path(cfg.output_dir) / "encoding.jsonl")
    assert rows and rows[0]["epoch"] == 0
    assert not (Path(cfg.output_dir) / "result.json").exists()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACTIVATION_HASH_OUTPUT": str(cwd / "outputs"), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "activation_hash", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_runs_and_prints_the_table(tmp_path: Path) -> None:
    out = _cli(*TINY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Encoding properties" in out.stdout and "k-NN" in out.stdout
    (run_dir,) = (tmp_path / "outputs" / "runs").glob("*/*")
    assert (run_dir / "encoding.jsonl").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()


def test_cli_bad_option_lists_choices(tmp_path: Path) -> None:
    out = _cli("model=transformer", cwd=tmp_path)
    assert out.returncode != 0
    assert "transformer" in out.stderr and "mlp" in out.stderr


def test_wandb_without_api_key_runs_offline_with_the_same_metric_names(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), ACTIVATION_HASH_OUTPUT=str(tmp_path / "outputs"))
    out = subprocess.run([sys.executable, "-m", "activation_hash", "logger=wandb", *TINY], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "runs").glob("*/*/wandb/offline-run-*")
    assert f"wandb sync {run_dir}" in out.stderr
    (history,) = run_dir.glob("run-*.wandb")
    assert history.stat().st_size > 0
    summary = [line for line in out.stdout.splitlines() + out.stderr.splitlines() if line.startswith("wandb:")]
    assert any("test/" in line for line in summary), "W&B's run summary lists the encoding metrics"
    assert (run_dir.parents[1] / "metrics.csv").is_file()


def test_every_logger_gets_the_jsonl_metric_names(tiny_cfg) -> None:
    """What W&B and CSV receive: one log_metrics call per capture with the JSONL's names."""
    from pytorch_lightning.loggers import Logger

    class Recorder(Logger):
        name, version, calls = "recorder", 0, []

        def log_metrics(self, metrics, step=None):
            self.calls.append(dict(metrics))

        def log_hyperparams(self, *args, **kwargs):
            pass

    cfg = tiny_cfg()
    recorder = Recorder()
    import activation_hash.run as run_module
    original = run_module.build_loggers
    run_module.build_loggers = lambda *a, **k: [recorder]
    try:
        run(cfg)
    finally:
        run_module.build_loggers = original
    captures = [c for c in recorder.calls if "test/redundancy" in c]
    rows = _rows(Path(cfg.output_dir) / "encoding.jsonl")
    jsonl_names = {k for r in rows for k in r if "/" in k}
    assert [c["epoch"] for c in captures] == [0, 1, 2]
    assert jsonl_names <= set(captures[-1]), jsonl_names - set(captures[-1])


def test_finished_run_is_reused_only_with_the_same_config(tiny_cfg, caplog) -> None:
    first = run(tiny_cfg())
    stamp = (Path(first["run_dir"]) / "result.json").stat().st_mtime_ns
    again = run(tiny_cfg("progress_bar=tqdm"))  # presentation only: reused
    assert again == first and (Path(first["run_dir"]) / "result.json").stat().st_mtime_ns == stamp
    changed = run(tiny_cfg("model.width=8"))     # same directory, different network: rerun
    assert changed["n_bits"] == 8 and (Path(first["run_dir"]) / "result.json").stat().st_mtime_ns != stamp
    assert "different config" in caplog.text


def _validation_epochs(cfg, monkeypatch) -> tuple[int, list[float]]:
    """How many validation epochs the run computed (counted on the LightningModule) and the epochs
    of its val/loss rows in metrics.csv."""
    from activation_hash.models.classifier import Classifier
    calls: list[int] = []
    original = Classifier.on_validation_epoch_end
    monkeypatch.setattr(Classifier, "on_validation_epoch_end", lambda self: (calls.append(1), original(self))[1])
    result = run(cfg)
    with open(Path(result["run_dir"]) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return len(calls), [float(r["epoch"]) for r in rows if r.get("val/loss")]


def test_a_default_run_computes_no_validation(tiny_cfg, monkeypatch) -> None:
    """Nothing reads val/* by default: no validation loop, no val rows; the training split is the same."""
    assert _validation_epochs(tiny_cfg(), monkeypatch) == (0, [])


@pytest.mark.parametrize("overrides, epochs", [
    (["callbacks=early_stopping", "callbacks.early_stopping.monitor=val/loss"], [1.0, 2.0]),
    (["trainer.check_val_every_n_epoch=2"], [2.0]),
    (["+trainer.limit_val_batches=1.0"], [1.0, 2.0]),
    (["+callbacks.count._target_=tests.user_targets.CountValidation"], [1.0, 2.0]),
], ids=["val early stopping", "check_val_every_n_epoch", "limit_val_batches", "user callback"])
def test_validation_runs_where_something_reads_it(tiny_cfg, monkeypatch, overrides, epochs) -> None:
    assert _validation_epochs(tiny_cfg(*overrides), monkeypatch) == (len(epochs), epochs)


def test_validation_readers_rule() -> None:
    from activation_hash.runs.validation import trainer_validation, validation_readers
    stop = {"_target_": "pytorch_lightning.callbacks.EarlyStopping", "monitor": "train/loss"}
    best = {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint", "monitor": "val/acc"}
    assert validation_readers({"trainer": {"check_val_every_n_epoch": None}, "callbacks": {"s": stop}}) == []
    assert validation_readers({"callbacks": {"s": {**stop, "monitor": "val/loss"}}}) == ["callbacks.s.monitor"]
    assert validation_readers({"callbacks": {"b": best}}) == ["callbacks.b.monitor"]
    assert validation_readers({"callbacks": {"b": {**best, "monitor": None}}}) == []
    assert validation_readers({"callbacks": {"u": {"_target_": "my.Callback"}}}) == ["callbacks.u"]
    assert validation_readers({"optimized_metric": "val/acc"}) == ["optimized_metric"]
    assert validation_readers({"optimized_metric": "test/knn_acc"}) == []
    assert validation_readers({"trainer": {"check_val_every_n_epoch": 3}}) == ["trainer.check_val_every_n_epoch"]
    assert validation_readers({"trainer": {"limit_val_batches": 0}, "callbacks": {"b": best}}) == []
    assert trainer_validation({"trainer": {}}) == {"check_val_every_n_epoch": 1, "limit_val_batches": 0}
    assert trainer_validation({"trainer": {"check_val_every_n_epoch": 3}}) == {}
    assert trainer_validation({"trainer": {}, "callbacks": {"b": best}}) == {"check_val_every_n_epoch": 1}
