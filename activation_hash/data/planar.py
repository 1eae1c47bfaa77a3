"""Two-dimensional toy data sets, embedded and seeded: moons, circles, spirals.

    moons     sklearn.datasets.make_moons: two interleaving half circles, 2 classes
    circles   sklearn.datasets.make_circles (factor 0.5): a circle inside a circle, 2 classes
    spirals   `num_classes` interleaved arms r = t, angle = 3.5 pi t + 2 pi k / K, t ~ U(0.1, 1),
              plus Gaussian noise (hand-written; sklearn has no spiral generator)

Options (`data.n_samples`, `data.noise`, `data.n_test`, `data.data_seed`, spirals also
`data.num_classes`): `n_samples` points form the training file (its last `val_fraction` is
validation, as for MNIST), `n_test` more points from the same generator the test set. Inputs are
the raw coordinates (input_shape (2,), not rescaled to [0, 1]); `data_seed` fixes the points.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PLANAR = ("moons", "circles", "spirals")
PLANAR_DEFAULTS: dict[str, Any] = {"n_samples": 1000, "noise": 0.1, "n_test": 500, "data_seed": 0}
SPIRAL_DEFAULTS: dict[str, Any] = {**PLANAR_DEFAULTS, "num_classes": 2}


def spirals(n: int, noise: float, num_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.permutation(np.arange(n) % num_classes)
    t = rng.uniform(0.1, 1.0, size=n)
    angle = 3.5 * np.pi * t + 2 * np.pi * y / num_classes
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    return x + noise * rng.standard_normal((n, 2)), y


class PlanarSource:
    """One of PLANAR, drawn in memory (see the module docstring)."""
    input_shape = (2,)

    def __init__(self, name: str, n_samples: int = 1000, noise: float = 0.1, n_test: int = 500,
                 data_seed: int = 0, num_classes: int = 2):
        for key, value, ok, allowed in (
                ("n_samples", n_samples, isinstance(n_samples, int) and n_samples >= 2, "an int >= 2"),
                ("n_test", n_test, isinstance(n_test, int) and n_test >= 2, "an int >= 2"),
                ("noise", noise, isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise >= 0,
                 "a number >= 0"),
                ("data_seed", data_seed, isinstance(data_seed, int) and data_seed >= 0, "an int >= 0"),
                ("num_classes", num_classes, isinstance(num_classes, int) and num_classes >= 2, "an int >= 2")):
            if not ok:
                raise ValueError(f"data.{key}={value!r}: must be {allowed}")
        if name != "spirals" and num_classes != 2:
            raise ValueError(f"data.num_classes={num_classes!r}: {name} has 2 classes (only spirals takes more)")
        self.name, self.n_samples, self.n_test = name, n_samples, n_test
        self.noise, self.data_seed, self.num_classes = float(noise), data_seed, num_classes

    def ensure(self, download: bool) -> None:
        return None

    def _draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import make_circles, make_moons
        state = int(rng.integers(2**31 - 1))
        if self.name == "moons":
            x, y = make_moons(n, noise=self.noise, random_state=state)
        elif self.name == "circles":
            x, y = make_circles(n, noise=self.noise, factor=0.5, random_state=state)
        else:
            x, y = spirals(n, self.noise, self.num_classes, rng)
        return x.astype(np.float32), y.astype(np.int64)

    def load(self):
        from activation_hash.data.sources import Arrays
        rng = np.random.default_rng(self.data_seed)
        x_train, y_train = self._draw(self.n_samples, rng)
        x_test, y_test = self._draw(self.n_test, rng)
        return Arrays(x_train, y_train, x_test, y_test, scale=1.0)


def planar_datamodule(name: str, n_samples: int = 1000, noise: float = 0.1, n_test: int = 500,
                      data_seed: int = 0, num_classes: int = 2, **kwargs: Any):
    """An InMemoryDataModule of a 2-D set, its generator options as top-level keys (conf/data/moons.yaml:
    `data.n_samples`, `data.noise`, ...); every other key as for InMemoryDataModule."""
    from activation_hash.data.datamodule import InMemoryDataModule
    options = {"n_samples": n_samples, "noise": noise, "n_test": n_test, "data_seed": data_seed}
    if name == "spirals":
        options["num_classes"] = num_classes
    elif num_classes != 2:
        raise ValueError(f"data.num_classes={num_classes!r}: {name} has 2 classes (only spirals takes more)")
    if kwargs.get("options"):
        raise ValueError(f"data.options={kwargs['options']!r}: for data.name={name} set data.n_samples, data.noise, "
                         "data.n_test, data.data_seed directly")
    kwargs.pop("options", None)
    return InMemoryDataModule(name=name, options=options, **kwargs)
