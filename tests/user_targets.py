"""User `_target_`s for tests/test_bad_inputs.py: constructors that raise."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


class RaisingNet:
    """A network whose constructor refuses its arguments (as a user's class may)."""

    def __init__(self, input_shape: Any, num_classes: int, **kwargs: Any) -> None:
        raise ValueError(f"RaisingNet needs 3-D inputs, got {tuple(input_shape)}")


class RaisingCallback:
    def __init__(self, threshold: float = 1.0) -> None:
        raise RuntimeError(f"threshold={threshold} is not supported")


class CountValidation(pl.Callback):
    """A user callback (any callback may read the validation metrics): counts validation epochs."""

    count = 0

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            CountValidation.count += 1
