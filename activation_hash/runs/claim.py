"""Claiming a run directory: one process per run directory, a clean directory for every new run,
and the ONE list of result-neutral keys (used by run reuse, run-dir names in conf/hydra/*.yaml and
grid selection).

    with claim(cfg, out) as previous:   # holds RUN_DIR/.lock (fcntl.flock) for the whole run
        if previous is not None:        # a finished run with the same config, or {"skipped": ...}
            return previous
        ...train into the empty directory...

`run_dir_lock: skip` (default) skips a directory another process holds, `wait` waits for it (and
then reuses its result when the config matches). A directory holding outputs of another config
is moved aside to `RUN_DIR.previous-<timestamp>/` first; the log names the keys that changed.
An unfinished run of the same config (no result.json) that left `checkpoints/last.ckpt` is kept
as it is (`resume: auto`, the default) when every file it would continue from is consistent with
the checkpoint (`record.check_files`): `checkpoint.resumable(cfg, out)` then names the checkpoint to resume
from. Otherwise one log line names the file and why, and the run is moved aside and starts over.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from activation_hash.runs.paths import CONFIG, GROUP_POINTER, RESULT

log = logging.getLogger(__name__)

# Keys (and whole subtrees) that do not change what a run computes.
NOT_RESULT_KEYS = (
    "progress_bar", "skip_finished", "run_dir_lock", "resume", "output_root", "output_dir", "optimized_metric",
    "tags", "logger", "grid", "hydra", "codes.verbose", "codes.memmap",
    # where the codes are read from, not what is computed from them (tests/test_gram_capture.py: the
    # same metrics); and a run finished before the key existed is not redone when it appears
    "codes.source",
    "data.root", "data.download", "data.eval_batch_size", "data.num_workers", "data.pin_memory",
    "data.mirrors", "data.checksums",
    "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.enable_progress_bar",
    "trainer.enable_model_summary", "trainer.enable_checkpointing", "trainer.log_every_n_steps",
)
# Override names left out of a sweep's run-directory name: the neutral keys plus the choices
# already in the study's directory (experiment, profile) and the launcher's.
RUN_DIR_EXCLUDED = ("experiment", "+experiment", "profile", "hydra/launcher", "hydra.launcher.n_jobs",
                    *(k for k in NOT_RESULT_KEYS if k not in ("grid", "hydra", "output_dir")))


def is_neutral(dotted: str) -> bool:
    """Whether a dotted config key (or table column) lies under a result-neutral key."""
    return any(dotted == k or dotted.startswith(k + ".") for k in NOT_RESULT_KEYS)


def comparable(cfg: DictConfig | dict) -> dict[str, Any]:
    """The config as flat {dotted key: value} without the result-neutral keys."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        elif not is_neutral(prefix[:-1]):
            flat[prefix[:-1]] = node
    walk(plain, "")
    return flat


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in old.keys() | new.keys() if old.get(k, "<absent>") != new.get(k, "<absent>"))


@contextlib.contextmanager
def claim(cfg: DictConfig, out: Path, can_resume: bool | str = True) -> Iterator[dict[str, Any] | None]:
    """Own `out` for the body; yield a result to return instead of running, or None to run.
    `can_resume=False` (a caller that always trains from epoch 0): an unfinished run is moved
    aside even when it left a checkpoint to resume from. `can_resume="group"` (a batched group):
    an unfinished run of the same config is kept when it was a member of a group that left a
    checkpoint (`GROUP_POINTER`), for the group to decide; any other is moved aside."""
    out.mkdir(parents=True, exist_ok=True)
    mode = cfg.get("run_dir_lock", "skip")
    with open(out / ".lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (fcntl.LOCK_NB if mode == "skip" else 0))
        except BlockingIOError:
            log.warning("%s is being run by another process; skipping it here (run_dir_lock=wait waits)", out)
            yield {"skipped": "run directory owned by another process", "run_dir": str(out)}
            return
        lock.seek(0), lock.truncate(), lock.write(f"{os.getpid()}\n"), lock.flush()
        try:
            yield _reuse_or_clear(cfg, out, can_resume)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def saved_config(out: Path) -> DictConfig | None:
    """The config.yaml an earlier run left in `out`; None when there is none or it cannot be read
    (logged, naming the file: the directory is then moved aside rather than failing every rerun)."""
    saved = out / CONFIG
    if not saved.is_file():
        return None
    try:
        cfg = OmegaConf.load(saved)
        if not isinstance(cfg, DictConfig):
            raise ValueError("not a mapping")
        return cfg
    except Exception as err:  # noqa: BLE001 - any parse error: the file is not a config
        log.warning("%s cannot be read (%s: %s); the run in %s starts over", saved, type(err).__name__,
                    str(err).splitlines()[0] if str(err) else "", out)
        return None


def _reuse_or_clear(cfg: DictConfig, out: Path, can_resume: bool | str = True) -> dict[str, Any] | None:
    # Hydra writes .hydra/ and the job log into the directory of every job before it starts: not outputs
    entries = [p for p in out.iterdir() if p.name not in (".lock", ".hydra") and p.suffix != ".log"]
    if not entries:
        return None
    saved = saved_config(out)
    changed: list[str] = []
    if saved is not None:
        changed = changed_keys(comparable(saved), comparable(cfg))
        if not changed and cfg.get("skip_finished", False) and (out / RESULT).is_file():
            try:
                previous = json.loads((out / RESULT).read_text())
                log.info("%s already finished with this config (result.json present); skipping it", out)
                return previous
            except (OSError, ValueError) as err:
                log.warning("%s cannot be read (%s); the run starts over", out / RESULT, err)
        from activation_hash.runs.checkpoint import resumable  # torch: only for a directory to resume
        if not changed and can_resume is True and resumable(cfg, out):
            return None  # run() resumes from the checkpoint; the captures made before it stay
        if not changed and can_resume == "group" and cfg.get("resume", "auto") == "auto" \
                and not (out / RESULT).exists() and (out / GROUP_POINTER).is_file():
            return None  # the group resumes from its checkpoint, or moves this aside itself
    listed = ", ".join(changed[:10]) + (", ..." if len(changed) > 10 else "")
    move_aside(out, f"it holds a run with a different config (changed: {listed})" if changed
               else "it holds an earlier run that did not finish and left no checkpoint (or resume=never, "
                    "or skip_finished=false)")
    return None


def move_aside(out: Path, why: str) -> None:
    """Move the outputs in `out` (not its lock, Hydra's files and job logs) to a sibling folder."""
    entries = [p for p in out.iterdir() if p.name not in (".lock", ".hydra") and p.suffix != ".log"]
    aside = out.with_name(f"{out.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    aside.mkdir()
    for entry in entries:
        entry.rename(aside / entry.name)
    log.warning("%s: previous outputs moved to %s because %s; starting from an empty directory", out, aside, why)
