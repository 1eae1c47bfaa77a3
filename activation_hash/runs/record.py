"""RunRecord: the one writer of a run directory's results, for a solo run and each member of a
batched group alike.

    record = RunRecord(cfg)                           # the run's config
    record.start(units, placement, resumed_at)        # config.yaml, meta.json (resumed: rows restored)
    record.attach(loggers)                            # its Lightning loggers (resumed: CSV rows restored)
    metrics = score(train, test, which, options, device)     # a capture's encoding metrics
    record.add(epoch, step, reason, train, test, metrics, seconds)   # its rows: encoding.jsonl,
                                                      # codes/epoch=NNNN.npz, loggers, console line
    scored = score_selections(train, test, chosen, which, options, device)   # codes.selections:
    record.add_selections(epoch, step, reason, train, test, scored, seconds)  # a row pair per selection
    record.finish(epochs_trained=..., ...)            # result.json, written last

`check_files(cfg, out, epochs_trained)` says whether the files of an unfinished run can be
continued from a checkpoint after `epochs_trained` epochs (None) or why not (one line naming the
file); `activation_hash.runs.claim` then moves the run aside and it starts over.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import activation_hash
from activation_hash.atomic import atomic_write, atomic_write_json, dumps_json
from activation_hash.codes.io import codes_path, load_codes, save_codes
from activation_hash.codes.schedule import capture_epochs
from activation_hash.codes.select import primary, select, selection_specs
from activation_hash.runs.paths import CODES, CONFIG, ENCODING, META, METRICS_CSV, RESULT

log = logging.getLogger(__name__)

SHORT = [("train/redundancy", "red.tr"), ("test/redundancy", "red.te"), ("test/kmeans_acc", "kmeans"),
         ("test/knn_acc", "knn"), ("test/logreg_acc", "logreg"), ("test/net_acc", "net")]


def used_config(cfg: DictConfig) -> DictConfig:
    """The config without the experiment's grid table (its values for this run are in the keys)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("grid", None)
    return OmegaConf.create(plain)


def summary(records: list[dict[str, Any]], selection: str | None = None) -> dict[str, Any]:
    """The metrics of the last capture (both splits merged) of `selection` (rows without one are
    `all`; None: the primary selection of the rows, `all` when present)."""
    if not records:
        return {}
    names = list(dict.fromkeys(r.get("selection", "all") for r in records))
    selection = selection or primary(names)
    records = [r for r in records if r.get("selection", "all") == selection]
    if not records:
        return {}
    last = max(r["epoch"] for r in records)
    merged: dict[str, Any] = {}
    for row in records:
        if row["epoch"] == last:
            merged.update({k: v for k, v in row.items() if k not in ("split", "reason", "capture_seconds")})
    return merged


def kept_when_dead(key: str) -> bool:
    """Metrics a dead network (no unit varies) still has: counts and the network's own accuracy/loss."""
    return "/" not in key or key.split("/", 1)[1] in ("n", "net_acc", "net_loss")


