"""CodeUnit: the public marker for units of a neural code that are not ReLU-like modules.

A network puts ``CodeUnit()`` where a binary pattern should be read, e.g. after a linear latent
layer or on a gating network's pre-activations:

    self.latent = nn.Linear(features, 6)
    self.latent_code = CodeUnit()          # forward: z = self.latent_code(self.latent(h))

It is the identity in the forward pass; the code recorder captures the sign of its input
(bit 1 where > 0) as one layer named after the module, exactly like a ReLU call site.
"""

from __future__ import annotations

import torch
from torch import nn


class CodeUnit(nn.Module):
    """Identity whose input's sign pattern is recorded as code bits (one layer per call)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
