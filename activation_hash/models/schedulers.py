"""Learning-rate schedules built from torch's public schedulers that a single config cannot express.

``step_after(optimizer, hold, step_size, gamma)``: a constant rate for ``hold`` epochs, then
``StepLR(step_size, gamma)`` counted from epoch ``hold`` (``SequentialLR`` of ``ConstantLR(factor=1)``
and ``StepLR``), i.e. lr x gamma at epochs hold + step_size, hold + 2 step_size, ... The binary-
encoding authors call ``StepLR.step()`` only after epoch 250: hold=250, step_size=50, gamma=0.5.

``step_lr_in_steps(optimizer, step_size, gamma)``: ``StepLR`` counted in optimizer steps, not epochs
(lr x gamma every `step_size` optimizer steps). The scheduler carries ``interval = "step"``, which
``Classifier.configure_optimizers`` hands to Lightning, so it is stepped after every optimizer step:
in a step-limited study (`trainer.max_steps`) every training-set size then sees the same learning rate
at the same step, whatever its epoch length. Any scheduler with an ``interval`` attribute is stepped at
that interval; the rest per epoch, as before.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import ConstantLR, SequentialLR, StepLR

INTERVALS = ("epoch", "step")


def step_after(optimizer: Optimizer, hold: int = 250, step_size: int = 50, gamma: float = 0.5) -> SequentialLR:
    if hold < 1 or step_size < 1:
        raise ValueError(f"scheduler.hold={hold}, scheduler.step_size={step_size}: both must be >= 1")
    constant = ConstantLR(optimizer, factor=1.0, total_iters=hold)
    return SequentialLR(optimizer, [constant, StepLR(optimizer, step_size=step_size, gamma=gamma)],
                        milestones=[hold])


def step_lr_in_steps(optimizer: Optimizer, step_size: int = 12500, gamma: float = 0.1) -> StepLR:
    if step_size < 1:
        raise ValueError(f"scheduler.step_size={step_size}: must be >= 1 (optimizer steps)")
    scheduler = StepLR(optimizer, step_size=step_size, gamma=gamma)
    scheduler.interval = "step"
    return scheduler
