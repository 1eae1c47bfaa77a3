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


def build_loggers(cfg: DictConfig | None, extra_tags: list[str] = ()) -> list[Logger]:
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


def finish_wandb(loggers: list[Logger]) -> str | None:
    """Close any W&B run; return the offline run directory when there is one."""
    run_dir = None
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger" and getattr(logger, "_experiment", None) is not None:
            import wandb
            run = logger.experiment
            if getattr(logger, "_offline", False):
                run_dir = os.path.dirname(run.dir)  # .../wandb/offline-run-*/files -> the run folder
            wandb.finish()
    return run_dir
