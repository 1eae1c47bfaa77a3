"""Train many runs of one study as one batched model (issue 13).

`BatchedMLP` (mlp.py) stacks M solo MLPs' weights, `StackedNet` (stacked.py) other stackable
networks; `run_group.py` builds each member as `run(cfg)` does (activation_hash.runs.build) and
trains them together, one optimizer step per step for all members, each member with its own
batch, labels and early stopping, writing each member's run directory through `runs.RunRecord`.
"""

from activation_hash.batched.mlp import BatchedMLP

__all__ = ["BatchedMLP"]
