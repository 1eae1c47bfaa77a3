"""The fixed names inside a run directory (no imports: every module of `runs/` may use them)."""

from __future__ import annotations

from pathlib import Path

CONFIG = "config.yaml"
META = "meta.json"
ENCODING = "encoding.jsonl"
METRICS_CSV = "metrics.csv"
RESULT = "result.json"
CODES = "codes"
# The checkpoint of the last epoch trained (resume: auto), relative to the run directory.
CHECKPOINT = Path("checkpoints") / "last.ckpt"
# A batched group's checkpoint, in its first member's run directory.
GROUP_CHECKPOINT = Path("checkpoints") / "group.ckpt"
# A batched group's member: where its group's checkpoint is.
GROUP_POINTER = Path("checkpoints") / "group.json"
