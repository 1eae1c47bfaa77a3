"""Train many MLP runs of one study as one batched model (issue 13).

`BatchedMLP` (mlp.py) stacks M solo MLPs' weights, `members.py` builds each member's solo MLP
and data exactly as `run(cfg)` does, `fit.py` trains them together, one optimizer step per
step for all members, each member with its own batch, labels and early stopping.
"""

from activation_hash.batched.mlp import BatchedMLP

__all__ = ["BatchedMLP"]
