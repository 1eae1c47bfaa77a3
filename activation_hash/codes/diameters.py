"""Stochastic activation diameters at a capture, on the first test samples and on U(0,1) inputs.

Configured by `metrics.diameter` (disabled by default; the `diameter` study enables it):
    n_samples  how many test samples (the paper: 600)
    method     exact (forward-mode AD, see activation_hash.metrics.diameter) | grid | both
    t_max      clip the exact segment to |t| <= t_max (null: unbounded)
    grid_step, grid_t_max   the authors' grid approximation (0.05 on [-5, 5])
    random     also on i.i.d. U(0,1) inputs of the test samples' shape
    seed       seeds the directions and the random inputs (same across captures and widths)
Results go in the test row as `test/diameter_*`, `test/grid_diameter_*`,
`test/random_diameter_*` (mean, median, std, quantiles, histogram counts and edges).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from activation_hash.codes.diameter import (diameter_summary, exact_diameters, grid_diameters,
                                            random_directions_like, uniform_like)

METHODS = ("exact", "grid", "both")


def diameter_metrics(model: nn.Module, x_test: torch.Tensor, layers: Sequence[int] | None,
                     cfg: Mapping[str, Any]) -> dict[str, Any]:
    method = cfg.get("method", "exact")
    if method not in METHODS:
        raise ValueError(f"metrics.diameter.method={method!r}: allowed values are {', '.join(METHODS)}")
    generator = torch.Generator().manual_seed(int(cfg.get("seed", 0)))
    x = x_test[: int(cfg.get("n_samples", 600))]
    inputs = {"": x}
    if cfg.get("random", True):
        inputs["random_"] = uniform_like(x, generator).to(x.device)
    out: dict[str, Any] = {}
    for prefix, xs in inputs.items():
        directions = random_directions_like(xs, generator)
        if method in ("exact", "both"):
            d = exact_diameters(model, xs, directions=directions, t_max=cfg.get("t_max"), layers=layers)
            out.update(_prefixed(f"test/{prefix}diameter_", diameter_summary(d)))
        if method in ("grid", "both"):
            d = grid_diameters(model, xs, directions=directions, step=float(cfg.get("grid_step", 0.05)),
                               t_max=float(cfg.get("grid_t_max", 5.0)), layers=layers)
            out.update(_prefixed(f"test/{prefix}grid_diameter_", diameter_summary(d)))
    return out


def _prefixed(prefix: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    return {prefix + k: v for k, v in summary.items()}
