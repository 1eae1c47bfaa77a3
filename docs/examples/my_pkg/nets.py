"""A network from outside activation-hash, as the docs' `model=custom` example brings it in:

    PYTHONPATH=docs/examples python -m activation_hash model=custom model.network._target_=my_pkg.nets.MyNet

`model=custom` calls it as `MyNet(num_classes=..., input_shape=(C, H, W))` plus any
`+model.network.KEY=VALUE` you add (here `hidden`). Its ReLUs are functional calls, which torch.fx
tracing (`model.modularize=true`, the default) turns into modules so their codes are captured.
"""

from __future__ import annotations

# --8<-- [start:net]
import math

from torch import nn
from torch.nn import functional as F


class MyNet(nn.Module):
    def __init__(self, num_classes: int, input_shape: tuple[int, ...], hidden: int = 32):
        super().__init__()
        self.fc1 = nn.Linear(math.prod(input_shape), hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.head(x)
# --8<-- [end:net]
