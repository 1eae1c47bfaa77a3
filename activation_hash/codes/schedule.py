"""Which epochs get a capture: `codes.epochs` as a list, `all`, `last`, or `log[:N]`."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

ALLOWED = "a list of ints in 0..max_epochs, 'all', 'last', 'log' or 'log:N' (N log-spaced epochs plus 0)"


def capture_epochs(spec: object, max_epochs: int, key: str = "codes.epochs") -> list[int]:
    """Sorted capture epochs; 0 means at initialization, e as after e training epochs."""
    if max_epochs is None or max_epochs < 0:
        raise ValueError(f"trainer.max_epochs={max_epochs}: must be a non-negative int to schedule captures")
    if isinstance(spec, str):
        if spec == "all":
            return list(range(max_epochs + 1))
        if spec == "last":
            return [max_epochs]
        match = re.fullmatch(r"log(?::(\d+))?", spec)
        if match is None:
            raise ValueError(f"{key}={spec!r} is not a capture schedule; use {ALLOWED}")
        n = int(match.group(1) or 8)
        if n < 1:
            raise ValueError(f"{key}={spec!r}: N must be >= 1; use {ALLOWED}")
        if max_epochs == 0:
            return [0]
        # geomspace from 1 to max_epochs, rounded; duplicates from rounding collapse
        return sorted({0, *np.unique(np.rint(np.geomspace(1, max_epochs, n)).astype(int)).tolist()})
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = [spec]
    if not isinstance(spec, Sequence) or isinstance(spec, str) or not all(
            isinstance(e, int) and not isinstance(e, bool) for e in spec):
        raise ValueError(f"{key}={spec!r} is not a capture schedule; use {ALLOWED}")
    bad = [e for e in spec if not 0 <= e <= max_epochs]
    if bad:
        raise ValueError(f"{key}={list(spec)} has epoch(s) {bad} outside 0..trainer.max_epochs={max_epochs}; "
                         f"use {ALLOWED}")
    return sorted(set(spec))