def score(train: Any, test: Any, which: Any, options: Mapping[str, Any], device: Any,
          extras: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A capture's encoding metrics from its train and test `SplitCodes`, plus the network's own
    accuracy and loss; for a dead network the code metrics are there, as null."""
    from activation_hash.metrics import compute_families
    from activation_hash.metrics.registry import CodeSet
    codes = CodeSet(train.codes, train.labels, test.codes, test.labels, train.n_bits, extras=dict(extras or {}),
                    layer_names=tuple(train.layer_names), layer_units=tuple(train.layer_units))
    return complete(compute_families(codes, which=which, options=dict(options), device=device), which, train, test)


def complete(metrics: dict[str, Any], which: Any, train: Any, test: Any) -> dict[str, Any]:
    """A capture's code metrics plus the network's own accuracy and loss on each split; for a
    dead network the code metrics of `which` are there, as null."""
    from activation_hash.metrics.registry import families
    metrics = {**metrics, "train/net_acc": train.acc, "train/net_loss": train.loss,
               "test/net_acc": test.acc, "test/net_loss": test.loss}
    if metrics.get("n_bits_used") == 0:  # every unit constant: no code to score
        names = {n for name in ([which] if isinstance(which, str) else which) if name in families()
                 for n in families()[name].names}
        metrics = {**dict.fromkeys(names), **{k: (v if kept_when_dead(k) else None) for k, v in metrics.items()}}
    return metrics


def score_selections(train: Any, test: Any, chosen: Mapping[str, Any] | None, which: Any,
                     options: Mapping[str, Any], device: Any,
                     extras: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """{selection name: its metrics} of one capture: each selection's layers (0-based indices into
    the captured layers, `codes.select.parse_selections`) scored from the same captured codes.
    None: the whole code, as `all`."""
    out: dict[str, dict[str, Any]] = {}
    for name, layers in (chosen or {"all": None}).items():
        tr, te = (train, test) if layers is None else (select(train, layers), select(test, layers))
        metrics = score(tr, te, which, options, device, extras)
        metrics.setdefault("n_bits", tr.n_bits)
        out[name] = metrics
    return out


def print_capture(epoch: int, metrics: Mapping[str, Any], seconds: float, dead: bool = False,
                  selection: str | None = None) -> None:
    from rich import get_console
    parts = [f"{short} {metrics[key]:.3f}" for key, short in SHORT if metrics.get(key) is not None]
    if dead:
        parts.insert(0, "[red]dead network: every unit is constant over train+test, no code to score[/]")
    label = f" [{selection}]" if selection else ""
    get_console().print(f"[bold]epoch {epoch:>3}{label}[/] " + " ".join(parts) + f" ({seconds:.1f}s)",
                        soft_wrap=True, highlight=False)


class RunRecord:
    """The results of one run directory: captures as rows, restored on resume, result.json last."""

    def __init__(self, cfg: DictConfig, loggers: list | None = None, clean_labels: Any = None):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.loggers = list(loggers or [])
        self.save = bool(cfg.codes.get("save", False))
        self.verbose = bool(cfg.codes.get("verbose", True))
        self.clean_labels = clean_labels
        self.selections = list(selection_specs(cfg.get("codes")))  # codes.selections' names, in order
        self.primary = primary(self.selections)
        self.rows: list[dict[str, Any]] = []
        self.done: set[int] = set()
        self.resumed_at: tuple[int, int] | None = None

    def start(self, units: list[tuple[str, int]], placement: Any, resumed_at: tuple[int, int] | None = None,
              **meta_extra: Any) -> None:
        """config.yaml and meta.json; when resumed after `resumed_at` (epochs, step), the captures
        and the loggers' CSV rows up to the checkpoint are read back (before a CSV writer exists)."""
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write(self.out / CONFIG, OmegaConf.to_yaml(used_config(self.cfg), resolve=True))
        atomic_write_json(self.out / META, {**meta(units, placement, self.out / META, resumed_at), **meta_extra})
        if resumed_at:
            self.rows = restore_captures(self.out, resumed_at[0])
            self.done = {r["epoch"] for r in self.rows}
        self.resumed_at = resumed_at
        if self.loggers:
            self.attach(self.loggers)

    def attach(self, loggers: list) -> None:
        """The run's Lightning loggers, built after start() (meta.json's first start names the W&B
        run); when resumed, their CSV rows up to the checkpoint are restored before a writer exists."""
        self.loggers = list(loggers)
        if self.resumed_at:
            from activation_hash.runs.checkpoint import restore_csv
            restore_csv(self.loggers, *self.resumed_at)

    def add(self, epoch: int, step: int, reason: str, train: Any, test: Any, metrics: dict[str, Any],
            seconds: float, selection: str | None = None) -> list[dict[str, Any]]:
        """One capture of one selection (the primary one by default): see add_selections."""
        return self.add_selections(epoch, step, reason, train, test, {selection or self.primary: metrics}, seconds)

    def add_selections(self, epoch: int, step: int, reason: str, train: Any, test: Any,
                       scored: Mapping[str, dict[str, Any]], seconds: float) -> list[dict[str, Any]]:
        """One capture: a train and a test row in encoding.jsonl per selection (`selection` names it;
        `scored` = score_selections' {name: metrics}), its codes file (the whole captured code, once),
        the loggers (the primary selection under the plain metric names, any other as NAME/metric),
        a console line per selection."""
        self.done.add(epoch)
        rows: list[dict[str, Any]] = []
        for name, metrics in scored.items():
            dead = metrics.get("n_bits_used") == 0
            common = {"epoch": epoch, "dead_network": dead, "step": step, "reason": reason, "selection": name,
                      "n_bits": metrics.get("n_bits", train.n_bits), "n_bits_used": metrics.get("n_bits_used"),
                      "capture_seconds": round(seconds, 3), "backend": metrics.get("backend")}
            if "code_passes" in metrics:  # codes.source=network: forward passes over the data it took
                common["code_passes"] = metrics["code_passes"]
            rows += [{**common, "split": split, **{k: v for k, v in metrics.items() if k.startswith(f"{split}/")}}
                     for split in ("train", "test")]
        self.rows.extend(rows)
        # rewrite the whole (small) file atomically so a crash never leaves a half line
        atomic_write(self.out / ENCODING, "".join(dumps_json(r, sort_keys=True) + "\n" for r in self.rows))
        if self.save:
            extra = {} if self.clean_labels is None else {"train_clean_labels": self.clean_labels}
            save_codes(codes_path(self.out / CODES, epoch), train_codes=train.codes, test_codes=test.codes,
                       train_labels=train.labels, test_labels=test.labels, n_bits=train.n_bits, epoch=epoch,
                       layer_names=train.layer_names, layer_units=train.layer_units, **extra)
        logged: dict[str, float] = {}
        for name, metrics in scored.items():
            prefix = "" if name == self.primary else f"{name}/"
            logged.update({prefix + k: float(v) for k, v in metrics.items()
                           if isinstance(v, (int, float)) and math.isfinite(v)})
        logged["epoch"] = float(epoch)
        self.log(logged, step)
        if self.verbose:
            for name, metrics in scored.items():
                print_capture(epoch, metrics, seconds, metrics.get("n_bits_used") == 0,
                              selection=name if len(scored) > 1 else None)
        return rows

    def log(self, values: dict[str, float], step: int) -> None:
        for logger in self.loggers:
            logger.log_metrics(values, step=step)

    def finish(self, **extra: Any) -> dict[str, Any]:
        """result.json (the last capture's metrics and `extra`), written last: the run is finished."""
        from activation_hash.summary import print_summary
        result = summary(self.rows, self.primary)
        if len(self.selections) > 1:  # every selection's last capture, beside the primary one's
            result["selections"] = {name: summary(self.rows, name) for name in self.selections}
        result.update(run_dir=str(self.out), **extra)
        atomic_write_json(self.out / RESULT, result)
        print_summary(self.rows)
        log.info("run directory: %s", self.out)
        return result


