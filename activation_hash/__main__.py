"""Train a network, capture its neural codes at scheduled epochs, report encoding metrics.

    python -m activation_hash                                   # digits (embedded), MLP
    python -m activation_hash data=mnist data.root=DATA model.width=100 trainer.max_epochs=5
    python -m activation_hash logger=wandb                      # + W&B (offline without a key)
    python -m activation_hash experiment=sample_size -m         # a whole factor study (or +experiment=)
    python -m activation_hash --help                            # every config group and option

A config error (`model.width=abc`) prints one line `error: KEY=VALUE: what is allowed` and exits
with status 2 before anything is written; `HYDRA_FULL_ERROR=1` shows the traceback instead. Every
job of a sweep is composed and checked before the first one runs: a sweep with a bad job runs
nothing and prints a line per bad job. An experiment file run without -m is refused (it is a
sweep) unless every one of its grid keys is set on the command line (one grid point).
"""

from __future__ import annotations

import os
import re
import sys
from typing import NoReturn

import hydra
from omegaconf import DictConfig

from activation_hash.noise import quiet_third_party_noise
from activation_hash.schema import ConfigError
from activation_hash.validate import check_command, runs_jobs

EXIT_CONFIG_ERROR = 2


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def _app(cfg: DictConfig) -> float | None:
    from activation_hash.run import run
    try:
        result = run(cfg)
    except ConfigError as err:
        refuse(err)
    except Exception as err:  # noqa: BLE001 - a user class's constructor that raised while being built
        if (line := _constructor_error(err) or _user_target_error(err, cfg)) is None:
            raise
        refuse(line)
    metric = cfg.get("optimized_metric")
    return result.get(metric) if metric else None


def refuse(err: BaseException | str) -> NoReturn:
    """The one place a config error leaves the program: `error: KEY=VALUE: what is allowed` on
    stderr (a line per bad job of a sweep), exit status 2; HYDRA_FULL_ERROR=1 raises it instead."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1" and isinstance(err, BaseException):
        raise err
    for line in str(err).splitlines() or [""]:
        print(f"error: {line}", file=sys.stderr)
    raise SystemExit(EXIT_CONFIG_ERROR) from None


def _constructor_error(err: BaseException) -> str | None:
    """`KEY._target_=TARGET: its constructor raised ...` for Hydra's InstantiationException."""
    from hydra.errors import InstantiationException
    if not isinstance(err, InstantiationException):
        return None
    message = str(err)
    target = re.search(r"Error in call to target '([^']+)'", message)
    key = re.search(r"full_key: (\S+)", message)
    cause = err.__cause__ or err
    what = " ".join(str(cause).split()) if err.__cause__ else " ".join(message.splitlines()[1:2])
    return f"{key.group(1) if key else 'config'}._target_={target.group(1) if target else '?'}: its constructor " \
           f"raised {type(cause).__name__}: {what}"


def _user_target_error(err: BaseException, cfg: DictConfig) -> str | None:
    """`KEY._target_=TARGET: its constructor raised ...` when `err` was raised inside the
    constructor of a `_target_` outside this package (a user's network, data module or callback),
    which run() builds by calling the partial Hydra made (so no InstantiationException wraps it)."""
    from omegaconf import OmegaConf
    targets = {}
    for key in ("model", "model.network", "model.backbone", "data", "data.datamodule", "optimizer", "scheduler"):
        target = OmegaConf.select(cfg, f"{key}._target_", default=None, throw_on_missing=False)
        if isinstance(target, str) and "." in target and not target.startswith(("activation_hash.", "torch.",
                                                                                  "pytorch_lightning.")):
            targets[target.rpartition(".")[0]] = (key, target)
    if not targets:
        return None
    tb = err.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        module = frame.f_globals.get("__name__", "")
        if module in targets and frame.f_code.co_name in ("__init__", targets[module][1].rpartition(".")[2]):
            key, target = targets[module]
            return f"{key}._target_={target}: its constructor raised {type(err).__name__}: {' '.join(str(err).split())}"
    return None


def hoist_multirun_flag(argv: list[str]) -> list[str]:
    """Move -m/--multirun before the overrides: Hydra's argparse rejects overrides after it,
    and `+experiment=X -m seed=0,1` is how people type a study with extra overrides."""
    flags = [a for a in argv[1:] if a in ("-m", "--multirun")]
    return argv[:1] + flags + [a for a in argv[1:] if a not in ("-m", "--multirun")]


# config groups that config.yaml does not select (so that `+GROUP=NAME` works as Hydra wants it)
# but that a user (or a W&B agent, whose parameter names cannot start with +) names like any
# other: `experiment=NAME` is read as `+experiment=NAME`
APPENDED_GROUPS = ("experiment", "hparams_search", "cnn_recipe")


def append_optional_groups(argv: list[str]) -> list[str]:
    """`experiment=NAME` and `hparams_search=NAME` as Hydra's `+experiment=NAME` (both forms work)."""
    return [f"+{a}" if a.split("=", 1)[0] in APPENDED_GROUPS and "=" in a else a for a in argv]


def main(argv: list[str] | None = None) -> float | None:
    """`python -m activation_hash ARGV`: every job of the command (each job of a sweep) is composed
    and checked first (activation_hash.validate.check_command); only then does Hydra run them."""
    quiet_third_party_noise()
    args = append_optional_groups(list(sys.argv[1:] if argv is None else argv))
    program = sys.argv[0] if sys.argv else "activation_hash"
    if runs_jobs(args):
        try:
            check_command(args)
        except ConfigError as err:
            refuse(err)
    sys.argv = hoist_multirun_flag([program, *args])
    return _app()


if __name__ == "__main__":
    main()
