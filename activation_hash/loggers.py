"""Lightning loggers from the `logger` config group; W&B goes offline when no API key is set."""

from __future__ import annotations

import logging
import netrc
import os
from urllib.parse import urlparse

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger

log = logging.getLogger(__name__)


def wandb_api_key_configured() -> bool:
    """True when W&B has credentials: WANDB_API_KEY, or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def build_loggers(cfg: DictConfig | None, extra_tags: list[str] = (), own_run: bool = False) -> list[Logger]:
    """The `logger` group's loggers. `own_run`: each W&B logger starts a run of its own beside the
    process's others (`reinit="create_new"`), as the members of a batched group need."""
    if not cfg:
        return []
    loggers: list[Logger] = []
    for name, spec in cfg.items():
        if not spec or "_target_" not in spec:
            continue
        spec = OmegaConf.to_container(spec, resolve=True)
        if spec["_target_"].endswith("WandbLogger"):
            spec = _wandb_mode(spec)
            tags = [str(t)[:64] for t in [*(spec.get("tags") or []), *extra_tags]]  # W&B caps tags at 64 chars
            spec["tags"] = list(dict.fromkeys(tags))
            if own_run:
                spec["reinit"] = "create_new"
        loggers.append(instantiate(spec))
    return loggers


def _wandb_mode(spec: dict) -> dict:
    offline = spec.get("offline", "auto")
    if offline == "auto":
        offline = os.environ.get("WANDB_MODE") == "offline" or not wandb_api_key_configured()
    if offline:
        log.warning("W&B: no API key configured, logging offline under %s/wandb", spec.get("save_dir", "."))
    spec["offline"] = bool(offline)
    return spec


def finish_wandb(loggers: list[Logger], own_runs: bool = False) -> str | None:
    """Close the W&B runs of `loggers`; return the offline run directory when there is one.

    `own_runs`: each W&B logger's run exists and is its own (`build_loggers(own_run=True)`); else
    the process's current run is closed, if any (a run that failed before logging started none)."""
    from pytorch_lightning.loggers import WandbLogger
    run_dir = None
    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        import wandb
        run = logger.experiment if own_runs else wandb.run
        if run is None:
            continue
        if run.offline:
            run_dir = os.path.dirname(run.dir)  # .../wandb/offline-run-*/files -> the run folder
        run.finish()
    return run_dir