def read_rows(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """The rows of an encoding.jsonl and the (1-based) numbers of its lines that are not a JSON object."""
    rows, bad = [], []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad.append(i)
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int) and row.get("split") in ("train", "test"):
            rows.append(row)
        else:
            bad.append(i)
    return rows, bad


def restore_captures(out_dir: Path, epochs_trained: int) -> list[dict[str, Any]]:
    """For a run resumed after `epochs_trained` epochs: the rows of `out_dir/encoding.jsonl` up to
    there (the file rewritten to them) and no codes of later captures; returns the rows."""
    out_dir = Path(out_dir)
    jsonl = out_dir / ENCODING
    rows = read_rows(jsonl)[0] if jsonl.is_file() else []
    records = [r for r in rows if r["epoch"] <= epochs_trained]
    atomic_write(jsonl, "".join(dumps_json(r, sort_keys=True) + "\n" for r in records))
    codes = out_dir / CODES
    for path in codes.glob("epoch=*.npz") if codes.is_dir() else ():
        if int(path.stem.split("=")[1]) > epochs_trained:
            path.unlink()
    for path in codes.glob(".epoch=*.npy") if codes.is_dir() else ():  # memmaps of an unfinished capture
        path.unlink()
    return records


def check_files(cfg: DictConfig, out: Path, epochs_trained: int) -> str | None:
    """None when the files of an unfinished run can be continued after `epochs_trained` epochs (a
    checkpoint's), else why not, naming the file: every scheduled capture up to there has its two
    rows in encoding.jsonl (a cut-off line past the checkpoint is dropped on resume) and, with
    codes.save, a whole codes file; metrics.csv (with a CSV logger) holds numbers only and the
    train row of every epoch trained."""
    out = Path(out)
    jsonl = out / ENCODING
    scheduled = [e for e in capture_epochs(cfg.codes.epochs, int(cfg.trainer.max_epochs)) if e <= epochs_trained]
    if not jsonl.is_file():
        return f"{ENCODING} is missing" if scheduled else None
    try:
        rows, bad = read_rows(jsonl)
    except (OSError, UnicodeDecodeError) as err:
        return f"{ENCODING} cannot be read ({err})"
    have = {(r["epoch"], r["split"]) for r in rows}
    for epoch in scheduled:
        for split in ("train", "test"):
            if (epoch, split) not in have:
                why = f" (line(s) {', '.join(map(str, bad[:5]))} not JSON)" if bad else ""
                return f"{ENCODING} has no {split} row for the capture of epoch {epoch}{why}"
    if cfg.codes.get("save", False):
        for epoch in sorted({r["epoch"] for r in rows if r["epoch"] <= epochs_trained}):
            path = codes_path(out / CODES, epoch)
            try:
                data = load_codes(path)
            except Exception as err:  # missing, truncated, not an npz
                return f"{CODES}/{path.name} cannot be read ({type(err).__name__}: {err})"
            if len(data["train_codes"]) != len(data["train_labels"]) or len(data["test_codes"]) != len(data["test_labels"]):
                return f"{CODES}/{path.name} has codes and labels of different lengths"
    if _has_csv_logger(cfg):
        return _check_csv(out / METRICS_CSV, epochs_trained)
    return None


