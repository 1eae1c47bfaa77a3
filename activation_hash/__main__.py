"""Train a network, capture its neural codes at scheduled epochs, report encoding metrics.

    python -m activation_hash                                   # digits (embedded), MLP
    python -m activation_hash data=mnist data.root=DATA model.width=100 trainer.max_epochs=5
    python -m activation_hash logger=wandb                      # + W&B (offline without a key)
    python -m activation_hash +experiment=sample_size -m        # a whole factor study
    python -m activation_hash --help                            # every config group and option
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from activation_hash.run import run


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def _app(cfg: DictConfig) -> float | None:
    result = run(cfg)
    metric = cfg.get("optimized_metric")
    return result.get(metric) if metric else None


def hoist_multirun_flag(argv: list[str]) -> list[str]:
    """Move -m/--multirun before the overrides: Hydra's argparse rejects overrides after it,
    and `+experiment=X -m seed=0,1` is how people type a study with extra overrides."""
    flags = [a for a in argv[1:] if a in ("-m", "--multirun")]
    return argv[:1] + flags + [a for a in argv[1:] if a not in ("-m", "--multirun")]


def main() -> float | None:
    sys.argv = hoist_multirun_flag(sys.argv)
    return _app()


if __name__ == "__main__":
    main()
