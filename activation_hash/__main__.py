"""Train a network, capture its neural codes at scheduled epochs, report encoding metrics.

    python -m activation_hash                                   # digits (embedded), MLP
    python -m activation_hash data=mnist data.root=DATA model.width=100 trainer.max_epochs=5
    python -m activation_hash logger=wandb                      # + W&B (offline without a key)
    python -m activation_hash experiment=sample_size -m         # a whole factor study (or +experiment=)
    python -m activation_hash --help                            # every config group and option

A config error (`model.width=abc`) prints one line `error: KEY=VALUE: what is allowed` and exits
with status 2; `HYDRA_FULL_ERROR=1` shows the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

import hydra
from omegaconf import DictConfig

from activation_hash.schema import ConfigError

EXIT_CONFIG_ERROR = 2


def quiet_third_party_noise() -> None:
    """Deprecation notes of the libraries that a user can do nothing about."""
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*anonymous setting.*")

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            message = record.getMessage()
            return "anonymous setting" not in message and "LeafSpec" not in message

    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which SIMD build it found
    for name in ("wandb", "pytorch_lightning", "lightning", "lightning.pytorch", "py.warnings"):
        logging.getLogger(name).addFilter(_Drop())


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def _app(cfg: DictConfig) -> float | None:
    from activation_hash.run import run
    try:
        result = run(cfg)
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG_ERROR) from None
    metric = cfg.get("optimized_metric")
    return result.get(metric) if metric else None


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


def main() -> float | None:
    quiet_third_party_noise()
    sys.argv = append_optional_groups(hoist_multirun_flag(sys.argv))
    return _app()


if __name__ == "__main__":
    main()
