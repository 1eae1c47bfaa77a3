"""Third-party warnings and log lines that say nothing a user can act on, silenced in one place.

Each warning is matched by its message and the module that issues it (the standard library's
`warnings.filterwarnings`), so the same words from anywhere else still show. Every entry point
calls `quiet_third_party_noise()` (python -m activation_hash, python -m activation_hash.plan);
`ignore_third_party_warnings()` alone is for code that runs Lightning inside a
`warnings.catch_warnings()` block (run(cfg) and the batched group, also when called from Python).
"""

from __future__ import annotations

import logging
import warnings

# (message regex, category, module regex): torch 2.13 deprecated LeafSpec; pytorch_lightning's
# own _pytree still builds one for every batch it moves, so every run printed it.
THIRD_PARTY_WARNINGS: list[tuple[str, type[Warning], str]] = [
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning,
     r"(pytorch_lightning|lightning\.pytorch|lightning_fabric|lightning\.fabric)\.utilities\._pytree"),
    (r".*anonymous setting", Warning, ""),  # wandb (it mostly says it through wandb.termwarn: logged)
]
# the same notes when a library logs them instead, and Lightning's advertisement for its cloud logger
_LOG_NOISE = ("anonymous setting", "LeafSpec", "try installing [litlogger]")


def ignore_third_party_warnings() -> None:
    """Add the filters for THIRD_PARTY_WARNINGS (to the current `warnings` filter state)."""
    for message, category, module in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(words in message for words in _LOG_NOISE)


def quiet_third_party_noise() -> None:
    """For the whole process: the warning filters, and the same notes dropped from the loggers of
    the libraries that log them (and from `py.warnings`, where captured warnings go)."""
    ignore_third_party_warnings()
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which SIMD build it found
    # a logger's filters see only what is logged to it, not what its children propagate: Lightning
    # logs its notes through its rank_zero module's logger
    for name in ("wandb", "pytorch_lightning", "lightning", "lightning.pytorch", "py.warnings",
                 "pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                 "lightning_fabric.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
