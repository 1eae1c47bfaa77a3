"""Learning-rate schedules built from torch's public schedulers that a single config cannot express.

``step_after(optimizer, hold, step_size, gamma)``: a constant rate for ``hold`` epochs, then
``StepLR(step_size, gamma)`` counted from epoch ``hold`` (``SequentialLR`` of ``ConstantLR(factor=1)``
and ``StepLR``), i.e. lr x gamma at epochs hold + step_size, hold + 2 step_size, ... The binary-
encoding authors call ``StepLR.step()`` only after epoch 250: hold=250, step_size=50, gamma=0.5.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import ConstantLR, SequentialLR, StepLR


def step_after(optimizer: Optimizer, hold: int = 250, step_size: int = 50, gamma: float = 0.5) -> SequentialLR:
    if hold < 1 or step_size < 1:
        raise ValueError(f"scheduler.hold={hold}, scheduler.step_size={step_size}: both must be >= 1")
    constant = ConstantLR(optimizer, factor=1.0, total_iters=hold)
    return SequentialLR(optimizer, [constant, StepLR(optimizer, step_size=step_size, gamma=gamma)],
                        milestones=[hold])
