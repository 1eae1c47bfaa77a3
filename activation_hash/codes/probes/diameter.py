"""Network probe ``diameter``: stochastic activation diameters of the first test samples (and of
U(0,1) inputs of their shape), enabled by ``metrics.diameter.enabled=true``, options
``metrics.diameter.*`` (see ``activation_hash.codes.diameters`` for their meaning). Outputs
``test/diameter_*``, ``test/grid_diameter_*``, ``test/random_diameter_*``."""

from __future__ import annotations

from typing import Any

from activation_hash.codes.diameters import METHODS, diameter_metrics
from activation_hash.codes.probes import NetworkProbe
from activation_hash.data.random_inputs import sample_indices

OPTIONS = {"n_samples": 600, "method": "exact", "t_max": None, "grid_step": 0.05, "grid_t_max": 5.0,
           "random": True, "seed": 0, "sample": "first"}


def _compute(model: Any, data: Any, layers: Any, **options: Any) -> dict[str, Any]:
    if options.get("method", "exact") not in METHODS:
        raise ValueError(f"metrics.diameter.method={options['method']!r}: allowed values are {', '.join(METHODS)}")
    n, how = int(options.get("n_samples", OPTIONS["n_samples"])), options.get("sample", OPTIONS["sample"])
    x, _ = data.test_batch(n if how == "first" else 2**62)  # sample=random: from the whole test set
    x = x[sample_indices(len(x), n, how, int(options.get("seed", 0)))]  # first n, or n at random (seeded)
    return diameter_metrics(model, x, layers, {**OPTIONS, **options})


PROBE = NetworkProbe(name="diameter", compute=_compute, options=OPTIONS,
                     description="stochastic activation diameter (He et al. 2021, Sec. 5.1)")
