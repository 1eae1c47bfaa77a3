"""Output locations: a run directory that cannot be written (read-only, not a directory, a full
disk) fails before training with one line, `error: output_root=PATH: not writable (why)` (exit 2
through activation_hash.__main__); a disk that fills mid-run stops the run with the file and the
free space, and the run stays resumable (every file is written atomically; the last checkpoint
stays)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from omegaconf import DictConfig

from activation_hash.schema import ConfigError

MIN_FREE = 1 << 20  # bytes: less than this left on the output disk counts as full
FULL = (errno.ENOSPC, errno.EDQUOT)


def _existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _key(cfg: DictConfig, out: Path) -> str:
    root = cfg.get("output_root")
    try:
        if root and out.absolute().is_relative_to(Path(str(root)).absolute()):
            return "output_root"
    except (TypeError, ValueError):
        pass
    return "output_dir"


def check_writable(cfg: DictConfig, out: Path) -> None:
    """ConfigError unless the run directory `out` can be created and written, with space left."""
    base = _existing(Path(out))
    key = _key(cfg, Path(out))
    shown = cfg.get("output_root") if key == "output_root" else out
    if not base.is_dir():
        raise ConfigError(key, str(shown), f"not writable ({base} is not a directory)")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(key, str(shown), f"not writable ({base} is read-only or not ours)")
    free = shutil.disk_usage(base).free
    if free < MIN_FREE:
        raise ConfigError(key, str(shown), f"not writable (disk full: {free} bytes free at {base})")


def disk_full(err: BaseException, out: Path) -> ConfigError | None:
    """The one-line error for a write that failed for lack of space mid-run (an OSError with
    ENOSPC/EDQUOT, or torch.save's RuntimeError on a full disk), else None."""
    oserr = err if isinstance(err, OSError) else None
    if oserr is None and isinstance(err.__cause__ or err.__context__, OSError):
        oserr = err.__cause__ or err.__context__
    base = _existing(Path(out))
    try:
        free = shutil.disk_usage(base).free
    except OSError:
        free = -1
    full = (oserr is not None and oserr.errno in FULL) or \
        (isinstance(err, (OSError, RuntimeError)) and 0 <= free < MIN_FREE)
    if not full:
        return None
    where = getattr(oserr, "filename", None) or out
    return ConfigError("output_dir", str(out), f"disk full writing {where} ({free} bytes free); the run is "
                       "kept unfinished: free some space and run the same command again to resume it")


def _check_root(config: DictConfig) -> None:
    import sys
    from omegaconf import OmegaConf
    root = OmegaConf.select(config, "output_root", default=None)
    if not root:
        return
    try:
        check_writable(config, Path(str(root)))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - Hydra is a dependency
    Callback = object


class OutputCheck(Callback):
    """Hydra callback (conf/hydra/default.yaml): checks output_root before Hydra creates the first
    run or sweep directory in it, so a bad location is one line and exit 2, not a traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: object) -> None:
        _check_root(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: object) -> None:
        _check_root(config)