def _has_csv_logger(cfg: DictConfig) -> bool:
    specs = cfg.get("logger") or {}
    return any(spec and str(spec.get("_target_", "")).endswith("CSVLogger")
               and str(spec.get("save_dir")) == str(cfg.output_dir) for spec in specs.values())


def _check_csv(path: Path, epochs_trained: int) -> str | None:
    """metrics.csv holds numbers only, and a train row (epoch, train/loss) of every epoch trained."""
    if not path.is_file():
        return f"{METRICS_CSV} is missing" if epochs_trained > 0 else None
    trained: set[int] = set()
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "step" not in reader.fieldnames:
                return f"{METRICS_CSV} has no header with a step column"
            for i, row in enumerate(reader, 2):
                if None in row or any(v is None for v in row.values()):
                    return f"{METRICS_CSV} row {i} has a different number of fields than its header"
                values = {k: float(v) for k, v in row.items() if v != ""}
                if "train/loss" in values and "epoch" in values:
                    trained.add(int(values["epoch"]))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return f"{METRICS_CSV} cannot be read ({err})"
    except ValueError:
        return f"{METRICS_CSV} row {i} holds a value that is not a number"
    missing = [e for e in range(1, epochs_trained + 1) if e not in trained]
    if missing:
        return f"{METRICS_CSV} has no train/loss row for epoch(s) {', '.join(map(str, missing[:5]))}"
    return None


def meta(units: list[tuple[str, int]], placement: Any, previous: Path | None = None,
         resumed_at: tuple[int, int] | None = None) -> dict[str, Any]:
    """The run's provenance; a resumed run keeps its first start and lists each resumption."""
    earlier: dict[str, Any] = {}
    if resumed_at and previous and previous.is_file():
        try:
            earlier = json.loads(previous.read_text())
            if not isinstance(earlier, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as err:
            log.warning("%s cannot be read (%s); it is rebuilt without the earlier start and resumptions",
                        previous, err)
            earlier = {}
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    resumed = [*earlier.get("resumed", []), {"epoch": resumed_at[0], "at": now}] if resumed_at else []
    import pytorch_lightning as pl
    import torch
    return {
        "git_revision": _git_revision(),
        "activation_hash": activation_hash.__version__,
        "torch": torch.__version__, "pytorch_lightning": pl.__version__,
        "python": platform.python_version(), "host": socket.gethostname(),
        "command": sys.argv, "units_per_layer": [{"name": n, "units": u} for n, u in units],
        "started": earlier.get("started", now),
        **({"resumed": resumed} if resumed else {}),
        "placement": dataclasses.asdict(placement),
        "config_choices": config_choices(),
    }


def config_choices() -> dict[str, str]:
    """The config-group options the current Hydra job was composed from (e.g. model: tiny/vgg19), for
    the report; a batched group records each member's, taken while Hydra knew that job."""
    from hydra.core.hydra_config import HydraConfig
    if not HydraConfig.initialized():
        return {}
    return {k: str(v) for k, v in HydraConfig.get().runtime.choices.items() if v is not None and "hydra" not in k}


def _git_revision() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
