"""Random inputs shaped like real ones: `data.random_inputs_dist` picks their distribution.

    uniform01    every pixel i.i.d. U[0, 1) (the paper's App. A, "random data"; the default)
    uniform_pm1  every pixel i.i.d. U[-1, 1)
    unit_ball    each input uniform in the unit ball of R^d (d = pixels per input), centred at the
                 origin (the paper's Sec. 5.1 wording: "the uniform distribution over the unit ball")
    gaussian     every pixel i.i.d. N(0, 1)

`sample_indices` picks which samples a probe uses: the first n, or n drawn at random (seeded).
"""

from __future__ import annotations

import numpy as np

DISTRIBUTIONS = ("uniform01", "uniform_pm1", "unit_ball", "gaussian")
SAMPLINGS = ("first", "random")


def random_inputs(rng: np.random.Generator, shape: tuple[int, ...], dist: str = "uniform01") -> np.ndarray:
    """float32 array of `shape` (first axis: samples) drawn from `dist` with `rng`."""
    shape = tuple(int(s) for s in shape)
    if dist == "uniform01":
        return rng.random(shape, dtype=np.float32)
    if dist == "uniform_pm1":
        return (2 * rng.random(shape, dtype=np.float32) - 1).astype(np.float32)
    if dist == "gaussian":
        return rng.standard_normal(shape, dtype=np.float32)
    if dist == "unit_ball":
        n, d = shape[0], int(np.prod(shape[1:], dtype=np.int64))
        direction = rng.standard_normal((n, d))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        radius = rng.random(n) ** (1.0 / d)
        return (direction * radius[:, None]).reshape(shape).astype(np.float32)
    raise ValueError(f"data.random_inputs_dist={dist!r}: allowed: {', '.join(DISTRIBUTIONS)}")


def sample_indices(n_available: int, n: int, how: str = "first", seed: int = 0) -> np.ndarray:
    """Indices of the n samples a probe uses out of n_available: the first n (`first`), or n drawn
    without replacement by a generator seeded with `seed` (`random`, sorted)."""
    n = min(int(n), int(n_available))
    if how == "first":
        return np.arange(n)
    if how == "random":
        return np.sort(np.random.default_rng(int(seed)).choice(int(n_available), size=n, replace=False))
    raise ValueError(f"metrics.diameter.sample={how!r}: allowed: {', '.join(SAMPLINGS)}")
