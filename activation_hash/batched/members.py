"""The keys in which the members of one batched group may differ."""

from __future__ import annotations

# Keys in which the members of one batch may differ; everything else must be equal.
BATCHABLE_KEYS = ("seed", "model.width", "model.widths", "data.label_noise", "data.seed", "output_dir")
