"""Lightning loggers from the `logger` config group; W&B goes offline when no API key is set.

Every logger gets the run's resolved config once (`log_config`: Lightning's `log_hyperparams`), so
W&B and MLflow can filter and group runs by any key (`model.width`, `seed`, `study`, ...); the
job's factor values are also under `factors` and, for W&B, its tags. A W&B run's id is derived from
its run directory and first start, so a run resumed from its checkpoint continues its W&B run
(`resume="allow"`) and a run started afresh in the same directory gets a new one.
Loggers written with `lightning.pytorch` or `pytorch_lightning` are both accepted (`logger=` any
`_target_`; Lightning's own classes are built from pytorch_lightning, see lightning_ns.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import netrc
import os
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from activation_hash.lightning_ns import in_trainer_namespace

log = logging.getLogger(__name__)

# keys of a run's config that are not sent to the loggers (the grid table of an experiment file:
# the run's own values are in the keys; output_dir: the run directory, sent as `run_dir`)
NOT_LOGGED = ("grid", "hydra")


def wandb_api_key_configured() -> bool:
    """True when W&B has credentials: WANDB_API_KEY, or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def build_loggers(cfg: DictConfig | None, extra_tags: list[str] = (), own_run: bool = False) -> list:
    """The `logger` group's loggers. `extra_tags`: the job's overrides (`key=value`); those that
    name the run (its factors, not `logger=...` or `progress_bar=...`) become W&B tags. `own_run`:
    each W&B logger starts a run of its own beside the process's others (`reinit="create_new"`),
    as the members of a batched group need."""
    if not cfg:
        return []
    loggers = []
    for name, spec in cfg.items():
        if not spec or "_target_" not in spec:
            continue
        spec = in_trainer_namespace(OmegaConf.to_container(spec, resolve=True))
        if spec["_target_"].endswith("WandbLogger"):
            spec = _wandb_mode(spec)
            tags = [str(t)[:64] for t in [*(spec.get("tags") or []), *factor_tags(extra_tags)]]  # W&B caps tags at 64 chars
            spec["tags"] = list(dict.fromkeys(tags))
            # a run started by `wandb agent` keeps the id the agent gave it (WANDB_RUN_ID)
            if spec.get("id") is None and spec.get("save_dir") and not os.environ.get("WANDB_RUN_ID"):
                spec["id"] = wandb_run_id(Path(spec["save_dir"]))
                spec.setdefault("resume", "allow")
            if own_run:
                spec["reinit"] = "create_new"
        loggers.append(instantiate(spec))
    return loggers


def factor_tags(overrides: list[str]) -> list[str]:
    """The overrides that name a run's directory (its factor values), without leading +/~:
    `model.width=40`, `seed=1`, `model=tiny/vgg19`; not `logger=wandb` or `progress_bar=none`."""
    from activation_hash.rundir import RUN_DIR_EXCLUDED
    tags = []
    for override in overrides:
        key = str(override).split("=", 1)[0].lstrip("+~")
        if key not in RUN_DIR_EXCLUDED and not key.startswith("hydra"):
            tags.append(str(override).lstrip("+~"))
    return tags


def wandb_run_id(run_dir: Path) -> str:
    """A W&B run id that is the same for every start of the run in `run_dir` (resumes included) and
    new when the run starts afresh there: the directory and the first start recorded in meta.json."""
    started = ""
    try:
        started = str(json.loads((run_dir / "meta.json").read_text()).get("started", ""))
    except (OSError, ValueError, AttributeError):
        pass
    return hashlib.sha256(f"{run_dir.resolve()}|{started}".encode()).hexdigest()[:24]


def run_hparams(cfg: DictConfig, overrides: list[str] = ()) -> dict[str, Any]:
    """What every logger receives: the run's resolved config, nested (W&B shows `model.width`),
    without the experiment's grid table, plus `factors` ({key: value} of the job's factor overrides,
    typed as in the config) and `run_dir`."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_LOGGED:
        plain.pop(key, None)
    factors = {}
    for tag in factor_tags(overrides):
        key, _, value = tag.partition("=")
        found = OmegaConf.select(cfg, key, default=None) if "/" not in key else None
        # a group's option (model=mlp) stays its name; a value is taken typed from the config
        factors[key] = value if found is None or OmegaConf.is_config(found) else found
    plain["factors"] = factors
    plain["run_dir"] = plain.pop("output_dir", None)
    return plain


def log_config(loggers: list, cfg: DictConfig, overrides: list[str] = ()) -> None:
    """Send the run's config to every logger once (Lightning's `log_hyperparams`). Call it after
    the CSV rows of a resumed run are restored (the CSV writer starts here)."""
    if not loggers:
        return
    params = run_hparams(cfg, overrides)
    with warnings.catch_warnings():
        # the run dir already holds config.yaml when the CSV logger starts: expected, not a problem
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        for logger in loggers:
            logger.log_hyperparams(params)


def _wandb_mode(spec: dict) -> dict:
    offline = spec.get("offline", "auto")
    if offline == "auto":
        offline = os.environ.get("WANDB_MODE") == "offline" or not wandb_api_key_configured()
    if offline:
        log.warning("W&B: no API key configured, logging offline under %s/wandb", spec.get("save_dir", "."))
    spec["offline"] = bool(offline)
    return spec


def _is_wandb(logger: Any) -> bool:
    """A WandbLogger of either Lightning namespace (lightning.pytorch or pytorch_lightning)."""
    return any(c.__name__ == "WandbLogger" for c in type(logger).__mro__)


def finish_wandb(loggers: list, own_runs: bool = False) -> str | None:
    """Close the W&B runs of `loggers`; return the offline run directory when there is one.

    `own_runs`: each W&B logger's run exists and is its own (`build_loggers(own_run=True)`); else
    the process's current run is closed, if any (a run that failed before logging started none)."""
    run_dir = None
    for logger in loggers:
        if not _is_wandb(logger):
            continue
        import wandb
        run = logger.experiment if own_runs else wandb.run
        if run is None:
            continue
        if run.offline:
            run_dir = os.path.dirname(run.dir)  # .../wandb/offline-run-*/files -> the run folder
        run.finish()
    return run_dir


def build_callbacks(cfg: DictConfig | None) -> list:
    """The `callbacks` group's callbacks (one entry each with a `_target_`), of either Lightning
    namespace (lightning_ns.py)."""
    specs = OmegaConf.to_container(cfg, resolve=True) if cfg else {}
    # each spec under its own key (callbacks.NAME), so an error in its constructor names it
    nodes = OmegaConf.create({"callbacks": {name: in_trainer_namespace(spec) for name, spec in specs.items()
                                            if spec and "_target_" in spec}}).callbacks
    return [instantiate(nodes[name]) for name in nodes]
